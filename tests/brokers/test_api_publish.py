"""POST /api/v1/brokers/{id}/publish/ reaches a real subscriber; publish templates."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.core.exceptions import ValidationError
from paho.mqtt.enums import CallbackAPIVersion

from brokers import services
from brokers.models import Broker, PublishTemplate
from mqttadmin.models import AuditEntry
from tests.clients import as_user
from tests.factories import make_broker, make_publish_template
from tests.services import free_port

pytestmark = pytest.mark.django_db

_ids = itertools.count(1)


class Subscriber:
    """A paho client subscribed to `#` on a test broker, collecting messages."""

    def __init__(self, port: int, protocol: int, topic: str = "#") -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{next(_ids)}",
            protocol=mqtt.MQTTProtocolVersion(protocol),
        )
        subscribed = threading.Event()
        self.client.on_message = lambda client, userdata, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=2)
        assert subscribed.wait(5), "no SUBACK"

    def receive(self, count: int = 1, timeout: float = 5.0) -> list[mqtt.MQTTMessage]:
        return [self.messages.get(timeout=timeout) for _ in range(count)]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Subscriber]]:
    started: list[Subscriber] = []

    def start(port: int, protocol: int = mqtt.MQTTv311, topic: str = "#") -> Subscriber:
        subscriber = Subscriber(port, protocol, topic)
        started.append(subscriber)
        return subscriber

    yield start
    for subscriber in started:
        subscriber.stop()


def publish_url(broker: Broker) -> str:
    return f"/api/v1/brokers/{broker.pk}/publish/"


@pytest.fixture
def operator(world: dict) -> Any:
    return as_user(world["users"]["operator"])


# --- Role matrix --------------------------------------------------------------


@pytest.mark.mosquitto
@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 200),
        ("admin", 200),
        ("operator", 200),
        ("viewer", 403),
        ("outsider", 404),
    ],
)
def test_publish_roles(
    world: dict, plain_broker: Any, subscribe: Any, who: str, status: int
) -> None:
    broker = make_broker(world["product"], port=plain_broker.port)
    subscriber = subscribe(plain_broker.port)
    response = as_user(world["users"][who]).post(
        publish_url(broker), {"topic": "plant/x", "payload": who}, format="json"
    )
    assert response.status_code == status
    # A sentinel published after shows whether the first message went out.
    services.broker_publish(
        actor=None,
        broker=broker,
        requests=[services.PublishRequest(topic="plant/sentinel", payload="end")],
    )
    first = subscriber.receive()[0]
    if status == 200:
        assert (first.topic, first.payload) == ("plant/x", who.encode())
    else:
        assert first.topic == "plant/sentinel"


# --- Delivery -----------------------------------------------------------------


@pytest.mark.mosquitto
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"payload": "21.5 °C"}, "21.5 °C".encode()),
        ({"payload": ""}, b""),
        ({}, b""),
        ({"payload": "AAEC/w==", "encoding": "base64"}, b"\x00\x01\x02\xff"),
        (
            {"payload": {"t": 21.5, "ok": True, "tags": ["a"]}, "encoding": "json"},
            b'{"t":21.5,"ok":true,"tags":["a"]}',
        ),
        ({"payload": '[1, 2,  "x"]', "encoding": "json"}, b'[1,2,"x"]'),
        ({"payload": None, "encoding": "json"}, b"null"),
        ({"payload": "  spaced  "}, b"  spaced  "),
    ],
)
def test_payload_encodings_arrive_exactly(
    world: dict,
    plain_broker: Any,
    subscribe: Any,
    operator: Any,
    message: dict,
    expected: bytes,
) -> None:
    broker = make_broker(world["product"], port=plain_broker.port)
    subscriber = subscribe(plain_broker.port)
    response = operator.post(
        publish_url(broker), {"topic": "plant/t", **message}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"published": 1}
    received = subscriber.receive()[0]
    assert (received.topic, received.payload) == ("plant/t", expected)
    assert received.qos == 0 and not received.retain


@pytest.mark.mosquitto
def test_qos1_and_retain(
    world: dict, plain_broker: Any, subscribe: Any, operator: Any
) -> None:
    broker = make_broker(world["product"], port=plain_broker.port)
    live = subscribe(plain_broker.port)
    response = operator.post(
        publish_url(broker),
        {"topic": "plant/state", "payload": "on", "qos": 1, "retain": True},
        format="json",
    )
    assert response.status_code == 200
    assert live.receive()[0].qos == 1
    # A subscriber that comes later gets the retained message.
    late = subscribe(plain_broker.port, topic="plant/state")
    message = late.receive()[0]
    assert (message.payload, message.retain) == (b"on", True)


@pytest.mark.mosquitto
def test_batch_arrives_in_order(
    world: dict, plain_broker: Any, subscribe: Any, operator: Any
) -> None:
    broker = make_broker(world["product"], port=plain_broker.port)
    subscriber = subscribe(plain_broker.port)
    messages = [
        {"topic": "plant/a", "payload": "one"},
        {"topic": "plant/b", "payload": "dHdv", "encoding": "base64", "qos": 1},
        {"topic": "plant/c", "payload": {"n": 3}, "encoding": "json", "qos": 2},
        {"topic": "plant/a", "payload": "four"},
    ]
    response = operator.post(publish_url(broker), {"messages": messages}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"published": 4}
    received = [(m.topic, m.payload) for m in subscriber.receive(4)]
    assert sorted(received) == sorted(
        [
            ("plant/a", b"one"),
            ("plant/b", b"two"),
            ("plant/c", b'{"n":3}'),
            ("plant/a", b"four"),
        ]
    )
    entry = AuditEntry.objects.get(action="broker.publish")
    assert entry.changes == {"topics": [None, ["plant/a", "plant/b", "plant/c"]]}
    assert entry.actor_name == "oscar"


@pytest.mark.mosquitto
def test_mqtt5_properties_arrive(
    world: dict, plain_broker: Any, subscribe: Any, operator: Any
) -> None:
    broker = make_broker(world["product"], port=plain_broker.port, protocol="5")
    subscriber = subscribe(plain_broker.port, protocol=mqtt.MQTTv5)
    response = operator.post(
        publish_url(broker),
        {
            "topic": "plant/cmd",
            "payload": {"set": 1},
            "encoding": "json",
            "properties": {
                "content_type": "application/json",
                "message_expiry_interval": 300,
                "response_topic": "plant/cmd/reply",
                "correlation_data": "req-42",
                "user_properties": [["site", "north"], ["site", "south"]],
            },
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    message = subscriber.receive()[0]
    props = message.properties
    assert message.payload == b'{"set":1}'
    assert props.ContentType == "application/json"
    assert props.ResponseTopic == "plant/cmd/reply"
    assert props.CorrelationData == b"req-42"
    assert props.UserProperty == [("site", "north"), ("site", "south")]
    assert 0 < props.MessageExpiryInterval <= 300


@pytest.mark.mosquitto
def test_user_properties_as_an_object(
    world: dict, plain_broker: Any, subscribe: Any, operator: Any
) -> None:
    broker = make_broker(world["product"], port=plain_broker.port, protocol="5")
    subscriber = subscribe(plain_broker.port, protocol=mqtt.MQTTv5)
    operator.post(
        publish_url(broker),
        {"topic": "t", "properties": {"user_properties": {"unit": "C", "n": 2}}},
        format="json",
    )
    assert subscriber.receive()[0].properties.UserProperty == [
        ("unit", "C"),
        ("n", "2"),
    ]


# --- Invalid publishes --------------------------------------------------------

OK = {"topic": "plant/ok", "payload": "fine"}


@pytest.mark.mosquitto
@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"topic": "plant/+/t"}, "topic", "wildcards"),
        ({"topic": "plant/#"}, "topic", "wildcards"),
        ({"topic": ""}, "topic", "empty"),
        ({"topic": "a\x00b"}, "topic", "NUL"),
        ({"topic": "x" * 65536}, "topic", "65535"),
        ({"topic": "é" * 32768}, "topic", "65535"),
        ({"payload": "x"}, "topic", "required"),
        ({**OK, "qos": 3}, "qos", "0, 1 or 2"),
        ({**OK, "qos": -1}, "qos", "0, 1 or 2"),
        ({**OK, "retain": "perhaps"}, "retain", "boolean"),
        ({**OK, "payload": "x" * 17}, "payload", "at most 16"),
        ({**OK, "payload": "not base64!", "encoding": "base64"}, "payload", "base64"),
        ({**OK, "payload": "{nope", "encoding": "json"}, "payload", "JSON"),
        ({**OK, "payload": 12}, "payload", "string"),
        ({**OK, "encoding": "hex"}, "encoding", "utf8, base64, json"),
        (
            {**OK, "properties": {"content_type": "text/plain"}},
            "properties",
            "MQTT 5",
        ),
        ({**OK, "properties": {"colour": "red"}}, "properties", "colour"),
        (
            {**OK, "properties": {"response_topic": "r/#"}},
            "properties.response_topic",
            "wildcards",
        ),
        (
            {**OK, "properties": {"message_expiry_interval": -5}},
            "properties.message_expiry_interval",
            "greater than or equal to 0",
        ),
        (
            {**OK, "properties": {"user_properties": [["only-one"]]}},
            "properties.user_properties",
            "pairs",
        ),
        (
            {"messages": [OK, OK, {"topic": "bad/+"}, OK]},
            "messages[2].topic",
            "wildcards",
        ),
        ({"messages": [OK, {**OK, "qos": 5}]}, "messages[1].qos", "0, 1 or 2"),
        (
            {"messages": [OK, {**OK, "payload": "x" * 17}]},
            "messages[1].payload",
            "at most 16",
        ),
        ({"messages": []}, "messages", "empty"),
        ({"messages": "plant/ok"}, "messages", "list"),
        ({**OK, "messages": [OK]}, "messages", "not both"),
    ],
)
def test_invalid_publish_is_400_and_sends_nothing(
    world: dict,
    plain_broker: Any,
    subscribe: Any,
    operator: Any,
    body: dict,
    field: str,
    says: str,
) -> None:
    # MQTT 3.1.1: one of the cases is MQTT 5 properties it cannot carry.
    broker = make_broker(
        world["product"], port=plain_broker.port, max_payload_bytes=16, protocol="3.1.1"
    )
    subscriber = subscribe(plain_broker.port)
    response = operator.post(publish_url(broker), body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors, errors
    assert says in " ".join(errors[field]), errors
    assert not AuditEntry.objects.filter(action="broker.publish").exists()
    # Nothing went out: the first message the subscriber sees is this one.
    assert operator.post(publish_url(broker), OK, format="json").status_code == 200
    assert subscriber.receive()[0].topic == "plant/ok"


def test_payload_over_the_default_limit_of_256_kib(world: dict, operator: Any) -> None:
    # Checked before connecting: the broker's address need not answer.
    broker = make_broker(world["product"], port=free_port())
    response = operator.post(
        publish_url(broker),
        {"topic": "t", "payload": "x" * (256 * 1024 + 1)},
        format="json",
    )
    assert response.status_code == 400
    assert "262144" in response.json()["payload"][0]


def test_unreachable_broker_is_502(world: dict, operator: Any) -> None:
    port = free_port()
    broker = make_broker(world["product"], port=port)
    response = operator.post(publish_url(broker), OK, format="json")
    assert response.status_code == 502
    assert f"127.0.0.1:{port}" in response.json()["detail"]
    assert not AuditEntry.objects.filter(action="broker.publish").exists()


# --- Publish templates --------------------------------------------------------

TEMPLATES = "/api/v1/publish-templates/"


@pytest.mark.parametrize(
    ("who", "sees"),
    [
        ("superuser", {"Reset", "Far"}),
        ("admin", {"Reset"}),
        ("viewer", {"Reset"}),
        ("outsider", {"Far"}),
    ],
)
def test_template_list_is_scoped(world: dict, who: str, sees: set) -> None:
    make_publish_template(make_broker(world["product"]))
    make_publish_template(make_broker(world["other"], name="B"), name="Far")
    response = as_user(world["users"][who]).get(TEMPLATES)
    assert {t["name"] for t in response.json()["results"]} == sees


def test_template_list_filters_by_broker(world: dict) -> None:
    first = make_broker(world["product"])
    second = make_broker(world["product"], name="Line 2")
    make_publish_template(first)
    make_publish_template(second, name="Other")
    response = as_user(world["users"]["viewer"]).get(TEMPLATES, {"broker": second.pk})
    assert [t["name"] for t in response.json()["results"]] == ["Other"]


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 201),
        ("admin", 201),
        ("operator", 201),
        ("viewer", 403),
        ("outsider", 400),
    ],
)
def test_template_create(world: dict, who: str, status: int) -> None:
    broker = make_broker(world["product"], protocol="5")
    response = as_user(world["users"][who]).post(
        TEMPLATES,
        {
            "broker": broker.pk,
            "name": "Setpoint",
            "topic": "plant/setpoint",
            "payload": '{"t": 21}',
            "encoding": "json",
            "qos": 1,
            "properties": {"content_type": "application/json"},
        },
        format="json",
    )
    assert response.status_code == status, response.content
    assert PublishTemplate.objects.filter(name="Setpoint").exists() == (status == 201)
    if status == 201:
        assert response.json()["properties"] == {"content_type": "application/json"}
        assert AuditEntry.objects.filter(action="publish_template.save").exists()
    if status == 400:
        assert "does not exist" in response.json()["broker"][0]


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 200),
        ("admin", 200),
        ("operator", 200),
        ("viewer", 200),
        ("outsider", 404),
    ],
)
def test_template_retrieve(world: dict, who: str, status: int) -> None:
    template = make_publish_template(make_broker(world["product"]))
    response = as_user(world["users"][who]).get(f"{TEMPLATES}{template.pk}/")
    assert response.status_code == status


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 200),
        ("admin", 200),
        ("operator", 200),
        ("viewer", 403),
        ("outsider", 404),
    ],
)
def test_template_update(world: dict, who: str, status: int) -> None:
    template = make_publish_template(make_broker(world["product"]))
    response = as_user(world["users"][who]).patch(
        f"{TEMPLATES}{template.pk}/", {"payload": "now"}, format="json"
    )
    assert response.status_code == status
    template.refresh_from_db()
    assert (template.payload == "now") == (status == 200)


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 204),
        ("admin", 204),
        ("operator", 204),
        ("viewer", 403),
        ("outsider", 404),
    ],
)
def test_template_delete(world: dict, who: str, status: int) -> None:
    template = make_publish_template(make_broker(world["product"]))
    response = as_user(world["users"][who]).delete(f"{TEMPLATES}{template.pk}/")
    assert response.status_code == status
    assert PublishTemplate.objects.filter(pk=template.pk).exists() == (status != 204)


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"topic": "plant/+"}, "topic", "wildcards"),
        ({"topic": ""}, "topic", "empty"),
        ({"qos": 3}, "qos", "0, 1 or 2"),
        ({"encoding": "base64", "payload": "***"}, "payload", "base64"),
        ({"encoding": "json", "payload": "{"}, "payload", "JSON"),
        ({"payload": "x" * 17}, "payload", "at most 16"),
        ({"properties": {"content_type": "a"}}, "properties", "MQTT 5"),
        ({"properties": {"nope": 1}}, "properties", "nope"),
        ({"name": "Reset"}, "name", "already has one"),
        ({"name": ""}, "name", "blank"),
    ],
)
def test_invalid_template_names_the_field_and_changes_nothing(
    world: dict, operator: Any, fields: dict, field: str, says: str
) -> None:
    # MQTT 3.1.1: one of the cases is MQTT 5 properties it cannot carry.
    broker = make_broker(world["product"], max_payload_bytes=16, protocol="3.1.1")
    existing = make_publish_template(broker)
    body = {"broker": broker.pk, "name": "New", "topic": "plant/new", **fields}
    response = operator.post(TEMPLATES, body, format="json")
    assert response.status_code == 400, response.content
    assert says in " ".join(response.json()[field]), response.json()
    assert PublishTemplate.objects.count() == 1
    if field != "name":
        response = operator.patch(f"{TEMPLATES}{existing.pk}/", fields, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()
        existing.refresh_from_db()
        assert (existing.topic, existing.payload) == ("plant/reset", "")


def test_service_names_a_bad_response_topic_in_a_batch(world: dict) -> None:
    # The API checks it first; the service must name the field on its own too.
    broker = make_broker(world["product"], protocol="5", port=free_port())
    bad = services.PublishRequest(topic="t", properties={"response_topic": "r/+"})
    with pytest.raises(ValidationError) as caught:
        services.broker_publish(
            actor=None, broker=broker, requests=[bad, bad], batch=True
        )
    assert list(caught.value.message_dict) == ["messages[0].properties.response_topic"]
