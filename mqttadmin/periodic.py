"""Periodic tasks inside `manage.py serve`, where no Celery beat runs.

The same CELERY_BEAT_SCHEDULE drives both: beat in the distributed mode, this timer
thread in the embedded one, so retention and health checks never depend on mode.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from mqttadmin.embedded import EmbeddedOptions, Stopper

logger = logging.getLogger(__name__)


def start_periodic(options: EmbeddedOptions) -> Stopper | None:
    from mqttadmin.celery import app

    # Without a worker nothing imports the apps' tasks.py (autodiscovery waits
    # for a worker's start-up signal): import them so the names resolve.
    app.loader.import_default_modules()
    stop = threading.Event()
    beat: dict[str, dict[str, Any]] = settings.CELERY_BEAT_SCHEDULE
    schedule = {
        name: (entry["task"], float(entry["schedule"])) for name, entry in beat.items()
    }
    next_run = {name: time.monotonic() + 5 for name in schedule}

    def run() -> None:
        try:
            while not stop.wait(1.0):
                now = time.monotonic()
                for name, (task_name, every) in schedule.items():
                    if now < next_run[name]:
                        continue
                    next_run[name] = now + every
                    close_old_connections()
                    try:
                        app.tasks[task_name].apply()
                    except Exception:
                        logger.exception("periodic task %s failed", task_name)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="periodic-tasks", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(5)

    return halt
