"""A Celery worker killed mid-action: the action runs again and its effect happens
once (the webhook's Idempotency-Key).

Real processes on loopback: a private `redis-server`, `celery beat` (its sweep
of action runs left pending is what hands the killed worker's run to another
worker), a `celery worker --mqtt-runtime` that stores a real message from
Mosquitto with its ActionRun and starts the webhook, and the worker started
after the kill. Redis is private because beat sends its tasks to the default
queue, where other test runs' workers on the shared Redis would take them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from actions.models import ActionRun, ActionRunState
from brokers.services import subscription_create
from tests.factories import make_superuser
from tests.faults.support import start_worker, stop_process
from tests.faults.test_redis_restart import (
    PrivateRedis,
    channel_layers_on,
    start_beat,
)
from tests.runtime_support import publish, running_broker, state_is, wait_until
from tests.services import missing

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

# Runs pending longer than this are re-enqueued by beat's sweep, which runs as
# often (production: 60 s): the killed worker's run is handed on within twice this.
ACTIONS_SWEEP_S = 3
# The first request is answered this late: the worker is killed long before.
FIRST_ANSWER_DELAY_S = 60
START_TIMEOUT = 40
REDELIVERY_TIMEOUT = 30


def test_a_worker_killed_mid_webhook_runs_it_again_with_one_effect(
    mosquitto: Any, http_sink: Any, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """Proves: a worker SIGKILLed while its webhook request is in flight leaves
    the ActionRun pending; the sweep hands it to the next worker within a bounded
    time, which calls the webhook again with the same Idempotency-Key, so the
    receiver sees the request twice but the effect once; the run ends done and the
    subscription counts exactly one executed action and no failure."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        missing("DATABASE_URL does not name PostgreSQL")
    if not os.environ.get("REDIS_URL"):
        missing("REDIS_URL is not set")
    broker_process = mosquitto()
    redis = PrivateRedis(tmp_path / "redis")
    queue = f"faults-killed-{uuid.uuid4().hex[:8]}"
    env = {
        "REDIS_URL": redis.url,
        "MQTTADMIN_ACTIONS_QUEUE": queue,
        "MQTTADMIN_ACTIONS_SWEEP_S": str(ACTIONS_SWEEP_S),
    }
    logs = {name: tmp_path / f"{name}.log" for name in ("first", "second", "beat")}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    # The first request hangs as a slow receiver would; later ones answer at once.
    http_sink.delays[:] = [FIRST_ANSWER_DELAY_S]
    try:
        redis.start()
        # Each worker also takes beat's tasks from the default queue (the
        # private Redis has no other consumer).
        processes["first"] = start_worker(
            "killed", f"{queue},celery", logs["first"], extra_env=env
        )
        processes["beat"] = start_beat(redis.url, logs["beat"], ACTIONS_SWEEP_S)
        wait_until(
            lambda: "MQTT runtime" in logs["first"].read_text(),
            START_TIMEOUT,
            "first worker started",
        )
        with channel_layers_on(redis.url):
            actor = make_superuser()
            broker = running_broker(actor, broker_process.port)
            subscription = subscription_create(
                actor=actor,
                broker=broker,
                name="hook",
                topic_filter="plant/#",
                qos=1,
                actions=[
                    {
                        "type": "webhook",
                        "url": f"{http_sink.url}/hook",
                        "body": '{"t": "{{ topic }}"}',
                        # Longer than the test: the first worker never gives up
                        # on its own (a retry of its own would muddle the count).
                        "timeout_s": 60,
                    }
                ],
            )
            wait_until(
                state_is(broker, "connected", subscribed_topics_count=1),
                15,
                "subscribed",
            )
        publish(broker_process.port, "plant/boiler", b"{}", qos=1)
        wait_until(lambda: http_sink.requests, 15, "the first webhook request")

        # Mid-action: the request is in flight, nothing is acknowledged.
        processes["first"].send_signal(signal.SIGKILL)
        processes["first"].wait(5)
        killed_at = time.monotonic()
        run = ActionRun.objects.get(subscription=subscription)
        assert run.state == ActionRunState.PENDING

        # Actions only: what is under test is the run the first one left behind.
        processes["second"] = start_worker(
            "after-kill",
            f"{queue},celery",
            logs["second"],
            runtime=False,
            extra_env=env,
        )
        wait_until(
            lambda: len(http_sink.requests) >= 2,
            REDELIVERY_TIMEOUT,
            "the webhook called again after the kill",
        )
        redelivery_s = time.monotonic() - killed_at
        wait_until(
            lambda: ActionRun.objects.get(pk=run.pk).state != ActionRunState.PENDING,
            10,
            "the run finished",
        )
        # Later sweeps may queue the run again: they must find it done.
        time.sleep(ACTIONS_SWEEP_S + 1)

        run.refresh_from_db()
        subscription.refresh_from_db()
        keys = [request.headers["Idempotency-Key"] for request in http_sink.requests]
        figures.update(
            requests_seen=len(keys),
            effects=http_sink.effects,
            redelivery_s=round(redelivery_s, 1),
            sweep_s=ACTIONS_SWEEP_S,
            run_attempts=run.attempts,
        )
        assert len(keys) >= 2 and len(set(keys)) == 1, keys
        assert keys[0] == f"{run.pk}-0"
        assert http_sink.effects == 1
        assert run.state == ActionRunState.DONE, run.error
        assert ActionRun.objects.filter(subscription=subscription).count() == 1
        assert (subscription.actions_executed, subscription.actions_failed) == (1, 0)
        assert redelivery_s < REDELIVERY_TIMEOUT
    except BaseException:
        for name, log in logs.items():
            if log.exists():
                print(f"--- {name} ---\n{log.read_text(errors='replace')[-6000:]}")
        raise
    finally:
        for process in processes.values():
            stop_process(process)
        redis.kill()
