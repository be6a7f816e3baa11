"""Overlapping subscriptions on one connection, so a message is received once.

Brokers differ on a message that matches two filters of one client: Mosquitto
(MQTT 5), NATS and amqtt send one copy per matching filter, others one copy in all.
The runtime makes both cases the same:

- It subscribes only the filters no other filter of the session covers at the same
  or a higher QoS (`#` makes `x/+/temp` redundant on the wire); ingest matches every
  message against all subscriptions itself, so the covered ones still get theirs.
- Filters that overlap without one covering the other (`a/+/c` and `a/b/+`) are
  both subscribed. On MQTT 5 each carries a subscription identifier, and of the
  copies of one message only the one whose identifiers include the lowest
  identifier of the filters its topic matches is kept (`CopyRule`). MQTT 3.1.1 has
  no identifiers: such partial overlaps can still bring a copy per filter there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mqttadmin.lib.topics import topic_matches

SHARED_PREFIX = "$share/"


def _is_wildcard(level: str) -> bool:
    return level in ("+", "#")


def _dollar_apart(first: list[str], second: list[str]) -> bool:
    """A wildcard first level never matches a `$` topic (MQTT 4.7.2)."""
    return (_is_wildcard(first[0]) and second[0].startswith("$")) or (
        _is_wildcard(second[0]) and first[0].startswith("$")
    )


def covers(general: str, specific: str) -> bool:
    """Whether every topic that `specific` matches is matched by `general` too."""
    wide, narrow = general.split("/"), specific.split("/")
    if _is_wildcard(wide[0]) and narrow[0].startswith("$"):
        return False
    for index, level in enumerate(wide):
        if level == "#":
            return True
        if index >= len(narrow) or narrow[index] == "#":
            return False
        if level != "+" and level != narrow[index]:
            return False
    return len(wide) == len(narrow)


def may_overlap(first: str, second: str) -> bool:
    """Whether some topic matches both filters."""
    left, right = first.split("/"), second.split("/")
    if _dollar_apart(left, right):
        return False
    for a, b in zip(left, right, strict=False):
        if a == "#" or b == "#":
            return True
        if a != "+" and b != "+" and a != b:
            return False
    if len(left) == len(right):
        return True
    # `a` and `a/#`: the multi-level wildcard also matches its parent level.
    longer, shorter = (left, right) if len(left) > len(right) else (right, left)
    return len(longer) == len(shorter) + 1 and longer[-1] == "#"


@dataclass(frozen=True)
class WirePlan:
    """What a session subscribes for a desired set of filters."""

    # Filter -> QoS as sent in SUBSCRIBE.
    wire: dict[str, int]
    # Every desired filter -> the wire filter that brings its messages.
    carried_by: dict[str, str]
    # Two wire filters some topic matches both: copies are possible.
    overlapping: bool


def plan_wire(desired: dict[str, int]) -> WirePlan:
    """The filters to subscribe: each desired one, unless another covers it at the
    same or a higher QoS (a covered filter at a higher QoS is kept, so its messages
    still arrive at the QoS it asked for). `$share` filters are never merged."""

    def strictly_covers(general: str, specific: str) -> bool:
        if general == specific or general.startswith(SHARED_PREFIX):
            return False
        if desired[general] < desired[specific] or not covers(general, specific):
            return False
        # Two filters covering each other (`#` and `+/#`): the smaller one wins.
        return not covers(specific, general) or general < specific

    plain = [f for f in desired if not f.startswith(SHARED_PREFIX)]
    wire: dict[str, int] = {}
    carried_by: dict[str, str] = {}
    for topic_filter in desired:
        if topic_filter.startswith(SHARED_PREFIX) or not any(
            strictly_covers(other, topic_filter) for other in plain
        ):
            wire[topic_filter] = desired[topic_filter]
            carried_by[topic_filter] = topic_filter
    for topic_filter in desired:
        if topic_filter not in carried_by:
            carried_by[topic_filter] = next(
                w for w in wire if strictly_covers(w, topic_filter)
            )
    plain_wire = [f for f in wire if not f.startswith(SHARED_PREFIX)]
    overlapping = any(
        may_overlap(a, b)
        for index, a in enumerate(plain_wire)
        for b in plain_wire[index + 1 :]
    )
    return WirePlan(wire, carried_by, overlapping)


@dataclass
class CopyRule:
    """Keeps one copy of a message an MQTT 5 broker sent once per matching filter.

    Each copy carries the identifiers of the subscriptions it was sent for; exactly
    one copy carries the lowest identifier among the filters the topic matches.
    Built when the session's filters change and replaced whole (read on paho's
    network thread without a lock).
    """

    ids: dict[str, int]
    _lowest: dict[str, int | None] = field(default_factory=dict)

    def keeps(self, topic: str, subscription_ids: list[int]) -> bool:
        lowest = self._lowest.get(topic, -1)
        if lowest == -1:
            matching = [i for f, i in self.ids.items() if topic_matches(f, topic)]
            lowest = min(matching) if matching else None
            if len(self._lowest) >= 10_000:
                self._lowest.clear()  # bounded: topics can be unbounded
            self._lowest[topic] = lowest
        return lowest is None or lowest in subscription_ids
