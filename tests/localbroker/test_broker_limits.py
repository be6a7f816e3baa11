"""The local broker's config leaves room for a subscriber that acknowledges only
after its commit, as the portal does: a burst of QoS 1 messages to a subscriber
that has acknowledged none of them reaches it whole (Mosquitto's defaults would
hold it at 20 in flight and drop past 1000 queued)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from localbroker.supervisor import (
    MAX_INFLIGHT_MESSAGES,
    LocalBrokerFiles,
    Supervisor,
    pick_port,
)
from tests.localbroker.test_local_broker import binaries
from tests.runtime_support import wait_until

pytestmark = pytest.mark.mosquitto

USER, PASSWORD = "admin", "admin-Pa55"
BURST = 3000


@pytest.fixture
def local_mosquitto(tmp_path: Path) -> Iterator[int]:
    """Mosquitto running the config the portal writes; its port."""
    binary, plugin = binaries()
    files = LocalBrokerFiles(tmp_path / "mosquitto")
    files.prepare()
    files.write_dynsec(USER, PASSWORD)
    port = pick_port()
    files.write_config(port=port, plugin=plugin)
    supervisor = Supervisor(
        binary=binary, config=files.config, port=port, log=files.log
    )
    supervisor.start()
    try:
        yield port
    finally:
        supervisor.stop()


def client(
    port: int, client_id: str, *, subscriber: bool = False, in_flight: int = 20
) -> mqtt.Client:
    """A subscriber keeps its session and acknowledges nothing by itself."""
    made = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=not subscriber,
        manual_ack=subscriber,
    )
    made.max_inflight_messages_set(in_flight)
    made.username_pw_set(USER, PASSWORD)
    made.connect("127.0.0.1", port)
    made.loop_start()
    return made


def test_a_burst_reaches_a_subscriber_that_has_not_acknowledged_yet(
    local_mosquitto: int,
) -> None:
    assert BURST <= MAX_INFLIGHT_MESSAGES
    received: list[int] = []
    subscribed = threading.Event()
    subscriber = client(local_mosquitto, "slow-subscriber", subscriber=True)
    subscriber.on_subscribe = lambda *args: subscribed.set()
    subscriber.on_message = lambda _c, _u, message: received.append(message.mid)
    subscriber.subscribe("burst/#", qos=1)
    assert subscribed.wait(5), "no SUBACK"
    publisher = client(local_mosquitto, "burst", in_flight=100)
    try:
        infos = []
        for n in range(BURST):
            while True:
                info = publisher.publish(f"burst/{n % 10}", b"x", qos=1)
                if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
                    break
                time.sleep(0.001)
            infos.append(info)
        for info in infos:
            info.wait_for_publish(10)
        # Nothing acknowledged, yet all of it in flight to the subscriber.
        wait_until(lambda: len(received) >= BURST, 20, "the whole burst delivered")
        assert len(received) == BURST
    finally:
        for made in (publisher, subscriber):
            made.disconnect()
            made.loop_stop()
