"""A broker that drops messages opens one alert that names the settings to raise,
read from a real Mosquitto's `$SYS` counters at its default limits
(max_inflight_messages 20, max_queued_messages 1000)."""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts.models import Alert, AlertState
from brokers.models import Broker
from brokers.services import broker_create
from observe.broker_drops import drops_rule_key
from observe.models import BrokerSysStats
from tests.runtime_support import retrying, wait_until

pytestmark = [pytest.mark.mosquitto, pytest.mark.django_db(transaction=True)]


def slow_subscriber(port: int) -> mqtt.Client:
    """A persistent-session QoS 1 subscriber that never acknowledges: after 20
    in flight and 1000 queued, the broker drops what else it has for it."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="slow-subscriber",
        clean_session=False,
        manual_ack=True,
    )
    subscribed = threading.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe("burst/#", qos=1)
    assert subscribed.wait(5), "no SUBACK"
    return client


def burst(port: int, count: int) -> None:
    """Publish `count` QoS 1 messages as fast as the broker acknowledges them."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="burst"
    )
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = []
        for n in range(count):
            while True:
                info = client.publish(f"burst/{n % 10}", b"x", qos=1)
                if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
                    break
                time.sleep(0.001)
            infos.append(info)
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def dropped(broker: Broker) -> int:
    stats = BrokerSysStats.objects.filter(broker=broker).first()
    value = stats.values.get("publish/messages/dropped") if stats else None
    return int(value) if value else 0


def test_drops_open_one_alert_naming_the_limits_and_it_resolves_when_they_stop(
    mosquitto: Any, world: dict, start_runtime: Any, settings: Any
) -> None:
    settings.BROKER_DROPS_QUIET_S = 4
    server = mosquitto("sys_interval 1\n", name="drops")
    start_runtime()
    broker = retrying(
        broker_create,
        actor=world["users"]["superuser"],
        product=world["product"],
        name="Drops",
        host="127.0.0.1",
        port=server.port,
        collect_sys_stats=True,
    )
    wait_until(
        lambda: BrokerSysStats.objects.filter(
            broker=broker, values__has_key="uptime"
        ).exists(),
        what="the portal to read $SYS",
    )
    subscriber = slow_subscriber(server.port)
    try:
        burst(server.port, 2500)
        alert = wait_until(
            lambda: Alert.objects.filter(rule_key=drops_rule_key(broker.pk)).first(),
            what="the drop alert",
        )
        assert alert.state == AlertState.OPEN
        assert alert.subject == "Drops"
        assert "max_queued_messages" in alert.message
        assert "max_inflight_messages" in alert.message
        assert alert.value and alert.value > 0
        assert f"{int(alert.value)} messages" in alert.message
        # More drops while it is open: still one alert.
        before = dropped(broker)
        burst(server.port, 1000)
        wait_until(lambda: dropped(broker) > before, what="more drops counted")
        assert Alert.objects.filter(rule_key=drops_rule_key(broker.pk)).count() == 1
        # The drops stop: it resolves after the quiet period, and none reopens.
        wait_until(
            lambda: Alert.objects.filter(
                rule_key=drops_rule_key(broker.pk), state=AlertState.RESOLVED
            ).exists(),
            timeout=30,
            what="the alert to resolve",
        )
        assert Alert.objects.filter(rule_key=drops_rule_key(broker.pk)).count() == 1
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
