"""Helpers for tests that run the MQTT runtime in-process next to the test.

The fixtures `sqlite_readers_do_not_wait` and `start_runtime` live in
tests/conftest.py and are built from these pieces.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.db import OperationalError, connection
from django.db.backends.signals import connection_created

from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.models import Broker, BrokerStatus
from runtime.manager import Runtime
from tests.factories import make_broker, make_product

RUNTIME_THREADS = ("paho-mqtt-client-", "mqtt-runtime-")


def wait_until(
    predicate: Callable[[], Any], timeout: float = 15.0, what: str = ""
) -> Any:
    """Poll until `predicate()` is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or predicate}")
        time.sleep(0.05)


def retrying(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call from the test thread, again while the in-memory SQLite test database
    says the runtime's thread holds its write lock."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return function(*args, **kwargs)
        except OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def status_of(broker: Broker) -> BrokerStatus:
    return BrokerStatus.objects.get(broker_id=broker.pk)


def state_is(broker: Broker, state: str, **extra: Any) -> Callable[[], bool]:
    def check() -> bool:
        status = status_of(broker)
        return status.state == state and all(
            getattr(status, name) == value for name, value in extra.items()
        )

    return check


def publish(port: int, topic: str, payload: bytes = b"x", qos: int = 0) -> None:
    """Publish with a real paho client of its own (waits for the broker's ack)."""
    publish_messages(
        ConnectionSettings(host="127.0.0.1", port=port),
        [OutgoingMessage(topic=topic, payload=payload, qos=qos)],
    )


def running_broker(actor: Any, port: int, **fields: Any) -> Broker:
    """A broker (through the service) for the runtime under test to connect, named
    `broker-<port>` unless told; each write is retried while the runtime's thread
    holds the SQLite write lock."""
    fields.setdefault("name", f"broker-{port}")
    product = retrying(make_product)
    return retrying(make_broker, product, actor=actor, port=port, **fields)


def runtime_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.is_alive() and t.name.startswith(RUNTIME_THREADS)
    ]


def uncommitted_sqlite_reads() -> Iterator[None]:
    """In-memory SQLite with a shared cache makes readers fail at once ("table is
    locked") while another thread writes; uncommitted reads keep the test's
    polling out of the runtime's way. Production SQLite is a WAL file without
    this problem."""
    if connection.vendor != "sqlite":
        yield
        return

    def uncommitted_reads(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA read_uncommitted = 1")

    connection_created.connect(uncommitted_reads)
    uncommitted_reads(None, connection)
    try:
        yield
    finally:
        connection_created.disconnect(uncommitted_reads)


def runtime_starter() -> Iterator[Callable[..., Runtime]]:
    """Start runtimes (fast polling); stop them all afterwards and check that no
    thread of theirs (or of their paho clients) outlives them."""
    started: list[Runtime] = []

    def start(owner: str = "test-runtime", **options: Any) -> Runtime:
        options.setdefault("poll_interval", 0.2)
        runtime = Runtime(owner, **options)
        started.append(runtime)
        runtime.start()
        return runtime

    yield start
    for runtime in started:
        runtime.stop()
    wait_until(lambda: not runtime_threads(), 10, "runtime threads to end")
