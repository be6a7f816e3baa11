"""The runtime inside real Celery workers (`worker --mqtt-runtime`): PostgreSQL
and Redis shared by two worker processes, one killed with SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from brokers.models import Broker
from brokers.services import subscription_create
from runtime.models import RuntimeLease
from tests.faults.support import start_worker
from tests.runtime import test_runtime as runtime_tests
from tests.runtime_support import (
    retrying,
    running_broker,
    state_is,
    status_of,
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

LEASE_TTL = 3
# Long enough that only a nudge over Redis explains a quick reaction.
POLL_INTERVAL = 10


def _start_worker(name: str, queue: str, log: Path) -> subprocess.Popen[bytes]:
    return start_worker(
        name, queue, log, lease_ttl=LEASE_TTL, poll_interval=POLL_INTERVAL
    )


def test_a_killed_workers_connection_is_taken_over(
    plain_broker: Any, actor: Any, tmp_path: Path
) -> None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        missing("DATABASE_URL does not name PostgreSQL")
    if not os.environ.get("REDIS_URL"):
        missing("REDIS_URL is not set")
    queue = f"runtime-test-{uuid.uuid4().hex[:8]}"
    workers: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp_path / f"{name}.log" for name in ("rt1", "rt2")}
    try:
        for name, log in logs.items():
            workers[name] = _start_worker(name, queue, log)
        # Both runtimes are up (and listening for nudges) once they log it.
        wait_until(
            lambda: all("MQTT runtime" in log.read_text() for log in logs.values()),
            30,
            "workers started",
        )

        broker = running_broker(actor, plain_broker.port)
        wait_until(state_is(broker, "connected"), 10, "connected by a worker")
        owner = status_of(broker).owner
        assert owner.endswith(":worker")
        killed = next(name for name in workers if owner.startswith(f"{name}@"))
        survivor = "rt2" if killed == "rt1" else "rt1"

        # A nudge over Redis reaches the owning worker (its poll is 10 s).
        retrying(
            subscription_create,
            actor=actor,
            broker=broker,
            name="all",
            topic_filter="t/#",
        )
        wait_until(
            state_is(broker, "connected", subscribed_topics_count=1), 3, "subscribed"
        )

        workers[killed].send_signal(signal.SIGKILL)
        workers[killed].wait(5)
        killed_at = time.monotonic()
        wait_until(
            lambda: (
                status_of(broker).state == "connected"
                and status_of(broker).owner.startswith(f"{survivor}@")
            ),
            30,
            "taken over by the survivor",
        )
        assert time.monotonic() - killed_at < 30
        wait_until(
            state_is(broker, "connected", subscribed_topics_count=1), 5, "resubscribed"
        )
        assert Broker.objects.get(pk=broker.pk).lease.owner.startswith(f"{survivor}@")

        # A warm shutdown (SIGTERM) gives the broker back and says so.
        workers[survivor].send_signal(signal.SIGTERM)
        assert workers[survivor].wait(20) == 0
        assert not RuntimeLease.objects.filter(broker=broker).exists()
        assert state_is(broker, "disconnected", owner="")()
    except BaseException:
        for name, log in logs.items():
            if log.exists():
                print(f"--- {name} ---\n{log.read_text()[-4000:]}")
        raise
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.kill()
            process.wait(10)
        _forget_queue(queue)


def _forget_queue(queue: str) -> None:
    """Kombu keeps a binding key per queue in Redis: do not leave ours behind."""
    import redis

    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        client.delete(
            f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}", queue
        )
        client.close()
