"""One-shot connections (publish, connection test, retained list) start clean and
leave no session behind, whatever the connection's own clean start setting.

On MQTT 3.1.1 with clean session off, each of them used to leave a persistent
session on the broker (Mosquitto's client total grew by one per publish).
"""

from __future__ import annotations

import itertools
import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from brokers import services
from brokers.choices import Protocol
from brokers.client import ConnectionSettings
from brokers.retained import retained_list
from tests.factories import make_broker

pytestmark = [pytest.mark.django_db, pytest.mark.mosquitto]

_ids = itertools.count(1)


def _leave_one_session(port: int) -> None:
    """Connect and disconnect a client with clean session off: one known session."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"sentinel-{next(_ids)}",
        clean_session=False,
    )
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(5), "no CONNACK"
    client.disconnect()
    client.loop_stop()


def _sessions_kept(port: int) -> int:
    """Mosquitto's count of disconnected clients whose session it keeps, once it
    includes the sentinel left last (so every earlier connection is counted)."""
    values: queue.Queue[int] = queue.Queue()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, message: values.put(int(message.payload))
    client.connect("127.0.0.1", port)
    client.subscribe("$SYS/broker/clients/disconnected")
    client.loop_start()
    try:
        while True:
            value = values.get(timeout=10)  # published every sys_interval
            if value >= 1:
                return value
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("protocol", [Protocol.MQTT_311, Protocol.MQTT_5])
def test_one_shot_clients_leave_no_session_behind(
    world: dict, mosquitto: Any, protocol: str
) -> None:
    process = mosquitto("sys_interval 1\n", name="sessions")
    broker = make_broker(
        world["product"],
        port=process.port,
        protocol=protocol,
        clean_start=False,
        session_expiry_interval=3600 if protocol == Protocol.MQTT_5 else 0,
    )
    settings = ConnectionSettings.from_broker(broker)
    for number in range(3):
        services.broker_publish(
            actor=None,
            broker=broker,
            requests=[services.PublishRequest(topic=f"plant/{number}", qos=1)],
        )
    assert services.broker_test_connection(settings).ok
    retained_list(settings, "plant/#", quiet=0.1)

    _leave_one_session(process.port)

    assert _sessions_kept(process.port) == 1  # the sentinel's, nothing else
