"""Helpers of the compatibility tests: a paho subscriber and the portal's broker
row for a foreign broker."""

from __future__ import annotations

import itertools
import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.models import Broker
from brokers.services import subscription_create
from history.models import StoredMessage
from tests.runtime_support import retrying, running_broker, state_is, wait_until

_ids = itertools.count(1)

# None of the brokers of the matrix speaks MQTT 5 (the portal's default for new
# connections): they refuse its CONNECT with "unsupported protocol version".
FOREIGN_PROTOCOL = "3.1.1"


class Subscriber:
    """A clean MQTT 3.1.1 session subscribed to `topic_filter` at `qos`."""

    def __init__(self, port: int, topic_filter: str, qos: int = 2) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"compat-sub-{next(_ids)}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        subscribed = threading.Event()
        self.client.on_message = lambda client, userdata, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic_filter, qos=qos)
        assert subscribed.wait(5), "no SUBACK"

    def receive(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connected_broker(
    actor: Any,
    port: int,
    subscriptions: dict[str, str] | None = None,
    subscribed: int | None = -1,
    **fields: Any,
) -> Broker:
    """A broker row (through the service) the running runtime holds connected with
    `subscribed` subscriptions acknowledged (all of `subscriptions`, which maps
    names to filters, unless told; None: do not wait for any)."""
    subscriptions = subscriptions or {}
    fields.setdefault("connect_timeout", 5)
    fields.setdefault("protocol", FOREIGN_PROTOCOL)
    broker = running_broker(actor, port, **fields)
    for name, topic_filter in subscriptions.items():
        retrying(
            subscription_create,
            actor=actor,
            broker=broker,
            name=name,
            topic_filter=topic_filter,
        )
    if subscribed is None:
        return broker
    if subscribed == -1:
        subscribed = len(subscriptions)
    wait_until(
        state_is(broker, "connected", subscribed_topics_count=subscribed),
        15,
        f"connected and subscribed to {subscribed} of {sorted(subscriptions.values())}",
    )
    return broker


def stored_topics(broker: Broker) -> list[str]:
    stored = StoredMessage.objects.filter(broker_id=broker.pk)
    return sorted(stored.values_list("topic", flat=True))


def wait_stored(broker: Broker, topic: str, count: int = 1) -> None:
    wait_until(
        lambda: stored_topics(broker).count(topic) >= count,
        10,
        f"{count} stored message(s) on {topic}",
    )


def publish_in_order(port: int, *topics: str, qos: int = 1) -> None:
    """One client, one connection: the broker forwards them in this order."""
    publish_messages(
        ConnectionSettings(host="127.0.0.1", port=port),
        [OutgoingMessage(topic, topic.encode(), qos=qos) for topic in topics],
    )
