"""Embedded SQLite: writes from the pages and the API wait for the runtime's ingest
transaction instead of answering 500 "database is locked".

A real Mosquitto, the in-process runtime storing a sustained QoS 1 stream, and
meanwhile many device creates (API) and broker edits (API and page form) from
threads: every request succeeds and every row is there.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.db import connection
from paho.mqtt.enums import CallbackAPIVersion

from brokers.models import Broker
from devices.models import Device
from history.models import StoredMessage
from tests.brokers.test_pages import form_data
from tests.clients import as_user, logged_in
from tests.factories import make_broker_subscribed_to_all
from tests.runtime_support import retrying, state_is, wait_until

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.django_db(transaction=True),
    # PostgreSQL has no database-wide write lock for ingest to hold.
    pytest.mark.skipif(
        connection.vendor != "sqlite", reason="a question of SQLite's write lock only"
    ),
]

WRITERS = 4
WRITES_PER_WRITER = 30  # 120 writes in all
STREAM_LIMIT_S = 420.0
# Three publishers keep ingest committing batch after batch on a 2-core machine.
STREAMS = 3


class QoS1Stream:
    """Publishes QoS 1 messages as fast as the broker acknowledges them (at most
    100 unacknowledged) until stopped, or for STREAM_LIMIT_S at most."""

    def __init__(self, port: int, number: int) -> None:
        self.port = port
        self.number = number
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qos1-stream")

    def _run(self) -> None:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"load-stream-{self.number}",
        )
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(100)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        deadline = time.monotonic() + STREAM_LIMIT_S
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                info = client.publish(f"load/{self.sent % 50}", b"x" * 64, qos=1)
                if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                    time.sleep(0.001)
                    continue
                self.sent += 1
        finally:
            client.disconnect()
            client.loop_stop()

    def __enter__(self) -> QoS1Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def in_threads(work: list[Callable[[], Any]]) -> list[tuple[int, str]]:
    """Run each callable in its own thread; (status, body start) of every request
    (500 and the error when the view raised)."""
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()

    def run(job: Callable[[], Any]) -> None:
        try:
            for status, body in job():
                with lock:
                    outcomes.append((status, body))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return outcomes


def answer(request: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, str]:
    try:
        response = request(*args, **kwargs)
    except Exception as exc:  # the test client re-raises what a view raised
        return 500, f"{type(exc).__name__}: {exc}"
    return response.status_code, response.content[:200].decode(errors="replace")


@pytest.mark.timeout(600)
def test_writes_wait_for_the_runtimes_ingest_instead_of_failing(
    world: dict, mosquitto: Any, start_runtime: Any
) -> None:
    product = world["product"]
    admin = world["users"]["superuser"]
    broker = mosquitto()
    start_runtime()
    streamed = retrying(
        make_broker_subscribed_to_all, product, name="streamed", port=broker.port
    )
    wait_until(state_is(streamed, "connected"), 20, "the runtime to connect")
    # Disabled brokers the writers create devices on and edit: no reconnects.
    targets = [
        retrying(
            make_broker_subscribed_to_all,
            product,
            name=f"target-{n}",
            port=1,
            enabled=False,
        )
        for n in range(WRITERS)
    ]

    def api_writer(n: int) -> Callable[[], Any]:
        def job() -> Any:
            client = as_user(admin)
            client.raise_request_exception = True
            for i in range(WRITES_PER_WRITER):
                if i % 2 == 0:
                    yield answer(
                        client.post,
                        "/api/v1/devices/",
                        {
                            "product": product.pk,
                            "broker": targets[n].pk,
                            "device_id": f"w{n}-{i}",
                            "name": f"Device {n}-{i}",
                            "type": "sensor",
                            "topic": f"plant/w{n}/{i}",
                        },
                        format="json",
                    )
                else:
                    yield answer(
                        client.patch,
                        f"/api/v1/brokers/{targets[n].pk}/",
                        {"keepalive": 30 + i},
                        format="json",
                    )

        return job

    def page_writer(n: int) -> Callable[[], Any]:
        def job() -> Any:
            client = logged_in(admin, product)
            for i in range(WRITES_PER_WRITER):
                if i % 2 == 0:
                    yield answer(
                        client.post,
                        f"/brokers/{targets[n].pk}/edit/",
                        form_data(
                            name=f"target-{n}",
                            port="1",
                            enabled=None,
                            keepalive=str(30 + i),
                        ),
                    )
                else:
                    yield answer(
                        as_user(admin).post,
                        "/api/v1/devices/",
                        {
                            "product": product.pk,
                            "broker": targets[n].pk,
                            "device_id": f"p{n}-{i}",
                            "name": f"Device {n}-{i}",
                            "type": "sensor",
                            "topic": f"plant/p{n}/{i}",
                        },
                        format="json",
                    )

        return job

    with contextlib.ExitStack() as streams:
        sent = [
            streams.enter_context(QoS1Stream(broker.port, n)) for n in range(STREAMS)
        ]
        wait_until(
            lambda: StoredMessage.objects.filter(broker=streamed).count() > 500,
            30,
            "ingest to be storing the stream",
        )
        outcomes = in_threads(
            [api_writer(n) for n in range(WRITERS // 2)]
            + [page_writer(n) for n in range(WRITERS // 2, WRITERS)]
        )
        stored_during = StoredMessage.objects.filter(broker=streamed).count()
    failures = [outcome for outcome in outcomes if outcome[0] >= 500]
    assert len(outcomes) == WRITERS * WRITES_PER_WRITER
    assert failures == [], f"{len(failures)} failed, first: {failures[:3]}"
    assert all(status < 400 for status, _body in outcomes), [
        o for o in outcomes if o[0] >= 400
    ][:3]
    devices = Device.objects.filter(broker__in=targets).count()
    assert devices == WRITERS * WRITES_PER_WRITER // 2
    for n, target in enumerate(targets):
        # API writers patch on odd writes, page writers edit on even ones.
        last_edit = WRITES_PER_WRITER - (1 if n < WRITERS // 2 else 2)
        edited = Broker.objects.get(pk=target.pk)
        assert (edited.name, edited.keepalive) == (f"target-{n}", 30 + last_edit)
    # The stream really was being stored while the writers wrote.
    assert all(stream.sent > 0 for stream in sent) and stored_during > 500
