"""Faults of runtime worker processes (`celery worker --mqtt-runtime`) on
PostgreSQL and Redis: two workers for one broker, the owner killed with SIGKILL
in the middle of a QoS 1 stream."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from runtime.models import RuntimeLease
from tests.faults.support import (
    StampedPublisher,
    start_worker,
    stop_process,
    wait_stored,
)
from tests.faults.test_stream_faults import (
    durable_broker,
    persistent_broker_row,
    subscribed,
)
from tests.runtime_support import status_of, wait_until
from tests.services import missing

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

LEASE_TTL = 3
HANDOVER_BOUND_S = 30


def owner_of(broker_id: int) -> str:
    return (
        RuntimeLease.objects.filter(broker_id=broker_id)
        .values_list("owner", flat=True)
        .first()
        or ""
    )


def test_owner_killed_mid_stream_hands_over_without_gaps_or_flapping(
    mosquitto: Any, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """Faults 2 and 7: two runtime workers, exactly one owns the broker and it
    stays so (no flapping); the owner is killed with SIGKILL between receiving
    and committing (a batch is always in flight at 400 msg/s); the survivor takes
    the broker over within 30 s and the broker redelivers everything that was
    not acknowledged after a commit: zero gaps."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        missing(
            "worker processes share the database: DATABASE_URL must name PostgreSQL"
        )
    if not os.environ.get("REDIS_URL"):
        missing("REDIS_URL is not set")
    broker_process = durable_broker(mosquitto)
    broker = persistent_broker_row(broker_process.port)
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    logs = {name: tmp_path / f"{name}.log" for name in ("rt1", "rt2")}
    workers = {
        name: start_worker(name, queue, log, lease_ttl=LEASE_TTL)
        for name, log in logs.items()
    }
    publisher: StampedPublisher | None = None
    try:
        wait_until(subscribed(broker), 60, "connected and subscribed by a worker")
        wait_until(
            lambda: all("MQTT runtime" in log.read_text() for log in logs.values()),
            30,
            "both runtimes up",
        )
        owner = owner_of(broker.pk)
        connected_at = status_of(broker).last_connected_at
        # No flapping: several lease periods with both workers alive.
        time.sleep(LEASE_TTL * 2)
        assert owner_of(broker.pk) == owner
        assert status_of(broker).last_connected_at == connected_at
        killed = next(name for name in workers if owner.startswith(f"{name}@"))
        survivor = "rt2" if killed == "rt1" else "rt1"

        publisher = StampedPublisher(broker_process.port, rate=400, count=4000)
        publisher.start()
        time.sleep(2)
        workers[killed].send_signal(signal.SIGKILL)
        workers[killed].wait(5)
        killed_at = time.monotonic()
        wait_until(
            lambda: (
                owner_of(broker.pk).startswith(f"{survivor}@") and subscribed(broker)()
            ),
            HANDOVER_BOUND_S,
            "taken over by the survivor",
        )
        handover = time.monotonic() - killed_at
        publisher.wait_acked(30)
        report = wait_stored(publisher, 60)
        figures.update(
            report.as_dict(),
            lease_ttl_s=LEASE_TTL,
            handover_s=round(handover, 1),
        )
        assert report.sent == 4000
        assert not report.gaps, f"lost: {report.gaps[:20]}"
        assert handover < HANDOVER_BOUND_S
    except BaseException:
        for name, log in logs.items():
            if log.exists():
                print(f"--- {name} ---\n{log.read_text()[-4000:]}")
        raise
    finally:
        if publisher is not None:
            publisher.stop()
        for process in workers.values():
            stop_process(process)
