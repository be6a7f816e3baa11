"""Faults under a QoS 1 stream, with the runtime in this process: every message the
broker acknowledged to the publisher is stored, whatever breaks meanwhile.

Each test publishes stamped messages (run id + sequence number) from a real
client, injects one fault, and requires zero gaps in the stored sequence;
duplicates are allowed (at-least-once) and reported in the figures.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from brokers.choices import ConnectionState
from brokers.models import Broker
from brokers.services import subscription_create
from devices import sinks as device_sinks
from runtime import ingest
from runtime.models import DeadLetter
from runtime.session import RECONNECT_MAX_DELAY
from tests.factories import make_superuser
from tests.faults.proxy import BlackholeProxy
from tests.faults.support import StampedPublisher, rss_mib, wait_stored
from tests.runtime_support import (
    retrying,
    running_broker,
    state_is,
    status_of,
    wait_until,
)
from tests.services import missing

pytestmark = [pytest.mark.mosquitto, pytest.mark.django_db(transaction=True)]

# A broker that keeps what it queued for a persistent session across its own
# restart and holds a long backlog (the default keeps 1,000 queued messages).
DURABLE = "max_queued_messages 100000\nmax_inflight_messages 100\n"


def durable_broker(mosquitto: Any) -> Any:
    return mosquitto(DURABLE, name="durable")


def persistent_broker_row(port: int, **fields: Any) -> Broker:
    """A broker connection with a persistent session, subscribed at QoS 1."""
    actor = retrying(make_superuser)
    broker = running_broker(
        actor,
        port,
        name=f"faults-{port}",
        client_id=f"portal-faults-{port}",
        clean_start=False,
        **{"session_expiry_interval": 3600, **fields},
    )
    retrying(
        subscription_create,
        actor=actor,
        broker=broker,
        name="stream",
        topic_filter="faults/#",
        qos=1,
    )
    return broker


def state(broker: Broker) -> str:
    return status_of(broker).state


def subscribed(broker: Broker) -> Callable[[], bool]:
    return state_is(broker, "connected", subscribed_topics_count=1)


def subscribed_runtime(mosquitto: Any, start_runtime: Any) -> tuple[Any, Broker]:
    """A durable broker, its connection row, and a runtime subscribed to it."""
    broker_process = durable_broker(mosquitto)
    broker = persistent_broker_row(broker_process.port)
    start_runtime()
    wait_until(subscribed(broker), 15, "subscribed")
    return broker_process, broker


def test_mosquitto_restarted_under_a_qos1_stream(
    mosquitto: Any, start_runtime: Any, figures: dict[str, Any]
) -> None:
    """Fault 1: the broker restarts mid-stream; the runtime reconnects within its
    backoff bound, the persistent session brings what was queued, zero gaps."""
    broker_process, broker = subscribed_runtime(mosquitto, start_runtime)

    publisher = StampedPublisher(broker_process.port, rate=400, count=3000).start()
    try:
        time.sleep(2)
        broker_process.stop()
        down_at = time.monotonic()
        wait_until(lambda: state(broker) != "connected", 10, "disconnect seen")
        time.sleep(1)
        broker_process.start()
        up_at = time.monotonic()
        wait_until(lambda: state(broker) == "connected", RECONNECT_MAX_DELAY + 5)
        reconnected_after = time.monotonic() - up_at
        publisher.wait_acked(30)
        report = wait_stored(publisher, 30)
    finally:
        publisher.stop()
    figures.update(
        report.as_dict(),
        broker_down_s=round(up_at - down_at, 1),
        reconnect_after_broker_up_s=round(reconnected_after, 1),
    )
    assert report.sent == 3000
    assert not report.gaps, f"lost: {report.gaps[:20]}"
    assert reconnected_after <= RECONNECT_MAX_DELAY


def test_runtime_stopped_mid_stream_and_restarted_loses_nothing(
    mosquitto: Any, start_runtime: Any, figures: dict[str, Any]
) -> None:
    """The runtime stops mid-stream (its session stays on the broker) and a new
    one starts: the broker kept the QoS 1 messages meanwhile, zero gaps."""
    broker_process = durable_broker(mosquitto)
    broker = persistent_broker_row(broker_process.port)
    first = start_runtime("first", lease_ttl=3, lease_renew=1)
    wait_until(subscribed(broker), 15, "subscribed")

    publisher = StampedPublisher(broker_process.port, rate=500, count=4000).start()
    try:
        time.sleep(2)
        first.stop()
        stopped_at = time.monotonic()
        time.sleep(2)  # the stream goes on while no runtime listens
        start_runtime("second", lease_ttl=3, lease_renew=1)
        wait_until(subscribed(broker), 15, "second runtime subscribed")
        resumed_after = time.monotonic() - stopped_at
        publisher.wait_acked(30)
        report = wait_stored(publisher, 30)
    finally:
        publisher.stop()
    figures.update(report.as_dict(), resumed_after_s=round(resumed_after, 1))
    assert report.sent == 4000
    assert not report.gaps, f"lost: {report.gaps[:20]}"


POISON = {101, 202, 303}


def test_a_poison_message_is_dead_lettered_and_the_stream_goes_on(
    mosquitto: Any,
    start_runtime: Any,
    monkeypatch: pytest.MonkeyPatch,
    figures: dict[str, Any],
) -> None:
    """Fault 3: a message whose processing raises is kept in the dead-letter list
    with its error; every other message of its batch and after it is stored."""
    # The devices sink is the last of the batch's sinks: poison raises mid-batch.
    real = device_sinks.ingest_batch

    def choking_on_poison(batch: list[ingest.ReceivedMessage]) -> None:
        for message in batch:
            if json.loads(message.payload).get("seq") in POISON:
                raise ValueError(f"cannot digest {message.topic}")
        real(batch)

    monkeypatch.setattr(device_sinks, "ingest_batch", choking_on_poison)
    broker_process, _broker = subscribed_runtime(mosquitto, start_runtime)

    publisher = StampedPublisher(broker_process.port, rate=500, count=1000).start()
    try:
        publisher.wait_acked(30)
        wanted = publisher.acked - POISON
        report = wait_stored(publisher, 30, expected=wanted)
        wait_until(lambda: retrying(DeadLetter.objects.count) >= len(POISON), 10)
    finally:
        publisher.stop()
    figures.update(report.as_dict())
    assert not report.gaps, f"lost: {report.gaps[:20]}"
    letters = list(DeadLetter.objects.values_list("payload", "error"))
    assert sorted(json.loads(bytes(p))["seq"] for p, _e in letters) == sorted(POISON)
    assert all("ValueError: cannot digest" in error for _p, error in letters)
    assert report.distinct == 1000 - len(POISON)


def test_database_connections_killed_during_ingest(
    mosquitto: Any, start_runtime: Any, figures: dict[str, Any]
) -> None:
    """Fault 4: PostgreSQL terminates the runtime's connections mid-stream;
    nothing was acknowledged before its commit, so zero gaps after recovery."""
    if connection.vendor != "postgresql":
        missing("pg_terminate_backend needs PostgreSQL (DATABASE_URL)")
    broker_process, broker = subscribed_runtime(mosquitto, start_runtime)

    terminated = 0
    publisher = StampedPublisher(broker_process.port, rate=500, count=4000).start()
    try:
        for _ in range(4):
            time.sleep(1.5)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                terminated += cursor.fetchone()[0]
        killed_at = time.monotonic()
        publisher.wait_acked(30)
        report = wait_stored(publisher, 60)
        recovered_after = time.monotonic() - killed_at
    finally:
        publisher.stop()
    figures.update(
        report.as_dict(),
        connections_terminated=terminated,
        stored_all_after_last_kill_s=round(recovered_after, 1),
    )
    assert terminated >= 4
    assert report.sent == 4000
    assert not report.gaps, f"lost: {report.gaps[:20]}"
    assert state(broker) == ConnectionState.CONNECTED


def test_a_blackholed_broker_is_detected_and_its_backlog_flushed(
    mosquitto: Any, start_runtime: Any, figures: dict[str, Any]
) -> None:
    """Fault 8: the path to the broker drops every packet without closing; the
    keepalive detects it, the runtime reconnects once the path heals, the broker
    flushes the backlog it kept for the session, and memory stays bounded."""
    broker_process = durable_broker(mosquitto)
    proxy = BlackholeProxy(broker_process.port).start()
    broker = persistent_broker_row(proxy.port, keepalive=2)
    runtime = start_runtime()
    wait_until(subscribed(broker), 15, "subscribed")
    rss_before = rss_mib()
    deepest_queue = 0
    stop_watch = threading.Event()

    def watch_queue() -> None:
        nonlocal deepest_queue
        while not stop_watch.wait(0.05):
            deepest_queue = max(deepest_queue, runtime.messages.qsize())

    watcher = threading.Thread(target=watch_queue, daemon=True)
    watcher.start()
    # The publisher talks to the broker directly: only the portal's path fails.
    publisher = StampedPublisher(broker_process.port, rate=400, count=4000).start()
    try:
        time.sleep(1.5)
        proxy.blackholed.set()
        holed_at = time.monotonic()
        wait_until(lambda: state(broker) != "connected", 20, "blackhole detected")
        detected_after = time.monotonic() - holed_at
        time.sleep(3)
        proxy.blackholed.clear()
        healed_at = time.monotonic()
        wait_until(lambda: state(broker) == "connected", RECONNECT_MAX_DELAY + 10)
        reconnected_after = time.monotonic() - healed_at
        publisher.wait_acked(30)
        report = wait_stored(publisher, 60)
    finally:
        publisher.stop()
        stop_watch.set()
        watcher.join(2)
        proxy.stop()
    rss_growth = rss_mib() - rss_before
    figures.update(
        report.as_dict(),
        detected_after_s=round(detected_after, 1),
        reconnected_after_heal_s=round(reconnected_after, 1),
        deepest_queue=deepest_queue,
        rss_growth_mib=round(rss_growth, 1),
    )
    assert report.sent == 4000
    assert not report.gaps, f"lost: {report.gaps[:20]}"
    # keepalive 2 s: paho gives up after 1.5 keepalives without an answer.
    assert detected_after < 10
    assert deepest_queue <= runtime.messages.maxsize
    assert rss_growth < 100
