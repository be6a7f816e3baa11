"""End to end with the real MQTT runtime: a simulator publishes to Mosquitto, the
runtime ingests, the page and the API show values, sparklines and the online state;
a value over a threshold opens one alert that resolves; killing the simulator's
connection turns the device offline through its last will."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from alerts.models import Alert
from brokers.models import BrokerStatus
from devices import services
from devices.models import Device
from runtime.manager import Runtime
from tests.clients import as_user, logged_in
from tests.devices.simulator import Simulator
from tests.factories import make_broker, make_device, make_product, make_user
from tests.runtime_support import retrying, wait_until

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sqlite_readers_do_not_wait"),
]


def fresh(device: Device) -> Device:
    return retrying(Device.objects.get, pk=device.pk)


def test_a_simulated_device_through_the_runtime(plain_broker: Any) -> None:
    viewer = make_user("vera")
    product = make_product("Plant", viewer=viewer)
    broker = make_broker(product, port=plain_broker.port)
    device = make_device(product, broker, "d1", availability_topic="plant/d1/status")
    rule = services.alert_rule_create(
        actor=None, product=product, device=device, key="temperature", threshold=80
    )
    runtime = Runtime(owner="devices-e2e", poll_interval=0.2)
    runtime.start()
    sim: Simulator | None = None
    try:
        wait_until(
            lambda: retrying(
                BrokerStatus.objects.filter(
                    broker=broker, state="connected", subscribed_topics_count=2
                ).exists
            ),
            10,
            "the runtime subscribed to the device's topics",
        )
        sim = Simulator(plain_broker.port, "plant/d1/status", "sim-e2e")
        for value in (20.5, 21.0, 21.5):
            sim.publish("plant/d1/telemetry", json.dumps({"temperature": value}))
        wait_until(
            lambda: (
                fresh(device).last_values.get("temperature", {}).get("value") == 21.5
            ),
            10,
            "the values arrived",
        )
        assert fresh(device).status == "online"

        html = logged_in(viewer, product).get("/devices/").content.decode()
        assert "Online" in html and "21.5" in html
        assert '<svg class="sparkline"' in html
        api = as_user(viewer).get(f"/api/v1/devices/{device.pk}/").json()
        assert api["status"] == "online" and not api["stale"]
        assert api["last_values"]["temperature"]["value"] == 21.5

        for value in (85, 90):
            sim.publish("plant/d1/telemetry", json.dumps({"temperature": value}))
        # Reads are uncommitted (see above): wait for the last write of the batch.
        wait_until(
            lambda: retrying(Alert.objects.filter(rule_key=rule.rule_key).exists),
            10,
            "the alert opened",
        )
        wait_until(
            lambda: fresh(device).last_values["temperature"]["value"] == 90,
            10,
            "the high values arrived",
        )
        time.sleep(0.3)  # a second alert would have been written by now
        alerts = retrying(list, Alert.objects.filter(rule_key=rule.rule_key))
        assert [(a.state, a.value) for a in alerts] == [("open", 85.0)]
        sim.publish("plant/d1/telemetry", json.dumps({"temperature": 60}))
        wait_until(
            lambda: (
                retrying(
                    Alert.objects.filter(rule_key=rule.rule_key, state="resolved").count
                )
                == 1
            ),
            10,
            "the alert resolved",
        )
        assert retrying(Alert.objects.filter(rule_key=rule.rule_key).count) == 1

        sim.die()
        wait_until(lambda: fresh(device).status == "offline", 10, "offline by will")
        api = as_user(viewer).get(f"/api/v1/devices/{device.pk}/").json()
        assert api["status"] == "offline"
    finally:
        if sim is not None:
            sim.stop()
        runtime.stop()
