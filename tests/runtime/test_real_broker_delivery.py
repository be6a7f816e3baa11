"""The runtime against Mosquitto as users run it: default limits, MQTT 5 copies,
retained replays, `$` topics no subscription names."""

from __future__ import annotations

import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.models import Subscription
from brokers.services import broker_control, subscription_create
from history.models import StoredMessage, Topic
from mqttadmin.lib.payloads import properties_shown
from mqttadmin.pipeline import ReceivedMessage
from runtime import ingest
from runtime.live_feed import message_frame_item
from tests.factories import make_broker, make_product, make_superuser
from tests.runtime_support import (
    retrying,
    running_broker,
    state_is,
    status_of,
    wait_until,
)

BURST = 20_000


@pytest.fixture
def actor(transactional_db: Any) -> Any:
    return make_superuser()


def subscribe(actor: Any, broker: Any, topic_filter: str, qos: int = 1) -> Any:
    return retrying(
        subscription_create,
        actor=actor,
        broker=broker,
        name=topic_filter,
        topic_filter=topic_filter,
        qos=qos,
    )


def reconnected_since(broker: Any, connected_at: Any) -> bool:
    return status_of(broker).last_connected_at != connected_at


def publish_retained(port: int, topic: str, payload: bytes) -> None:
    publish_messages(
        ConnectionSettings(host="127.0.0.1", port=port),
        [OutgoingMessage(topic=topic, payload=payload, qos=1, retain=True)],
    )


def burst(port: int, lines: Path) -> None:
    """What a user's device fleet or script does: `mosquitto_pub -q 1 -l`."""
    with lines.open("rb") as handle:
        subprocess.run(
            [
                *("mosquitto_pub", "-h", "127.0.0.1", "-p", str(port)),
                *("-q", "1", "-t", "burst/data", "-l"),
            ],
            stdin=handle,
            check=True,
            timeout=120,
        )


def test_a_qos1_burst_on_a_default_mosquitto_is_stored_whole(
    mosquitto: Any, actor: Any, start_runtime: Any, tmp_path: Path
) -> None:
    # Mosquitto at its defaults: 20 messages in flight per client, 1,000 queued,
    # the rest dropped. The connection is made with the portal's defaults.
    broker_process = mosquitto("sys_interval 1\n")
    start_runtime()
    broker = running_broker(actor, broker_process.port)
    assert broker.protocol == "5"
    subscribe(actor, broker, "burst/#")
    wait_until(state_is(broker, "connected", subscribed_topics_count=1), 10, "sub")
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f'{{"seq":{n}}}\n' for n in range(BURST)))

    burst(broker_process.port, lines)

    wait_until(
        lambda: status_of(broker).messages_received >= BURST, 120, "the whole burst"
    )
    texts = StoredMessage.objects.filter(broker=broker).values_list("text", flat=True)
    assert sorted(texts, key=lambda t: int(t[7:-1])) == [
        f'{{"seq":{n}}}' for n in range(BURST)
    ]
    assert status_of(broker).messages_received == BURST


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_message_two_filters_match_is_stored_and_counted_once(
    mosquitto: Any, actor: Any, start_runtime: Any, protocol: str
) -> None:
    broker_process = mosquitto()
    start_runtime()
    broker = running_broker(actor, broker_process.port, protocol=protocol)
    everything = subscribe(actor, broker, "#")
    temperatures = subscribe(actor, broker, "x/+/temp")
    wait_until(state_is(broker, "connected", subscribed_topics_count=2), 10, "subs")

    publish_messages(
        ConnectionSettings(host="127.0.0.1", port=broker_process.port),
        [
            OutgoingMessage(topic="x/a/temp", payload=b"21.5", qos=1),
            OutgoingMessage(topic="x/a/hum", payload=b"40", qos=1),
            OutgoingMessage(topic="done", payload=b"", qos=1),
        ],
    )

    wait_until(lambda: Topic.objects.filter(broker=broker, topic="done"), 10, "done")
    rows = StoredMessage.objects.filter(broker=broker).order_by("id")
    assert [r.topic for r in rows] == ["x/a/temp", "x/a/hum", "done"]
    assert Topic.objects.get(broker=broker, topic="x/a/temp").messages == 1
    assert status_of(broker).messages_received == 3
    everything.refresh_from_db()
    temperatures.refresh_from_db()
    assert (everything.messages_received, temperatures.messages_received) == (3, 1)


def test_partly_overlapping_filters_on_mqtt5_keep_one_copy(
    mosquitto: Any, actor: Any, start_runtime: Any
) -> None:
    # Neither filter covers the other: both are subscribed, Mosquitto sends a copy
    # for each, and the subscription identifiers tell the copies apart.
    broker_process = mosquitto()
    start_runtime()
    broker = running_broker(actor, broker_process.port, protocol="5")
    by_site = subscribe(actor, broker, "a/+/c")
    by_line = subscribe(actor, broker, "a/b/+")
    wait_until(state_is(broker, "connected", subscribed_topics_count=2), 10, "subs")

    publish_messages(
        ConnectionSettings(host="127.0.0.1", port=broker_process.port),
        [
            OutgoingMessage(topic="a/b/c", payload=b"both", qos=1),
            OutgoingMessage(topic="a/z/c", payload=b"site", qos=1),
            OutgoingMessage(topic="a/b/z", payload=b"line", qos=0),
        ],
    )

    wait_until(lambda: status_of(broker).messages_received >= 3, 10, "three")
    rows = StoredMessage.objects.filter(broker=broker).order_by("id")
    assert [r.text for r in rows] == ["both", "site", "line"]
    assert status_of(broker).messages_received == 3
    by_site.refresh_from_db()
    by_line.refresh_from_db()
    assert (by_site.messages_received, by_line.messages_received) == (2, 2)
    # The identifiers are the connection's own, not the message's.
    assert "SubscriptionIdentifier" not in (rows[0].properties or {})


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_reconnect_does_not_store_retained_messages_again(
    mosquitto: Any, actor: Any, start_runtime: Any, protocol: str
) -> None:
    broker_process = mosquitto()
    publish_retained(broker_process.port, "site/door", b"closed")
    start_runtime()
    broker = running_broker(actor, broker_process.port, protocol=protocol)
    door = subscribe(actor, broker, "site/#")
    wait_until(lambda: status_of(broker).messages_received == 1, 10, "replayed")
    first = StoredMessage.objects.get(broker=broker)
    assert first.retain is True  # the history marks a retained delivery

    for _round in range(2):
        connected_at = status_of(broker).last_connected_at
        retrying(broker_control, actor=actor, broker=broker, action="reconnect")
        wait_until(partial(reconnected_since, broker, connected_at), 15, "again")
    # A new value after the reconnects is stored: the replays were not.
    publish_retained(broker_process.port, "site/door", b"open")
    wait_until(lambda: status_of(broker).messages_received == 2, 10, "new value")
    rows = StoredMessage.objects.filter(broker=broker).order_by("id")
    assert [(r.text, r.retain) for r in rows] == [("closed", True), ("open", False)]
    assert Topic.objects.get(broker=broker, topic="site/door").messages == 2
    door.refresh_from_db()
    assert door.messages_received == 2


def test_dollar_topics_count_only_when_a_subscription_names_them(
    transactional_db: Any,
) -> None:
    # NATS lets `#` match its internal `$JS/...` and `$MQTT/...` subjects; what
    # reaches ingest that way is neither counted nor shown.
    broker = make_broker(make_product())
    Subscription.objects.create(broker=broker, name="all", topic_filter="#")
    Subscription.objects.create(
        broker=broker, name="jetstream api", topic_filter="$JS/API/#"
    )
    now = timezone.now()

    def received(topic: str) -> ReceivedMessage:
        return ReceivedMessage(broker.pk, topic, b"{}", 0, False, now)

    ingest.store_batch(
        [
            received("$MQTT/sess/abc"),
            received("$JS/EVENT/x"),
            received("$JS/API/INFO"),
            received("plant/1"),
        ]
    )

    assert sorted(
        Topic.objects.filter(broker=broker).values_list("topic", flat=True)
    ) == [
        "$JS/API/INFO",
        "plant/1",
    ]
    assert status_of(broker).messages_received == 2
    assert StoredMessage.objects.filter(broker=broker).count() == 2


def test_mqtt5_properties_are_kept_and_correlation_data_reads_as_it_was(
    mosquitto: Any, actor: Any, start_runtime: Any
) -> None:
    # paho hands correlation data over as bare hex: a text of hex digits would
    # read back as other bytes unless the runtime keeps the bytes marked.
    broker_process = mosquitto()
    start_runtime()
    broker = running_broker(actor, broker_process.port, protocol="5")
    subscribe(actor, broker, "req/#")
    wait_until(state_is(broker, "connected", subscribed_topics_count=1), 10, "sub")

    def with_properties(correlation: bytes) -> Properties:
        properties = Properties(PacketTypes.PUBLISH)
        properties.CorrelationData = correlation
        properties.ContentType = "application/json"
        properties.UserProperty = [("site", "north")]
        return properties

    publish_messages(
        ConnectionSettings(host="127.0.0.1", port=broker_process.port, protocol="5"),
        [
            OutgoingMessage("req/a", b"{}", 1, properties=with_properties(b"cafe01")),
            OutgoingMessage("req/b", b"{}", 1, properties=with_properties(b"\x00\xff")),
        ],
    )

    wait_until(lambda: status_of(broker).messages_received == 2, 10, "both")
    shown = {
        m.topic: properties_shown(m.properties)
        for m in StoredMessage.objects.filter(broker=broker)
    }
    assert shown["req/a"]["CorrelationData"] == "cafe01"
    assert shown["req/b"]["CorrelationData"] == "hex:00ff"
    assert shown["req/a"]["ContentType"] == "application/json"
    assert shown["req/a"]["UserProperty"] == [["site", "north"]]
    item = message_frame_item(
        ReceivedMessage(
            broker.pk, "req/a", b"{}", 1, False, timezone.now(), 0, {"ContentType": "x"}
        )
    )
    assert item["properties"] == {"ContentType": "x"}
