"""Subscription actions end to end in a real Celery worker on Redis: a message
published by a real client reaches a webhook and a republished topic, and the
counters say so exactly."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.conf import settings

from brokers.models import Subscription
from brokers.services import subscription_create
from tests.faults.support import start_worker, stop_process
from tests.runtime import test_runtime as runtime_tests
from tests.runtime_support import (
    publish,
    retrying,
    running_broker,
    state_is,
    wait_until,
)
from tests.services import missing

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

actor = runtime_tests.actor


def test_a_message_runs_webhook_and_republish_in_a_worker(
    plain_broker: Any, actor: Any, http_sink: Any, tmp_path: Path
) -> None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        missing("DATABASE_URL does not name PostgreSQL")
    if not os.environ.get("REDIS_URL"):
        missing("REDIS_URL is not set")
    queue = f"actions-test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    worker = start_worker(
        queue,
        queue,
        log,
        pool="threads",
        concurrency=2,
        poll_interval=0.5,
        extra_env={"MQTTADMIN_ACTIONS_QUEUE": queue},
    )
    received: list[mqtt.MQTTMessage] = []
    arrived = threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="out-listener")

    def on_message(
        client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        received.append(message)
        arrived.set()

    listener.on_message = on_message
    listener.connect("127.0.0.1", plain_broker.port)
    listener.subscribe("out/#", 1)
    listener.loop_start()
    try:
        wait_until(lambda: "MQTT runtime" in log.read_text(), 30, "worker started")
        broker = running_broker(actor, plain_broker.port)
        subscription = retrying(
            subscription_create,
            actor=actor,
            broker=broker,
            name="pipeline",
            topic_filter="plant/#",
            qos=1,
            actions=[
                {
                    "type": "webhook",
                    "url": f"{http_sink.url}/hook",
                    "body": '{"t": "{{ topic }}", "v": {{ payload.value }}}',
                },
                {
                    "type": "republish",
                    "topic": "out/{{ topic_levels.1 }}",
                    "payload": "{{ payload.value }}",
                    "qos": 1,
                },
            ],
        )
        wait_until(
            state_is(broker, "connected", subscribed_topics_count=1), 15, "subscribed"
        )
        started = time.monotonic()
        publish(plain_broker.port, "plant/boiler", b'{"value": 42}', 1)
        wait_until(lambda: http_sink.requests and arrived.is_set(), 10, "actions ran")
        elapsed = time.monotonic() - started
    finally:
        listener.loop_stop()
        listener.disconnect()
        stop_process(worker)
    assert elapsed < 2.0, f"actions took {elapsed:.2f}s"
    assert json.loads(http_sink.requests[0].body) == {"t": "plant/boiler", "v": 42}
    assert received[0].topic == "out/boiler" and received[0].payload == b"42"
    wait_until(
        lambda: Subscription.objects.get(pk=subscription.pk).actions_executed == 2,
        5,
        "counted",
    )
    subscription.refresh_from_db()
    assert subscription.messages_received == 1
    assert (subscription.actions_executed, subscription.actions_failed) == (2, 0)
