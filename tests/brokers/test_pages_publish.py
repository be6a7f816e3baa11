"""The Publish tab: messages reach a real subscriber; templates save, publish, go."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.test import Client
from paho.mqtt.enums import CallbackAPIVersion

from brokers import services
from brokers.models import Broker, PublishTemplate
from mqttadmin.models import AuditEntry
from tests.brokers.test_pages import error_next_to
from tests.clients import HTMX, logged_in
from tests.factories import make_broker

pytestmark = [pytest.mark.django_db, pytest.mark.mosquitto]


@contextmanager
def subscriber(port: int, topic_filter: str) -> Iterator[queue.Queue]:
    """A paho client subscribed to `topic_filter`; yields the messages it gets."""
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)

    def on_connect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        c.subscribe(topic_filter, qos=1)

    def on_subscribe(c: mqtt.Client, u: Any, mid: int, rcs: Any, p: Any) -> None:
        subscribed.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = lambda c, u, message: received.put(message)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert subscribed.wait(5), "the test subscriber did not get its SUBACK"
        yield received
    finally:
        client.disconnect()
        client.loop_stop()


def message(**overrides: Any) -> dict[str, Any]:
    data = {"topic": "plant/line1/cmd", "payload": "start", "encoding": "utf8"}
    data |= {"qos": "1", **overrides}
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def broker(world: dict, plain_broker: Any) -> Broker:
    return make_broker(world["product"], port=plain_broker.port, protocol="3.1.1")


@pytest.fixture
def operator(world: dict) -> Client:
    return logged_in(world["users"]["operator"])


def test_publish_reaches_a_real_subscriber(
    broker: Broker, operator: Client, plain_broker: Any
) -> None:
    with subscriber(plain_broker.port, "plant/#") as received:
        response = operator.post(
            f"/brokers/{broker.pk}/publish/", message(retain="on"), **HTMX
        )
        got = received.get(timeout=5)
    html = response.content.decode()
    assert "Published to plant/line1/cmd." in html and "<html" not in html
    assert (got.topic, got.payload, got.qos) == ("plant/line1/cmd", b"start", 1)
    # Live deliveries never carry the retain flag: a late subscriber shows it kept.
    with subscriber(plain_broker.port, "plant/#") as late:
        assert late.get(timeout=5).retain
    entry = AuditEntry.objects.get(action="broker.publish")
    assert entry.source == "page"


def test_publish_json_is_sent_compact(
    broker: Broker, operator: Client, plain_broker: Any
) -> None:
    with subscriber(plain_broker.port, "plant/#") as received:
        operator.post(
            f"/brokers/{broker.pk}/publish/",
            message(payload='{ "on": true }', encoding="json"),
        )
        assert received.get(timeout=5).payload == b'{"on":true}'


def test_publish_without_javascript_redirects_to_the_tab(
    broker: Broker, operator: Client, plain_broker: Any
) -> None:
    with subscriber(plain_broker.port, "plant/#") as received:
        response = operator.post(f"/brokers/{broker.pk}/publish/", message())
        received.get(timeout=5)
    assert response.status_code == 302
    assert response["Location"] == f"/brokers/{broker.pk}/?tab=publish"


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"topic": "plant/+/cmd"}, "topic", "must not contain the wildcards"),
        ({"topic": ""}, "topic", "This field is required"),
        ({"payload": "{nope", "encoding": "json"}, "payload", "not valid JSON"),
        ({"payload": "%%%", "encoding": "base64"}, "payload", "not valid base64"),
    ],
)
def test_invalid_message_shows_the_error_and_sends_nothing(
    broker: Broker,
    operator: Client,
    plain_broker: Any,
    overrides: dict,
    field: str,
    text: str,
) -> None:
    with subscriber(plain_broker.port, "#") as received:
        response = operator.post(
            f"/brokers/{broker.pk}/publish/", message(**overrides), **HTMX
        )
        html = response.content.decode()
        assert text in error_next_to(html, field)
        with pytest.raises(queue.Empty):
            received.get(timeout=0.5)
    assert not AuditEntry.objects.filter(action="broker.publish").exists()


def test_invalid_message_without_javascript_keeps_the_page(
    broker: Broker, operator: Client
) -> None:
    response = operator.post(f"/brokers/{broker.pk}/publish/", message(topic="a/#"))
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html
    assert "must not contain the wildcards" in error_next_to(html, "topic")


def test_unreachable_broker_says_publishing_failed(world: dict) -> None:
    from tests.services import free_port

    broker = make_broker(world["product"], port=free_port(), connect_timeout=1)
    client = logged_in(world["users"]["operator"])
    html = client.post(
        f"/brokers/{broker.pk}/publish/", message(), **HTMX
    ).content.decode()
    assert "Publishing failed" in html


def test_template_save_publish_and_delete(
    broker: Broker, operator: Client, plain_broker: Any
) -> None:
    base = f"/brokers/{broker.pk}"
    html = operator.post(
        f"{base}/templates/",
        message(payload="stop", template_name="Stop line"),
        **HTMX,
    ).content.decode()
    assert "Template Stop line saved." in html
    template = PublishTemplate.objects.get(broker=broker, name="Stop line")
    assert (template.topic, template.payload, template.qos) == (
        "plant/line1/cmd",
        "stop",
        1,
    )
    # Saving under the same name changes the template.
    operator.post(
        f"{base}/templates/", message(payload="halt", template_name="Stop line")
    )
    template.refresh_from_db()
    assert template.payload == "halt"
    assert PublishTemplate.objects.count() == 1

    tab = operator.get(f"{base}/?tab=publish").content.decode()
    assert "Stop line" in tab
    loaded = operator.get(f"{base}/?tab=publish&template={template.pk}")
    assert "halt</textarea>" in loaded.content.decode()

    with subscriber(plain_broker.port, "plant/#") as received:
        html = operator.post(
            f"{base}/publish/", {"template": template.pk}, **HTMX
        ).content.decode()
        got = received.get(timeout=5)
    assert got.payload == b"halt" and got.topic == "plant/line1/cmd"
    assert "Published to plant/line1/cmd." in html

    html = operator.post(
        f"{base}/templates/{template.pk}/delete/", **HTMX
    ).content.decode()
    assert "Template Stop line deleted." in html
    assert not PublishTemplate.objects.exists()
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"publish_template.save", "publish_template.delete"} <= actions


def test_template_needs_a_name(broker: Broker, operator: Client) -> None:
    html = operator.post(
        f"/brokers/{broker.pk}/templates/", message(), **HTMX
    ).content.decode()
    assert "Name the template" in error_next_to(html, "template_name")
    assert not PublishTemplate.objects.exists()


def test_mqtt5_properties_reach_the_subscriber(world: dict, plain_broker: Any) -> None:
    broker = make_broker(world["product"], port=plain_broker.port, protocol="5")
    client = logged_in(world["users"]["operator"])
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    sub = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5
    )
    subscribed = threading.Event()
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("plant/#", qos=1)
    sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    sub.on_message = lambda c, u, m: received.put(m)
    sub.connect("127.0.0.1", plain_broker.port)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        page = client.get(f"/brokers/{broker.pk}/?tab=publish").content.decode()
        assert 'name="content_type"' in page
        client.post(
            f"/brokers/{broker.pk}/publish/",
            message(content_type="text/plain", user_properties="line=1\nshift=a"),
        )
        got = received.get(timeout=5)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert got.properties is not None
    # paho sets the MQTT 5 properties as attributes at run time (its type has none).
    assert got.properties.ContentType == "text/plain"  # type: ignore[attr-defined]
    assert got.properties.UserProperty == [("line", "1"), ("shift", "a")]  # type: ignore[attr-defined]


def test_mqtt311_broker_has_no_property_fields(
    broker: Broker, operator: Client
) -> None:
    page = operator.get(f"/brokers/{broker.pk}/?tab=publish").content.decode()
    assert 'name="topic"' in page and 'name="content_type"' not in page


def test_service_template_of_mqtt5_broker_keeps_properties(world: dict) -> None:
    broker = make_broker(world["product"], protocol="5")
    template = services.publish_template_save(
        actor=None,
        broker=broker,
        name="T",
        topic="a",
        payload="",
        properties={"content_type": "x/y", "user_properties": [["k", "v"]]},
    )
    client = logged_in(world["users"]["operator"])
    page = client.get(
        f"/brokers/{broker.pk}/?tab=publish&template={template.pk}"
    ).content.decode()
    assert 'value="x/y"' in page and "k=v" in page
