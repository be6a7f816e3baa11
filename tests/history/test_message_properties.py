"""MQTT 5 properties are shown wherever a message is: the history API, the CSV
export (a `properties` JSON column), the Activity tab's history table and live
rows, and the topic page; correlation data is text when it is printable UTF-8,
otherwise `hex:` and its bytes in hex. And a last value the topic index cut at
4,096 bytes is flagged in the topics API and on the topic pages.

Messages go through a real Mosquitto (MQTT 5) and the real runtime.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from brokers.choices import Protocol
from brokers.models import Broker, BrokerStatus
from history.models import StoredMessage, Topic
from mqttadmin.frames import BROKER_MESSAGES
from mqttadmin.realtime import broker_group
from tests.clients import as_user, logged_in
from tests.factories import make_broker_subscribed_to_all, make_product, make_user
from tests.live.conftest import receive_until, session_of, socket
from tests.runtime_support import retrying, wait_until

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sqlite_readers_do_not_wait"),
]


def _properties(correlation: bytes) -> Properties:
    properties = Properties(PacketTypes.PUBLISH)
    properties.ContentType = "application/json"
    properties.ResponseTopic = "replies/panel"
    properties.CorrelationData = correlation
    properties.UserProperty = [("site", "north"), ("shift", "b")]
    properties.MessageExpiryInterval = 3600
    properties.PayloadFormatIndicator = 1
    return properties


def _publish(port: int, messages: list[tuple[str, bytes, Properties | None]]) -> None:
    publisher = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="props-pub",
        protocol=mqtt.MQTTv5,
    )
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    try:
        for topic, payload, properties in messages:
            publisher.publish(
                topic, payload, qos=1, properties=properties
            ).wait_for_publish(10)
    finally:
        publisher.loop_stop()
        publisher.disconnect()


def _running(mosquitto: Any, start_runtime: Any) -> tuple[Broker, Any, int]:
    """A broker on MQTT 5 with a runtime connected to it; its viewer; its port."""
    server = mosquitto()
    viewer = make_user("vera")
    product = retrying(make_product, "Plant", viewer=viewer)
    broker = retrying(
        make_broker_subscribed_to_all,
        product,
        name="plant",
        port=server.port,
        via_service=False,
        protocol=Protocol.MQTT_5,
    )
    start_runtime("props")
    wait_until(
        lambda: retrying(
            BrokerStatus.objects.filter(broker=broker, state="connected").exists
        ),
        15,
        "the broker connected",
    )
    return broker, viewer, server.port


def _stored(broker: Broker, count: int) -> None:
    wait_until(
        lambda: retrying(StoredMessage.objects.filter(broker=broker).count) >= count,
        20,
        f"{count} messages stored",
    )


def _cell(label: str, value: str) -> str:
    return f'<span class="mqtt-property">{label} <code>{value}</code></span>'


def test_properties_are_shown_with_correlation_data_as_text_or_hex(
    mosquitto: Any, start_runtime: Any
) -> None:
    broker, viewer, port = _running(mosquitto, start_runtime)
    _publish(
        port,
        [
            ("req/text", b"1", _properties(b"req-1")),
            ("req/binary", b"2", _properties(b"\x0a\x1b")),
            ("req/none", b"3", None),
        ],
    )
    _stored(broker, 3)

    api = as_user(viewer)
    url = f"/api/v1/brokers/{broker.pk}/messages/"
    listed = retrying(api.get, url).json()["results"]
    by_topic = {m["topic"]: m["properties"] for m in listed}
    assert by_topic["req/text"]["CorrelationData"] == "req-1"
    assert by_topic["req/binary"]["CorrelationData"] == "hex:0a1b"
    assert by_topic["req/text"]["ContentType"] == "application/json"
    assert by_topic["req/text"]["ResponseTopic"] == "replies/panel"
    assert by_topic["req/text"]["UserProperty"] == [["site", "north"], ["shift", "b"]]
    assert by_topic["req/none"] == {}

    response = retrying(api.get, url, {"format": "csv"})
    body = b"".join(response.streaming_content).decode("utf-8")
    header, *rows = list(csv.reader(io.StringIO(body, newline="")))
    column = header.index("properties")
    cells = {row[header.index("topic")]: row[column] for row in rows}
    assert json.loads(cells["req/text"])["CorrelationData"] == "req-1"
    assert json.loads(cells["req/binary"])["CorrelationData"] == "hex:0a1b"
    assert json.loads(cells["req/text"])["ContentType"] == "application/json"
    assert cells["req/none"] == ""

    page = logged_in(viewer)
    base = f"/brokers/{broker.pk}/"
    activity = retrying(page.get, f"{base}?tab=activity").content.decode()
    for shown in (
        _cell("content-type", "application/json"),
        _cell("format", "UTF-8"),
        _cell("response-topic", "replies/panel"),
        _cell("correlation", "req-1"),
        _cell("correlation", "hex:0a1b"),
        _cell("expiry", "3600 s"),
        _cell("user", "site=north"),
        _cell("user", "shift=b"),
    ):
        assert shown in activity, shown
    topic = retrying(Topic.objects.get, broker=broker, topic="req/binary")
    panel = retrying(page.get, f"{base}topics/{topic.pk}/").content.decode()
    assert _cell("correlation", "hex:0a1b") in panel
    assert _cell("response-topic", "replies/panel") in panel


def test_live_rows_show_properties(mosquitto: Any, start_runtime: Any) -> None:
    broker, viewer, port = _running(mosquitto, start_runtime)
    _publish(port, [("req/stored", b"1", _properties(b"req-9"))])
    _stored(broker, 1)
    client = session_of(viewer)
    live_item = {
        "topic": "req/live",
        "qos": 0,
        "retain": False,
        "received_at": timezone.now().isoformat(),
        "size": 1,
        "text": "2",
        "properties": {"CorrelationData": "0a1b", "ContentType": "text/plain"},
    }

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        await communicator.connect()
        await receive_until(communicator, lambda f: 'id="broker-status"' in f)
        # A (re)opened feed starts from the history, properties included.
        await communicator.send_json_to({"action": "feed", "filter": "req/#"})
        resync = await receive_until(communicator, lambda f: 'id="live-rows"' in f)
        assert _cell("correlation", "req-9") in resync
        assert _cell("content-type", "application/json") in resync
        # A live frame's message item with properties (paho's hex for the bytes).
        layer = get_channel_layer()
        assert layer is not None
        await layer.group_send(
            broker_group(broker.pk),
            {
                "type": BROKER_MESSAGES,
                "broker_id": broker.pk,
                "count": 1,
                "skipped": 0,
                "messages": [live_item],
            },
        )
        live = await receive_until(communicator, lambda f: "req/live" in f)
        assert _cell("correlation", "hex:0a1b") in live
        assert _cell("content-type", "text/plain") in live
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_a_last_value_cut_by_the_topic_index_is_flagged(
    mosquitto: Any, start_runtime: Any
) -> None:
    broker, viewer, port = _running(mosquitto, start_runtime)
    # "é" is two bytes: the index's cut at 4,096 bytes splits the last one.
    long_text = "x" + "é" * 3000
    _publish(port, [("big/text", long_text.encode(), None), ("small", b"1.50", None)])
    _stored(broker, 2)

    api = as_user(viewer)
    topics = {
        t["topic"]: t
        for t in retrying(api.get, f"/api/v1/brokers/{broker.pk}/topics/").json()
    }
    big = topics["big/text"]
    assert big["last_payload_truncated"] is True
    assert big["last_payload_encoding"] == "text"
    # Whole characters only: 1 + 2,047 two-byte characters fit in 4,096 bytes.
    assert big["last_payload"] == long_text[:2048]
    assert big["last_payload_is_json"] is False
    assert topics["small"]["last_payload_truncated"] is False
    assert topics["small"]["last_payload"] == "1.50"
    one = retrying(api.get, f"/api/v1/brokers/{broker.pk}/topics/{big['id']}/").json()
    assert one["last_payload_truncated"] is True

    page = logged_in(viewer)
    base = f"/brokers/{broker.pk}/"
    tree = retrying(page.get, f"{base}?tab=topics").content.decode()
    assert tree.count("cut at 4,096 bytes") == 1
    panel = retrying(page.get, f"{base}topics/{big['id']}/").content.decode()
    assert "Cut at 4,096 bytes" in panel and "full size is unknown" in panel
    small = retrying(page.get, f"{base}topics/{topics['small']['id']}/")
    assert "Cut at 4,096 bytes" not in small.content.decode()
