"""`manage.py serve` as a newcomer runs it: a fresh var/ and SQLite database, the
local Mosquitto and the demo; the Demo broker connects and devices get values; on
SIGTERM and on kill -9 no Mosquitto is left behind; a second run reuses the Demo."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.localbroker.test_local_broker import (
    binaries,
    processes_mentioning,
    wait_until,
)
from tests.services import free_port

pytestmark = pytest.mark.mosquitto
ROOT = Path(settings.BASE_DIR)


def query(database: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        with sqlite3.connect(database, timeout=5) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not migrated yet
        return []


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def serve(var_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "MQTTADMIN_VAR_DIR": str(var_dir),
        # Empty, not unset: a .env file must not switch this run to other services.
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "MQTTADMIN_SECRET_KEYS": "",
        "DEBUG": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = (var_dir / "serve.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return process, port


def log_of(var_dir: Path) -> str:
    return (var_dir / "serve.log").read_text(errors="replace")[-3000:]


def test_serve_runs_the_local_broker_and_the_demo_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    binaries()
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    database = var_dir / "mqttadmin.sqlite3"
    broker_dir = str(var_dir / "mosquitto")
    process, port = serve(var_dir)
    try:
        wait_until(lambda: process.poll() is not None or healthy(port), 90, "healthz")
        assert process.poll() is None, log_of(var_dir)
        wait_until(
            lambda: query(
                database,
                "SELECT 1 FROM brokers_brokerstatus s JOIN brokers_broker b "
                "ON b.id = s.broker_id WHERE b.name = 'Local Mosquitto' "
                "AND s.state = 'connected'",
            ),
            30,
            "the Demo broker connected",
        )
        wait_until(
            lambda: query(
                database,
                "SELECT 1 FROM devices_device WHERE status = 'online' "
                "AND last_values LIKE '%temperature%'",
            ),
            30,
            "a demo device online with values",
        )
        assert len(processes_mentioning(broker_dir)) == 2  # the guard and mosquitto
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        wait_until(lambda: processes_mentioning(broker_dir) == [], 10, "no mosquitto")

        # A second run reuses the Demo product and broker; kill -9 leaves nothing.
        process, port = serve(var_dir)
        wait_until(lambda: process.poll() is not None or healthy(port), 90)
        assert process.poll() is None, log_of(var_dir)
        wait_until(lambda: len(processes_mentioning(broker_dir)) == 2, 30)
        assert query(database, "SELECT count(*) FROM mqttadmin_product") == [(1,)]
        assert query(database, "SELECT count(*) FROM brokers_broker") == [(1,)]
        assert query(database, "SELECT count(*) FROM devices_device") == [(3,)]
        process.kill()
        process.wait(10)
        wait_until(
            lambda: processes_mentioning(broker_dir) == [], 15, "no mosquitto after -9"
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pid in processes_mentioning(broker_dir):
            os.kill(pid, signal.SIGKILL)
