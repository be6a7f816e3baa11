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
from django.db import models
from django.utils.translation import gettext_lazy as _l
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


class SubscriptionRefused(PublishError):
    """The broker refused the listing's subscription (SUBACK >= 0x80), e.g. by ACL."""


@dataclass(frozen=True)
class RetainedMessage:
    topic: str
    payload: bytes
    # The QoS the broker stored it with (delivered at up to the listing's QoS 2;
    # amqtt answers with the subscription's QoS instead, RabbitMQ caps it at 1).
    qos: int


class Incomplete(models.TextChoices):
    """Why a listing may have missed retained messages."""

    CONNECTION_LOST = "connection_lost", _l("the connection dropped while listing")
    LIMIT = "limit", _l("more messages than the listing's limit")
    TIMEOUT = "timeout", _l("the broker was still sending when time ran out")


# RabbitMQ's MQTT plugin replays retained messages only to exact-topic
# subscriptions; an empty wildcard listing there says nothing.
WILDCARD_REPLAY_NOTE = _l(
    "This broker may not replay retained messages to wildcard subscriptions "
    "(RabbitMQ): list an exact topic to see its retained message."
)


@dataclass(frozen=True)
class RetainedListing:
    """What one listing saw; `incomplete` names why it may have missed some."""

    topic_filter: str
    messages: list[RetainedMessage]
    incomplete: str = ""
    limit: int = 0

    @property
    def complete(self) -> bool:
        return not self.incomplete

    @property
    def incomplete_reason(self) -> str:
        return str(Incomplete(self.incomplete).label) if self.incomplete else ""

    @property
    def note(self) -> str:
        """A caveat for an empty wildcard listing (brokers that do not replay)."""
        if self.messages or not is_wildcard(self.topic_filter):
            return ""
        return str(WILDCARD_REPLAY_NOTE)


def is_wildcard(topic_filter: str) -> bool:
    return any(level in ("+", "#") for level in topic_filter.split("/"))


def retained_list(
    settings: ConnectionSettings,
    topic_filter: str = "#",
    quiet: float = 0.5,
    timeout: float = 10.0,
    limit: int = 10_000,
) -> list[RetainedMessage]:
    """The retained messages under `topic_filter`, sorted by topic (see
    `retained_listing`, which also says whether the list is complete)."""
    return retained_listing(
        settings, topic_filter, quiet=quiet, timeout=timeout, limit=limit
    ).messages


def retained_listing(
    settings: ConnectionSettings,
    topic_filter: str = "#",
    quiet: float = 0.5,
    timeout: float = 10.0,
    limit: int = 10_000,
) -> RetainedListing:
    """What the broker holds retained under `topic_filter`.

    The broker sends retained messages right after SUBACK; the list is complete once
    nothing new arrived for `quiet` seconds. It is marked incomplete when the
    connection drops first, when more than `limit` topics hold one, or when the
    broker is still sending at `timeout`. Subscribing at QoS 2 lets each message
    arrive at the QoS it was stored with.
    """
    validate_topic_filter(topic_filter)
    found: dict[str, RetainedMessage] = {}
    subscribed = threading.Event()
    connected = threading.Event()
    # Set when the listing cannot go on: the connection dropped or the limit hit.
    stopped = threading.Event()
    state: dict[str, Any] = {"last": time.monotonic(), "incomplete": ""}
    closing = threading.Event()

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        state["reason"] = reason
        connected.set()
        if not reason.is_failure:
            client.subscribe(topic_filter, qos=2)

    def on_subscribe(
        client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any
    ) -> None:
        state["last"] = time.monotonic()
        state["suback"] = codes[0] if codes else None
        subscribed.set()

    def on_message(
        client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        if message.retain:
            if message.topic in found or len(found) < limit:
                found[message.topic] = RetainedMessage(
                    message.topic, bytes(message.payload), message.qos
                )
            else:
                state["incomplete"] = Incomplete.LIMIT
                stopped.set()
        state["last"] = time.monotonic()

    def on_disconnect(
        client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if not closing.is_set():
            state["incomplete"] = state["incomplete"] or Incomplete.CONNECTION_LOST
            stopped.set()
            # Wake the waits below: they would otherwise sit out the timeout.
            connected.set()
            subscribed.set()

    client, kwargs = side_client(settings, "r")
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
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
        if "reason" not in state:
            raise PublishError("the broker closed the connection before CONNACK")
        if state["reason"].is_failure:
            raise PublishError(
                "the broker refused the connection: "
                + describe_connack(state["reason"], settings)[1]
            )
        if not subscribed.wait(max(0.0, deadline - time.monotonic())):
            raise PublishError("the broker did not acknowledge the subscription")
        suback = state.get("suback")
        if suback is None:
            raise PublishError(
                "the connection dropped before the broker acknowledged the subscription"
            )
        if suback.is_failure:
            raise SubscriptionRefused(
                f"the broker refused the subscription to {topic_filter!r}: "
                f"{suback} (SUBACK 0x{suback.value:02X})"
            )
        while not stopped.is_set():
            if time.monotonic() - state["last"] >= quiet:
                break
            if time.monotonic() >= deadline:
                state["incomplete"] = Incomplete.TIMEOUT
                break
            time.sleep(0.05)
    finally:
        closing.set()
        client.disconnect()
        client.loop_stop()
    return RetainedListing(
        topic_filter=topic_filter,
        messages=sorted(found.values(), key=lambda m: m.topic),
        incomplete=str(state["incomplete"]),
        limit=limit,
    )


def retained_clear(
    settings: ConnectionSettings, topic: str, recursive: bool = False
) -> list[str]:
    """Clear the retained message of `topic` (and of its whole subtree when
    `recursive`) by publishing empty retained messages; returns the topics that
    held a retained message, as the broker listed them just before.

    When the broker lets us write `topic` but not read it, it is cleared and named
    unseen. `topic` itself is always sent its empty message, so a broker that replays
    retained messages only to exact topics (RabbitMQ) still loses it even though
    it cannot be listed under a wildcard.
    """
    validate_topic_name(topic)
    try:
        # `a/#` also matches `a` itself (MQTT 3.1.1 section 4.7.1.2).
        listed = retained_list(
            settings, f"{topic.rstrip('/')}/#" if recursive else topic
        )
        held = sorted({m.topic for m in listed})
    except SubscriptionRefused:
        if recursive:
            raise  # the subtree cannot be known
        # An ACL may allow writing a topic but not reading it: clear it unseen.
        held = [topic]
    publish_messages(
        settings,
        [OutgoingMessage(t, b"", qos=1, retain=True) for t in sorted({topic, *held})],
    )
    return held
