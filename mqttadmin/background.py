"""Background work, sent by task name: services never import another app's tasks.

`enqueue("devices.notify_alert", alert_id, event)` hands a Celery task to a
worker. In the embedded mode (eager tasks) it runs on a small thread pool of this
process instead, so a slow webhook or mail server never holds up the thread that
enqueued it (the ingest thread, a page request). `enqueue_on_commit` does the same
once the current transaction commits, and never lets a queueing failure (Redis
down) reach a caller whose work is already committed.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import close_old_connections, transaction

logger = logging.getLogger(__name__)

# Background threads of the embedded mode: enough to overlap a few slow webhooks.
LOCAL_WORKERS = 4

_local_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def local_pool() -> ThreadPoolExecutor:
    """The embedded mode's background threads (created on first use)."""
    global _local_pool
    with _pool_lock:
        if _local_pool is None:
            _local_pool = ThreadPoolExecutor(
                max_workers=LOCAL_WORKERS, thread_name_prefix="mqttadmin-background"
            )
        return _local_pool


def run_in_request_cycle(work: Any, *args: Any, **kwargs: Any) -> Any:
    """`work` on a long-lived background thread, framed as Django frames a request:
    a connection that died meanwhile (a database restart, pg_terminate_backend) is
    checked and replaced first, instead of failing this and every later task of
    the thread; one past CONN_MAX_AGE is closed after."""
    close_old_connections()
    try:
        return work(*args, **kwargs)
    finally:
        close_old_connections()


def enqueue(task_name: str, *args: Any, queue: str | None = None) -> None:
    """Run the task named `task_name` in the background with `args` (ids, never
    secrets: task messages sit in Redis)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        if task_name not in current_app.tasks:
            # Without a worker nothing imports the apps' tasks.py (autodiscovery
            # waits for a worker's start-up signal): import them once.
            current_app.loader.import_default_modules()
        task = current_app.tasks[task_name]
        local_pool().submit(run_in_request_cycle, task.apply, args=args)
        return
    options: dict[str, Any] = {"queue": queue} if queue else {}
    current_app.send_task(task_name, args=list(args), **options)


def enqueue_on_commit(task_name: str, *args: Any, queue: str | None = None) -> None:
    """`enqueue` once the current transaction commits.

    Robust: the work it stands for is committed already; a task that cannot be
    queued is logged, and periodic sweeps pick up what they track.
    """
    transaction.on_commit(lambda: enqueue(task_name, *args, queue=queue), robust=True)
