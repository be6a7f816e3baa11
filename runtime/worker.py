"""The MQTT runtime inside Celery workers: `celery -A mqttadmin worker --mqtt-runtime`.

Several such workers share the brokers through leases; MQTTADMIN_RUNTIME_LEASE_TTL
(seconds, default 15) bounds how long a killed worker's connections stay orphaned.
Nothing here touches models at import: mqttadmin.celery installs it before Django
has loaded the apps.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, bootsteps
from click import Option
from django.core.exceptions import ImproperlyConfigured


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ImproperlyConfigured(
            f"{name} must be a positive number of seconds (got {raw!r})"
        )
    return value


class MqttRuntimeStep(bootsteps.StartStopStep):
    """Runs a runtime.manager.Runtime while the worker runs (with --mqtt-runtime).

    Started after the pool: a prefork pool forks its children first, so no runtime
    thread or database connection is copied into them.
    """

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, mqtt_runtime: bool = False, **options: Any):
        super().__init__(worker, **options)
        self.enabled = bool(mqtt_runtime)
        self.runtime: Any = None

    def start(self, worker: Any) -> None:
        # Models load only once the worker has set Django up.
        from runtime.manager import Runtime

        ttl = _seconds("MQTTADMIN_RUNTIME_LEASE_TTL", 15.0)
        self.runtime = Runtime(
            owner=f"{worker.hostname}:{os.getpid()}:worker",
            poll_interval=_seconds("MQTTADMIN_RUNTIME_POLL_INTERVAL", 1.0),
            lease_ttl=ttl,
            lease_renew=ttl / 3,
        )
        self.runtime.start()

    def stop(self, worker: Any) -> None:
        if self.runtime is not None:
            runtime, self.runtime = self.runtime, None
            runtime.stop()

    def terminate(self, worker: Any) -> None:
        self.stop(worker)


def install(app: Celery) -> None:
    """Give `celery worker` the --mqtt-runtime flag and the step it turns on."""
    app.user_options["worker"].add(
        Option(
            ("--mqtt-runtime",),
            is_flag=True,
            default=False,
            help="Also run the MQTT connection runtime in this worker.",
        )
    )
    app.steps["worker"].add(MqttRuntimeStep)
