"""Retained messages, asked of the broker itself (the only source of truth).

Listing subscribes with a private client and collects what the broker replays with
the retain flag; clearing publishes empty retained messages.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from brokers.client import (
    ConnectionSettings,
    OutgoingMessage,
    PublishError,
    describe_connack,
    publish_messages,
    side_client,
)
from mqttadmin.lib.topics import validate_topic_filter, validate_topic_name


@dataclass(frozen=True)
class RetainedMessage:
    topic: str
    payload: bytes
    qos: int


def retained_list(
    settings: ConnectionSettings,
    topic_filter: str = "#",
    quiet: float = 0.5,
    timeout: float = 10.0,
    limit: int = 10_000,
) -> list[RetainedMessage]:
    """What the broker holds retained under `topic_filter`.

    The broker sends retained messages right after SUBACK; the list is complete once
    nothing new arrived for `quiet` seconds (bounded by `timeout` and `limit`).
    """
    validate_topic_filter(topic_filter)
    found: dict[str, RetainedMessage] = {}
    subscribed = threading.Event()
    connected = threading.Event()
    state: dict[str, Any] = {"last": time.monotonic()}

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        state["reason"] = reason
        connected.set()
        if not reason.is_failure:
            client.subscribe(topic_filter, qos=0)

    def on_subscribe(
        client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any
    ) -> None:
        state["last"] = time.monotonic()
        subscribed.set()

    def on_message(
        client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        if message.retain and len(found) < limit:
            found[message.topic] = RetainedMessage(
                message.topic, bytes(message.payload), message.qos
            )
        state["last"] = time.monotonic()

    client, kwargs = side_client(settings, "r")
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    deadline = time.monotonic() + timeout
    try:
        client.connect(**kwargs)
    except OSError as exc:
        raise PublishError(
            f"cannot connect to {settings.host}:{settings.port}: {exc}"
        ) from exc
    client.loop_start()
    try:
        if not connected.wait(max(0.0, deadline - time.monotonic())):
            raise PublishError("no CONNACK from the broker")
        if state["reason"].is_failure:
            raise PublishError(
                "the broker refused the connection: "
                + describe_connack(state["reason"], settings)[1]
            )
        if not subscribed.wait(max(0.0, deadline - time.monotonic())):
            raise PublishError("the broker did not acknowledge the subscription")
        while time.monotonic() < deadline and len(found) < limit:
            if time.monotonic() - state["last"] >= quiet:
                break
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    return sorted(found.values(), key=lambda m: m.topic)


def retained_clear(
    settings: ConnectionSettings, topic: str, recursive: bool = False
) -> list[str]:
    """Clear the retained message of `topic` (and of its whole subtree when
    `recursive`) by publishing empty retained messages; returns the topics cleared."""
    validate_topic_name(topic)
    targets = {topic}
    if recursive:
        targets |= {m.topic for m in retained_list(settings, f"{topic.rstrip('/')}/#")}
    publish_messages(
        settings,
        [OutgoingMessage(t, b"", qos=1, retain=True) for t in sorted(targets)],
    )
    return sorted(targets)
