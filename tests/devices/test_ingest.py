"""Telemetry and availability through the ingest path, with messages captured from
a real Mosquitto (a simulator publishes, a subscriber hands them to store_batch)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from brokers.models import Subscription
from devices import services
from devices.models import Device, TelemetryPoint
from devices.telemetry import ingest_batch, telemetry_from_message
from history.models import StoredMessage
from mqttadmin.pipeline import ReceivedMessage
from runtime.ingest import store_batch
from tests.devices.simulator import Capture, Simulator
from tests.factories import make_broker, make_device

pytestmark = [pytest.mark.django_db, pytest.mark.mosquitto]


@pytest.fixture
def setup(world: dict[str, Any], plain_broker: Any) -> Iterator[dict[str, Any]]:
    product = world["product"]
    broker = make_broker(product, port=plain_broker.port)
    device = make_device(
        product, broker, "d1", availability_topic="plant/d1/status", stale_after_s=60
    )
    capture = Capture(plain_broker.port, broker.pk)
    started: list[Simulator] = []

    def simulator(client_id: str = "sim-d1") -> Simulator:
        sim = Simulator(plain_broker.port, "plant/d1/status", client_id)
        started.append(sim)
        return sim

    yield {
        "product": product,
        "broker": broker,
        "device": device,
        "capture": capture,
        "simulator": simulator,
        "port": plain_broker.port,
    }
    capture.stop()
    for sim in started:
        sim.stop()


def refreshed(device: Device) -> Device:
    return Device.objects.get(pk=device.pk)


def test_telemetry_is_flattened_stored_and_shown_as_latest_values(
    setup: dict[str, Any],
) -> None:
    sim, capture, device = setup["simulator"](), setup["capture"], setup["device"]
    sim.publish("plant/d1/telemetry", '{"temperature": 21.5, "env": {"hum": 40}}')
    sim.publish("plant/d1/pressure", "1013.2")
    batch = capture.take(3)  # online (retained-published), then the two readings

    store_batch(batch)

    points = sorted(
        TelemetryPoint.objects.filter(device=device).values_list("key", "value")
    )
    assert points == [("env.hum", 40.0), ("pressure", 1013.2), ("temperature", 21.5)]
    device = refreshed(device)
    assert {k: v["value"] for k, v in device.last_values.items()} == {
        "temperature": 21.5,
        "env.hum": 40.0,
        "pressure": 1013.2,
    }
    assert device.status == "online"
    assert device.last_seen_at == batch[-1].received_at
    assert device.stale_at == batch[-1].received_at + datetime.timedelta(seconds=60)
    # The managed subscription stores the raw messages too (history).
    assert StoredMessage.objects.filter(topic="plant/d1/telemetry").exists()


def test_devices_are_updated_once_per_batch_with_the_last_value(
    setup: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    sim, capture, device = setup["simulator"](), setup["capture"], setup["device"]
    capture.take(1)
    for value in (1, 2, 3):
        sim.publish("plant/d1/t", str(value))
    batch = capture.take(3)

    # Devices, points, the locked rows, one UPDATE, the rules for the keys.
    with django_assert_max_num_queries(5):
        ingest_batch(batch)

    assert refreshed(device).last_values["t"]["value"] == 3.0
    assert TelemetryPoint.objects.filter(device=device).count() == 3


def test_availability_follows_the_last_will(setup: dict[str, Any]) -> None:
    sim, capture, device = setup["simulator"](), setup["capture"], setup["device"]
    store_batch(capture.take(1))
    assert refreshed(device).status == "online"

    sim.die()
    will = capture.take(1, timeout=10)

    assert will[0].payload == b"offline"
    store_batch(will)
    device = refreshed(device)
    assert device.status == "offline"
    assert device.status_changed_at == will[0].received_at


def test_a_retained_last_will_sets_offline_for_a_later_subscriber(
    setup: dict[str, Any],
) -> None:
    sim, device = setup["simulator"](), setup["device"]
    sim.die()
    setup["capture"].take(2, timeout=10)  # online, then the will
    late = Capture(setup["port"], setup["broker"].pk, "plant/d1/status")
    try:
        replay = late.take(1)
    finally:
        late.stop()

    assert replay[0].retain and replay[0].payload == b"offline"
    store_batch(replay)
    device = refreshed(device)
    assert device.status == "offline"
    # A replay is not a sign of life.
    assert device.last_seen_at is None


def test_retained_telemetry_updates_values_but_stores_no_points(
    setup: dict[str, Any],
) -> None:
    sim, device = setup["simulator"](), setup["device"]
    sim.publish("plant/d1/level", "42", retain=True)
    late = Capture(setup["port"], setup["broker"].pk, "plant/d1/level")
    try:
        replay = late.take(1)
    finally:
        late.stop()

    store_batch(replay)

    assert refreshed(device).last_values["level"]["value"] == 42.0
    assert not TelemetryPoint.objects.filter(device=device).exists()


def test_commands_and_unknown_availability_payloads_are_not_telemetry(
    setup: dict[str, Any],
) -> None:
    sim, capture, device = setup["simulator"](), setup["capture"], setup["device"]
    capture.take(1)
    sim.publish("plant/d1/cmd", "5")
    sim.publish("plant/d1/status", "rebooting")
    store_batch(capture.take(2))

    assert not TelemetryPoint.objects.filter(device=device).exists()
    assert refreshed(device).status == "unknown"


def test_a_device_without_availability_topic_is_online_when_it_talks(
    setup: dict[str, Any],
) -> None:
    other = make_device(setup["product"], setup["broker"], "d2")
    sim = setup["simulator"]()
    setup["capture"].take(1)
    sim.publish("plant/d2/temp", "20")
    store_batch(setup["capture"].take(1))

    assert refreshed(other).status == "online"


def test_stale_devices_are_marked_and_a_message_clears_the_mark(
    setup: dict[str, Any],
) -> None:
    sim, capture, device = setup["simulator"](), setup["capture"], setup["device"]
    sim.publish("plant/d1/t", "1")
    store_batch(capture.take(2))
    device = refreshed(device)
    assert device.last_seen_at is not None
    later = device.last_seen_at + datetime.timedelta(seconds=61)

    assert services.devices_mark_stale(now=device.last_seen_at) == 0
    assert not device.is_stale_at(device.last_seen_at)
    assert services.devices_mark_stale(now=later) == 1
    assert services.devices_mark_stale(now=later) == 0
    device = refreshed(device)
    assert device.stale and device.display_status == "stale"
    assert list(Device.objects.stale(later)) == [device]

    sim.publish("plant/d1/t", "2")
    store_batch(capture.take(1))
    device = refreshed(device)
    assert not device.stale and device.display_status == "online"


def test_the_telemetry_action_path_does_not_store_a_message_twice(
    setup: dict[str, Any],
) -> None:
    device = setup["device"]
    at = timezone.now()
    message = ReceivedMessage(setup["broker"].pk, "plant/d1/t", b"5", 0, False, at)
    store_batch([message])

    stored = telemetry_from_message(
        broker_id=setup["broker"].pk, topic="plant/d1/t", payload=b"5", received_at=at
    )
    assert stored == 0
    assert TelemetryPoint.objects.filter(device=device).count() == 1
    later = at + datetime.timedelta(seconds=1)
    assert (
        telemetry_from_message(
            broker_id=setup["broker"].pk,
            topic="plant/d1/t",
            payload=b'{"t": 6, "u": 1}',
            received_at=later,
        )
        == 2
    )


def test_managed_subscriptions_follow_the_device(setup: dict[str, Any]) -> None:
    device = setup["device"]
    telemetry = Subscription.objects.get(pk=device.telemetry_subscription_id)
    availability = Subscription.objects.get(pk=device.availability_subscription_id)
    assert (telemetry.topic_filter, availability.topic_filter) == (
        "plant/d1/#",
        "plant/d1/status",
    )

    device = services.device_update(
        actor=None, device=device, topic="hall/d1", availability_topic=""
    )

    telemetry.refresh_from_db()
    assert telemetry.topic_filter == "hall/d1/#"
    assert device.command_topic == "hall/d1/cmd"
    assert device.availability_subscription_id is None
    assert not Subscription.objects.filter(pk=availability.pk).exists()

    services.device_delete(actor=None, device=device)
    assert not Subscription.objects.filter(pk=telemetry.pk).exists()


def test_the_newest_message_wins_whatever_the_arrival_order(
    setup: dict[str, Any],
) -> None:
    broker, device = setup["broker"], setup["device"]
    now = timezone.now()
    earlier = now - datetime.timedelta(minutes=5)
    store_batch(
        [
            ReceivedMessage(broker.pk, "plant/d1/status", b"online", 1, False, now),
            ReceivedMessage(broker.pk, "plant/d1/t", b"2", 0, False, now),
            ReceivedMessage(broker.pk, "plant/d1/t", b"1", 0, False, earlier),
        ]
    )
    device = refreshed(device)
    assert device.last_seen_at == now
    assert device.last_values["t"]["value"] == 2.0

    store_batch([ReceivedMessage(broker.pk, "plant/d1/t", b"0", 0, False, earlier)])
    assert refreshed(device).last_values["t"]["value"] == 2.0
    assert TelemetryPoint.objects.filter(device=device).count() == 3


def test_a_key_keeps_the_most_decimals_its_values_needed(
    setup: dict[str, Any],
) -> None:
    sim, capture, device = setup["simulator"](), setup["capture"], setup["device"]
    capture.take(1)
    sim.publish("plant/d1/t", "21.25")
    ingest_batch(capture.take(1))
    for payload in ("21.5", "22"):
        sim.publish("plant/d1/t", payload)
        ingest_batch(capture.take(1))

    device = refreshed(device)
    assert device.last_values["t"]["value"] == 22.0
    assert device.last_values["t"]["decimals"] == 2
    # The device page and tiles write every value of the key that wide.
    assert device.decimals_for("t") == 2
    assert device.decimals_for("t", 3.125) == 3
