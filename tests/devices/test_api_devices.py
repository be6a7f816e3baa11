"""/api/v1/devices/: the role matrix, managed subscriptions, filters, telemetry
series and commands through a real broker."""

from __future__ import annotations

import datetime
import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from brokers.models import Broker, Subscription
from devices.models import Device, TelemetryPoint
from mqttadmin.models import AuditEntry
from tests.clients import as_user
from tests.factories import make_broker, make_device

pytestmark = pytest.mark.django_db

URL = "/api/v1/devices/"


@pytest.fixture
def plant(world: dict[str, Any]) -> dict[str, Any]:
    product = world["product"]
    broker = make_broker(product)
    return {
        "product": product,
        "broker": broker,
        "device": make_device(product, broker, "d1"),
        "users": world["users"],
        "other": world["other"],
    }


def payload(plant: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    data = {
        "product": plant["product"].pk,
        "broker": plant["broker"].pk,
        "device_id": "d2",
        "name": "Pump",
        "type": "actuator",
        "topic": "plant/d2",
        "availability_topic": "plant/d2/status",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("who", "status"),
    [("superuser", 200), ("admin", 200), ("operator", 200), ("viewer", 200)],
)
def test_members_read_devices(plant: dict[str, Any], who: str, status: int) -> None:
    response = as_user(plant["users"][who]).get(f"{URL}{plant['device'].pk}/")
    assert response.status_code == status
    assert response.json()["device_id"] == "d1"
    assert response.json()["status"] == "unknown"


def test_outsiders_do_not_see_devices(plant: dict[str, Any]) -> None:
    client = as_user(plant["users"]["outsider"])
    assert client.get(f"{URL}{plant['device'].pk}/").status_code == 404
    assert client.get(URL).json()["results"] == []
    assert client.delete(f"{URL}{plant['device'].pk}/").status_code == 404
    response = client.post(URL, payload(plant), format="json")
    assert response.status_code == 400 and "product" in response.json()


@pytest.mark.parametrize(
    ("who", "status"),
    [("superuser", 201), ("admin", 201), ("operator", 201), ("viewer", 403)],
)
def test_operators_create_devices(plant: dict[str, Any], who: str, status: int) -> None:
    response = as_user(plant["users"][who]).post(URL, payload(plant), format="json")
    assert response.status_code == status, response.content
    if status == 201:
        body = response.json()
        assert body["telemetry_topic"] == "plant/d2/#"
        assert body["command_topic"] == "plant/d2/cmd"
        assert body["payload_online"] == "online"
        device = Device.objects.get(pk=body["id"])
        filters = sorted(
            Subscription.objects.filter(
                pk__in=[
                    device.telemetry_subscription_id,
                    device.availability_subscription_id,
                ]
            ).values_list("topic_filter", flat=True)
        )
        assert filters == ["plant/d2/#", "plant/d2/status"]
        assert AuditEntry.objects.filter(action="device.create").exists()


@pytest.mark.parametrize(
    ("who", "status"), [("operator", 200), ("viewer", 403), ("outsider", 404)]
)
def test_operators_change_devices(plant: dict[str, Any], who: str, status: int) -> None:
    response = as_user(plant["users"][who]).patch(
        f"{URL}{plant['device'].pk}/", {"telemetry_topic": "plant/d1/+"}, format="json"
    )
    assert response.status_code == status
    if status == 200:
        subscription = Subscription.objects.get(
            pk=plant["device"].telemetry_subscription_id
        )
        assert subscription.topic_filter == "plant/d1/+"


@pytest.mark.parametrize(
    ("who", "status"), [("operator", 204), ("viewer", 403), ("outsider", 404)]
)
def test_operators_delete_devices(plant: dict[str, Any], who: str, status: int) -> None:
    device = plant["device"]
    response = as_user(plant["users"][who]).delete(f"{URL}{device.pk}/")
    assert response.status_code == status
    assert Device.objects.filter(pk=device.pk).exists() == (status != 204)
    assert Subscription.objects.filter(
        pk=device.telemetry_subscription_id
    ).exists() == (status != 204)


def test_bad_devices_are_refused_naming_the_field(plant: dict[str, Any]) -> None:
    client = as_user(plant["users"]["operator"])
    cases = {
        "device_id": payload(plant, device_id="d1"),
        "topic": payload(plant, topic="plant/#"),
        "telemetry_topic": payload(plant, telemetry_topic="a/#/b"),
        "broker": payload(
            plant,
            broker=make_broker(plant["other"], name="Elsewhere").pk,
        ),
    }
    for field, data in cases.items():
        response = client.post(URL, data, format="json")
        assert response.status_code == 400, field
        assert field in response.json(), (field, response.json())


def test_a_device_stays_in_its_product(plant: dict[str, Any]) -> None:
    response = as_user(plant["users"]["superuser"]).patch(
        f"{URL}{plant['device'].pk}/", {"product": plant["other"].pk}, format="json"
    )
    assert response.status_code == 400 and "product" in response.json()


def test_devices_filter_by_broker_and_status(plant: dict[str, Any]) -> None:
    second = make_broker(plant["product"], name="Line 2")
    make_device(plant["product"], second, "d2")
    Device.objects.filter(device_id="d2").update(status="online")
    Device.objects.filter(device_id="d1").update(
        stale_at=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    )
    client = as_user(plant["users"]["viewer"])

    def ids(query: str) -> list[str]:
        return [d["device_id"] for d in client.get(f"{URL}?{query}").json()["results"]]

    assert ids(f"broker={second.pk}") == ["d2"]
    assert ids("status=online") == ["d2"]
    assert ids("status=stale") == ["d1"]
    assert ids(f"product={plant['product'].pk}") == ["d1", "d2"]
    assert ids(f"product={plant['other'].pk}") == []
    assert client.get(f"{URL}?status=bogus").status_code == 400


# --- Telemetry ----------------------------------------------------------------


T0 = datetime.datetime(2026, 1, 31, 12, 0, tzinfo=datetime.UTC)


def add_points(device: Device, key: str, *pairs: tuple[int, float]) -> None:
    TelemetryPoint.objects.bulk_create(
        TelemetryPoint(
            device=device, key=key, ts=T0 + datetime.timedelta(seconds=s), value=v
        )
        for s, v in pairs
    )


def telemetry(plant: dict[str, Any], query: str, who: str = "viewer") -> Any:
    return as_user(plant["users"][who]).get(
        f"{URL}{plant['device'].pk}/telemetry/?{query}"
    )


def test_telemetry_gives_raw_points_in_a_range(plant: dict[str, Any]) -> None:
    device = plant["device"]
    add_points(device, "t", (10, 1.0), (50, 2.0), (90, 4.0), (4000, 9.0))
    add_points(device, "h", (20, 30.0))

    response = telemetry(
        plant, "since=2026-01-31T12:00:00Z&until=2026-01-31T12:30:00Z&key=t"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["bucket"] is None and body["key"] == "t" and not body["truncated"]
    assert [(p["ts"], p["value"]) for p in body["points"]] == [
        ("2026-01-31T12:00:10Z", 1.0),
        ("2026-01-31T12:00:50Z", 2.0),
        ("2026-01-31T12:01:30Z", 4.0),
    ]


def test_telemetry_averages_per_bucket(plant: dict[str, Any]) -> None:
    device = plant["device"]
    add_points(device, "t", (10, 1.0), (50, 2.0), (90, 4.0), (110, 6.0))
    add_points(device, "h", (20, 30.0))

    body = telemetry(
        plant, "since=2026-01-31T12:00:00Z&until=2026-01-31T13:00:00Z&bucket=1m"
    ).json()

    assert body["bucket"] == 60
    assert [
        (p["key"], p["ts"], p["value"], p["min"], p["max"], p["count"])
        for p in body["points"]
    ] == [
        ("h", "2026-01-31T12:00:00Z", 30.0, 30.0, 30.0, 1),
        ("t", "2026-01-31T12:00:00Z", 1.5, 1.0, 2.0, 2),
        ("t", "2026-01-31T12:01:00Z", 5.0, 4.0, 6.0, 2),
    ]
    hourly = telemetry(
        plant, "since=2026-01-31T00:00:00Z&until=2026-02-01T00:00:00Z&bucket=1h&key=t"
    ).json()
    assert [(p["ts"], p["value"]) for p in hourly["points"]] == [
        ("2026-01-31T12:00:00Z", 3.25)
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("bucket=5x", "bucket"),
        ("bucket=0m", "bucket"),
        ("since=yesterday", "since"),
        ("since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
        ("since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z&bucket=1s", "bucket"),
    ],
)
def test_bad_telemetry_queries_name_the_parameter(
    plant: dict[str, Any], query: str, field: str
) -> None:
    response = telemetry(plant, query)
    assert response.status_code == 400
    assert field in response.json()


def test_outsiders_get_no_telemetry(plant: dict[str, Any]) -> None:
    assert telemetry(plant, "", who="outsider").status_code == 404


# --- Commands -----------------------------------------------------------------


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id="cmd-sub"
        )
        subscribed = threading.Event()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(5)


@pytest.mark.mosquitto
def test_a_command_reaches_a_real_subscriber_on_the_command_topic(
    plant: dict[str, Any], plain_broker: Any
) -> None:
    Broker.objects.filter(pk=plant["broker"].pk).update(port=plain_broker.port)
    subscriber = Subscriber(plain_broker.port, "plant/d1/#")
    try:
        client = as_user(plant["users"]["operator"])
        url = f"{URL}{plant['device'].pk}/command/"
        text = client.post(url, {"payload": "reboot", "qos": 1}, format="json")
        obj = client.post(url, {"payload": {"set": 21.5}}, format="json")

        first = subscriber.messages.get(timeout=5)
        second = subscriber.messages.get(timeout=5)
    finally:
        subscriber.client.disconnect()

    assert text.status_code == 200, text.content
    assert text.json() == {"published": 1, "topic": "plant/d1/cmd"}
    assert obj.status_code == 200
    assert (first.topic, first.payload, first.qos) == ("plant/d1/cmd", b"reboot", 1)
    assert second.payload == b'{"set":21.5}'
    assert AuditEntry.objects.filter(action="device.command").count() == 2


def test_viewers_cannot_send_commands(plant: dict[str, Any]) -> None:
    response = as_user(plant["users"]["viewer"]).post(
        f"{URL}{plant['device'].pk}/command/", {"payload": "x"}, format="json"
    )
    assert response.status_code == 403


def test_commands_to_an_unreachable_broker_are_a_502(plant: dict[str, Any]) -> None:
    from tests.services import free_port

    Broker.objects.filter(pk=plant["broker"].pk).update(
        port=free_port(), connect_timeout=1
    )
    response = as_user(plant["users"]["operator"]).post(
        f"{URL}{plant['device'].pk}/command/", {"payload": "x"}, format="json"
    )
    assert response.status_code == 502


def test_bad_commands_are_refused(plant: dict[str, Any]) -> None:
    client = as_user(plant["users"]["operator"])
    url = f"{URL}{plant['device'].pk}/command/"
    assert client.post(url, {"payload": 5}, format="json").status_code == 400
    assert (
        client.post(url, {"payload": "x", "qos": 3}, format="json").status_code == 400
    )


# --- Alert rules --------------------------------------------------------------


RULES = "/api/v1/alert-rules/"


def test_alert_rules_crud_and_roles(plant: dict[str, Any]) -> None:
    users = plant["users"]
    data = {
        "device": plant["device"].pk,
        "key": "temperature",
        "op": ">",
        "threshold": 80,
        "severity": "critical",
        "notify_email": "ops@example.com",
        "notify_webhook": "https://hooks.example.com/alerts",
    }
    assert as_user(users["viewer"]).post(RULES, data, format="json").status_code == 403
    created = as_user(users["operator"]).post(RULES, data, format="json")
    assert created.status_code == 201, created.content
    rule = created.json()
    assert rule["product"] == plant["product"].pk

    assert as_user(users["viewer"]).get(RULES).json()["count"] == 1
    assert as_user(users["outsider"]).get(f"{RULES}{rule['id']}/").status_code == 404
    patched = as_user(users["operator"]).patch(
        f"{RULES}{rule['id']}/", {"threshold": 90}, format="json"
    )
    assert patched.json()["threshold"] == 90
    assert as_user(users["operator"]).delete(f"{RULES}{rule['id']}/").status_code == 204


def test_a_product_wide_rule_needs_the_product(plant: dict[str, Any]) -> None:
    client = as_user(plant["users"]["operator"])
    base = {"key": "t", "op": "<", "threshold": 1}
    assert client.post(RULES, base, format="json").status_code == 400
    response = client.post(
        RULES, {**base, "product": plant["product"].pk, "device": None}, format="json"
    )
    assert response.status_code == 201 and response.json()["device"] is None


def test_bad_rules_name_the_field(plant: dict[str, Any]) -> None:
    client = as_user(plant["users"]["operator"])
    base = {"product": plant["product"].pk, "key": "t", "op": ">", "threshold": 1}
    for field, value in [
        ("op", "~"),
        ("notify_email", "not-an-address"),
        ("notify_webhook", "ftp://x"),
        ("severity", "meh"),
    ]:
        response = client.post(RULES, {**base, field: value}, format="json")
        assert response.status_code == 400 and field in response.json(), field


def test_moving_a_device_to_another_broker_moves_its_subscriptions(
    plant: dict[str, Any],
) -> None:
    second = make_broker(plant["product"], name="Line 2")
    device = plant["device"]
    old = device.telemetry_subscription_id

    response = as_user(plant["users"]["operator"]).patch(
        f"{URL}{device.pk}/", {"broker": second.pk}, format="json"
    )

    assert response.status_code == 200
    device.refresh_from_db()
    assert not Subscription.objects.filter(pk=old).exists()
    assert device.telemetry_subscription.broker == second
