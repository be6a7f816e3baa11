"""The frames sent to channel-layer groups: one list of their types, in one place.

Every `group_send` / `broadcast` names its type with a constant from here, so the
consumers (and the test that sends each type to each consumer) know every frame a
group can carry. A consumer that joins a group handles each of its types or
ignores it (`mqttadmin.live.LiveConsumer.dispatch`); Channels would otherwise
raise on a type without a handler and close the socket with 1011.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# To `broker.<id>`: the runtime wrote a new connection status.
BROKER_STATUS = "broker.status"
# To `broker.<id>`: committed messages, one frame per broker per tick.
BROKER_MESSAGES = "broker.messages"
# To `broker.<id>`: clients connected or left (from the broker's log).
BROKER_CLIENTS = "broker.clients"
# To `session.<hash>`: the session logged out; its sockets close.
SESSION_LOGOUT = "session.logout"
# To the runtime's group: desired state changed, reconcile now.
RUNTIME_NUDGE = "runtime.nudge"

# What the browsers' sockets may receive (they join broker and session groups).
BROWSER_FRAME_TYPES = (BROKER_STATUS, BROKER_MESSAGES, BROKER_CLIENTS, SESSION_LOGOUT)
ALL_FRAME_TYPES = (*BROWSER_FRAME_TYPES, RUNTIME_NUDGE)


class BrokerStatusFrame(TypedDict):
    type: Literal["broker.status"]
    broker_id: int
    # Plus the BrokerStatus fields the runtime sends (state, error, counters...).


class MessageItem(TypedDict):
    topic: str
    qos: int
    retain: bool
    received_at: str
    size: int
    text: NotRequired[str | None]
    data: NotRequired[str]
    # MQTT 5 properties as the history keeps them.
    properties: NotRequired[dict[str, Any]]


class BrokerMessagesFrame(TypedDict):
    type: Literal["broker.messages"]
    broker_id: int
    count: int
    skipped: int
    messages: list[MessageItem]


class BrokerClientsFrame(TypedDict):
    type: Literal["broker.clients"]


class SessionLogoutFrame(TypedDict):
    type: Literal["session.logout"]


class RuntimeNudgeFrame(TypedDict):
    type: Literal["runtime.nudge"]


def frame(kind: str, **fields: Any) -> dict[str, Any]:
    """A frame of a known type (a typo is an error here, not a dead socket later)."""
    if kind not in ALL_FRAME_TYPES:
        raise ValueError(f"unknown frame type {kind!r}")
    return {"type": kind, **fields}
