"""Threshold rules open one alert per device and resolve it when the value comes
back; notifications go out after the commit; broker outages raise alerts too."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from celery import current_app
from django.core import mail
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_acknowledge, alert_key, alert_open
from brokers.choices import ConnectionState
from brokers.models import Broker, BrokerStatus
from devices import alerts, services, tasks
from devices.models import AlertRule, Device
from devices.telemetry import DeviceRef, devices_of_brokers
from mqttadmin import background
from mqttadmin.models import AuditEntry
from mqttadmin.pipeline import ReceivedMessage
from runtime.ingest import store_batch
from tests.devices.simulator import Capture, Simulator
from tests.factories import make_broker, make_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def plant(world: dict[str, Any]) -> dict[str, Any]:
    product = world["product"]
    broker = make_broker(product)
    return {
        "product": product,
        "broker": broker,
        "d1": make_device(product, broker, "d1"),
        "users": world["users"],
    }


def rule(plant: dict[str, Any], **fields: Any) -> AlertRule:
    fields.setdefault("key", "temperature")
    fields.setdefault("op", ">")
    fields.setdefault("threshold", 80.0)
    return services.alert_rule_create(actor=None, product=plant["product"], **fields)


def send(broker: Broker, *readings: tuple[str, str]) -> None:
    """One ingest batch of (topic, payload) messages, a second apart."""
    start = timezone.now()
    store_batch(
        [
            ReceivedMessage(
                broker.pk,
                topic,
                payload.encode(),
                0,
                False,
                start + datetime.timedelta(seconds=i),
            )
            for i, (topic, payload) in enumerate(readings)
        ]
    )


def alerts_of(r: AlertRule) -> list[Alert]:
    return list(Alert.objects.filter(rule_key=r.rule_key).order_by("id"))


@pytest.mark.mosquitto
def test_a_value_over_the_threshold_opens_exactly_one_alert_until_it_drops(
    plant: dict[str, Any], plain_broker: Any
) -> None:
    broker = plant["broker"]
    Broker.objects.filter(pk=broker.pk).update(port=plain_broker.port)
    r = rule(plant, device=plant["d1"], severity="critical")
    capture = Capture(plain_broker.port, broker.pk, "plant/#")
    sim = Simulator(plain_broker.port, "plant/d1/status")
    try:
        capture.take(1)  # the simulator's "online"
        for value in ("79", "85", "90", "88"):
            sim.publish("plant/d1/telemetry", json.dumps({"temperature": float(value)}))
            store_batch(capture.take(1))
        opened = alerts_of(r)
        assert [(a.state, a.subject, a.value) for a in opened] == [("open", "d1", 85.0)]
        assert opened[0].severity == "critical"
        assert "temperature" in opened[0].message

        sim.publish("plant/d1/telemetry", '{"temperature": 70}')
        store_batch(capture.take(1))
    finally:
        sim.stop()
        capture.stop()

    (alert,) = alerts_of(r)
    assert alert.state == "resolved" and alert.resolved_at is not None
    assert alert.value == 70.0


def test_crossing_again_opens_a_new_alert(plant: dict[str, Any]) -> None:
    r = rule(plant)
    send(plant["broker"], ("plant/d1/temperature", "81"))
    send(plant["broker"], ("plant/d1/temperature", "20"))
    send(
        plant["broker"], ("plant/d1/temperature", "82"), ("plant/d1/temperature", "83")
    )

    assert [a.state for a in alerts_of(r)] == ["resolved", "open"]


def test_readings_in_one_batch_are_judged_in_order(plant: dict[str, Any]) -> None:
    r = rule(plant)
    send(
        plant["broker"],
        ("plant/d1/temperature", "90"),
        ("plant/d1/temperature", "10"),
        ("plant/d1/temperature", "95"),
    )

    assert [(a.state, a.value) for a in alerts_of(r)] == [
        ("resolved", 10.0),
        ("open", 95.0),
    ]


def test_a_product_wide_rule_watches_every_device_separately(
    plant: dict[str, Any],
) -> None:
    make_device(plant["product"], plant["broker"], "d2")
    r = rule(plant, key="env.hum", op="<", threshold=30)
    send(
        plant["broker"],
        ("plant/d1/t", '{"env": {"hum": 20}}'),
        ("plant/d2/t", '{"env": {"hum": 25}}'),
        ("plant/d2/t", '{"env": {"hum": 26}}'),
    )

    assert sorted((a.subject, a.state) for a in alerts_of(r)) == [
        ("d1", "open"),
        ("d2", "open"),
    ]


def test_a_rule_of_one_device_ignores_the_others(plant: dict[str, Any]) -> None:
    make_device(plant["product"], plant["broker"], "d2")
    r = rule(plant, device=plant["d1"])
    send(plant["broker"], ("plant/d2/temperature", "99"))

    assert alerts_of(r) == []


def test_an_alert_opened_meanwhile_is_not_duplicated(plant: dict[str, Any]) -> None:
    r = rule(plant)
    existing = Alert.objects.create(
        product=plant["product"], rule_key=r.rule_key, subject="d1", value=81
    )
    (ref,) = [
        d for d in devices_of_brokers({plant["broker"].pk}) if d.device_id == "d1"
    ]
    assert isinstance(ref, DeviceRef)

    # The database's constraint stops a second open alert; the race is lost quietly.
    assert alerts._open(r, ref, 90.0, timezone.now()) is None
    assert alerts_of(r) == [existing]


def test_disabling_or_deleting_a_rule_resolves_its_alerts(
    plant: dict[str, Any],
) -> None:
    r = rule(plant)
    send(plant["broker"], ("plant/d1/temperature", "99"))
    services.alert_rule_update(actor=None, rule=r, enabled=False)
    assert [a.state for a in alerts_of(r)] == ["resolved"]

    services.alert_rule_update(actor=None, rule=r, enabled=True)
    send(plant["broker"], ("plant/d1/temperature", "99"))
    key = r.rule_key
    services.alert_rule_delete(actor=None, rule=r)
    assert list(Alert.objects.filter(rule_key=key).values_list("state", flat=True)) == [
        "resolved",
        "resolved",
    ]


def test_notifications_go_out_after_the_commit_with_an_idempotency_key(
    plant: dict[str, Any],
    http_sink: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    ran: list[tuple[str, list[Any]]] = []

    def run_now(task_name: str, *args: Any, queue: str | None = None) -> None:
        ran.append((task_name, list(args)))
        current_app.tasks[task_name].apply(args=args)

    # Run the task in this thread (the test's transaction holds the alert).
    monkeypatch.setattr(background, "enqueue", run_now)
    r = rule(
        plant,
        notify_email="ops@example.com, oncall@example.com",
        notify_webhook=f"{http_sink.url}/hook",
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        send(plant["broker"], ("plant/d1/temperature", "99"))
    assert ran == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    (alert,) = alerts_of(r)

    assert ran == [("devices.notify_alert", [alert.pk, "opened"])]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com", "oncall@example.com"]
    (request,) = http_sink.requests
    assert request.headers["Idempotency-Key"] == f"alert-{alert.pk}-opened"
    body = json.loads(request.body)
    assert body["event"] == "opened" and body["alert"]["subject"] == "d1"

    with django_capture_on_commit_callbacks(execute=True):
        send(plant["broker"], ("plant/d1/temperature", "20"))
    assert http_sink.requests[-1].headers["Idempotency-Key"] == (
        f"alert-{alert.pk}-resolved"
    )
    assert len(mail.outbox) == 2


def test_rules_without_notification_enqueue_nothing(
    plant: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    monkeypatch.setattr(background, "enqueue", lambda *a, **k: pytest.fail("sent"))
    rule(plant)
    with django_capture_on_commit_callbacks(execute=True):
        send(plant["broker"], ("plant/d1/temperature", "99"))


def test_acknowledging_records_the_user_once(plant: dict[str, Any]) -> None:
    r = rule(plant)
    send(plant["broker"], ("plant/d1/temperature", "99"))
    (alert,) = alerts_of(r)
    operator = plant["users"]["operator"]

    alert_acknowledge(actor=operator, alert=alert)
    first = alert.acknowledged_at
    alert_acknowledge(actor=plant["users"]["admin"], alert=alert)

    alert.refresh_from_db()
    assert alert.acknowledged_by == operator and alert.acknowledged_at == first
    assert AuditEntry.objects.filter(action="alert.acknowledge").count() == 1


# --- Broker connections ---------------------------------------------------------


def set_status(broker: Broker, state: str, disconnected_ago: float | None) -> None:
    BrokerStatus.objects.filter(broker=broker).update(
        state=state,
        last_disconnected_at=(
            timezone.now() - datetime.timedelta(seconds=disconnected_ago)
            if disconnected_ago is not None
            else None
        ),
    )


def test_a_broker_down_longer_than_the_set_time_raises_one_alert(
    plant: dict[str, Any], settings: Any
) -> None:
    settings.DEVICES_BROKER_DOWN_ALERT_S = 120
    broker = plant["broker"]
    set_status(broker, ConnectionState.DISCONNECTED, 60)
    assert alerts.check_broker_connections() == {"opened": 0, "resolved": 0}

    set_status(broker, ConnectionState.DISCONNECTED, 180)
    assert alerts.check_broker_connections() == {"opened": 1, "resolved": 0}
    assert alerts.check_broker_connections() == {"opened": 0, "resolved": 0}
    (alert,) = Alert.objects.filter(rule_key=alerts.broker_rule_key(broker.pk))
    assert alert.state == "open" and alert.subject == broker.name
    assert alert.severity == "critical"

    set_status(broker, ConnectionState.CONNECTED, 180)
    assert alerts.check_broker_connections() == {"opened": 0, "resolved": 1}
    alert.refresh_from_db()
    assert alert.state == "resolved"


def test_disabled_or_deleted_brokers_resolve_their_alerts(
    plant: dict[str, Any], settings: Any
) -> None:
    settings.DEVICES_BROKER_DOWN_ALERT_S = 1
    broker = plant["broker"]
    set_status(broker, ConnectionState.ERROR, 10)
    assert alerts.check_broker_connections()["opened"] == 1
    Broker.objects.filter(pk=broker.pk).update(enabled=False)
    assert alerts.check_broker_connections()["resolved"] == 1

    # An alert of a broker deleted since.
    gone = Alert.objects.create(
        product=plant["product"],
        rule_key=alerts.broker_rule_key(broker.pk + 1000),
        subject="gone",
    )
    assert alerts.check_broker_connections()["resolved"] == 1
    gone.refresh_from_db()
    assert gone.state == "resolved"


def test_the_broker_check_leaves_the_refused_logins_alert_alone(
    plant: dict[str, Any], settings: Any
) -> None:
    settings.DEVICES_BROKER_DOWN_ALERT_S = 120
    broker = plant["broker"]
    set_status(broker, ConnectionState.CONNECTED, None)
    refused = alert_open(
        product_id=plant["product"].pk,
        key=alert_key("broker", broker.pk, "refused-logins"),
        subject=broker.name,
        message="5 refused logins",
    )
    assert refused is not None
    assert alerts.check_broker_connections() == {"opened": 0, "resolved": 0}
    refused.refresh_from_db()
    assert refused.state == "open"


def test_the_health_task_marks_stale_devices_and_checks_brokers(
    plant: dict[str, Any], settings: Any
) -> None:
    settings.DEVICES_BROKER_DOWN_ALERT_S = 1
    set_status(plant["broker"], ConnectionState.DISCONNECTED, 10)
    Device.objects.filter(pk=plant["d1"].pk).update(
        stale_at=timezone.now() - datetime.timedelta(seconds=1)
    )

    assert tasks.check_health.apply().get() == {
        "stale": 1,
        "opened": 1,
        "resolved": 0,
    }


def test_deleting_or_renaming_a_device_resolves_its_alerts(
    plant: dict[str, Any],
) -> None:
    r = rule(plant)
    send(plant["broker"], ("plant/d1/temperature", "99"))
    device = services.device_update(actor=None, device=plant["d1"], device_id="d1b")
    assert [a.state for a in alerts_of(r)] == ["resolved"]

    send(plant["broker"], ("plant/d1/temperature", "99"))
    assert [(a.subject, a.state) for a in alerts_of(r)] == [
        ("d1", "resolved"),
        ("d1b", "open"),
    ]
    services.device_delete(actor=None, device=device)
    assert [a.state for a in alerts_of(r)] == ["resolved", "resolved"]
