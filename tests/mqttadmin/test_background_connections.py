"""The embedded install's background threads outlive database connections: a task
that runs after its thread's connection was terminated (a PostgreSQL restart,
pg_terminate_backend) gets a new one instead of failing, it and every later task
of that thread."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from mqttadmin.background import run_in_request_cycle

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="a question of PostgreSQL's server-side connections only",
    ),
]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_a_task_after_its_connection_was_terminated_gets_a_new_one() -> None:
    pids: list[int] = []
    errors: list[BaseException] = []
    first_done, terminated = threading.Event(), threading.Event()

    def background_thread() -> None:
        try:
            pids.append(run_in_request_cycle(_backend_pid))
            first_done.set()
            terminated.wait(10)
            pids.append(run_in_request_cycle(_backend_pid))
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=background_thread)
    thread.start()
    assert first_done.wait(10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pids[0]])
    terminated.set()
    thread.join(10)
    assert not errors, errors
    assert len(pids) == 2 and pids[1] != pids[0]
