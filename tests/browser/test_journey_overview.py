"""Journey: the overview's throughput chart opens on the stored last hour, and a
broker's rate reads steady under a steady stream (a 10-second average)."""

from __future__ import annotations

import datetime
import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.utils import timezone
from paho.mqtt.enums import CallbackAPIVersion

from history.models import StoredMessage
from runtime.manager import Runtime
from tests.browser.conftest import log_in
from tests.browser.test_live_pages import connected_broker
from tests.factories import PASSWORD, make_product, make_user

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]

RATE = 20  # messages a second
# After the 10-second window has filled, the shown rate stays within this band.
LOW, HIGH = RATE * 0.85, RATE * 1.15


def seed_history(broker_id: int, per_minute: dict[int, int]) -> None:
    """Stored messages `count` a minute, `minutes` ago (as ingest would keep them)."""
    now = timezone.now().replace(second=30, microsecond=0)
    StoredMessage.objects.bulk_create(
        StoredMessage(
            broker_id=broker_id,
            topic="plant/seed",
            text="1",
            received_at=now - datetime.timedelta(minutes=minutes, seconds=index % 20),
            payload_size=1,
        )
        for minutes, count in per_minute.items()
        for index in range(count)
    )


class SteadyPublisher(threading.Thread):
    """RATE messages a second on an absolute schedule (no drift), until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="journey-steady",
            protocol=mqtt.MQTTv311,
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:
        start = time.monotonic()
        while not self.stopping.is_set():
            self.client.publish("plant/steady", json.dumps({"n": self.sent}), qos=0)
            self.sent += 1
            pause = start + self.sent / RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.client.loop_stop()
        self.client.disconnect()


def test_overview_chart_starts_from_history_and_the_rate_holds_steady(
    journey: Any, mosquitto: Any, runtime: Runtime
) -> None:
    process = mosquitto()
    viewer = make_user("victor")
    product = make_product("Plant", viewer=viewer)
    broker = connected_broker(product, process.port)
    # 50 and 20 minutes ago: 2 and 0.5 messages a second over the whole minute.
    seed_history(broker.pk, {50: 120, 20: 30})
    page = journey.page
    log_in(page, "victor", PASSWORD)
    journey.step("overview", title="Overview")

    # The chart's data start with the stored hour, a point a minute.
    history = json.loads(page.locator("#throughput-history").text_content() or "[]")
    assert len(history) in (60, 61)  # and the current minute, once 5 s old
    assert sorted(rate for _at, rate in history if rate) == [0.5, 2.0]
    assert page.locator("#throughput-chart canvas").count() == 1
    card = page.locator(f"#broker-card-{broker.pk}")
    assert "10 s average" in card.inner_text()

    publisher = SteadyPublisher(process.port)
    publisher.start()
    try:
        # The window fills in 10 s; then the rate holds, read every half second.
        time.sleep(12)
        readings = []
        samples = []
        for _ in range(10):
            readings.append(float(card.locator(".rate").inner_text()))
            samples.append(
                float(page.locator("#throughput-sample").get_attribute("value") or 0)
            )
            time.sleep(0.5)
        journey.step("steady traffic", title="Overview")
    finally:
        publisher.stop()
    assert all(LOW <= reading <= HIGH for reading in readings), readings
    assert all(LOW <= sample <= HIGH for sample in samples), samples
    journey.assert_clean()
