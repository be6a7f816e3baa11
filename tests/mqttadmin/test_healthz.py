"""GET /healthz answers for the database, and names what fails."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_healthz_ok() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"


def test_healthz_names_the_failing_database(tmp_path: Path) -> None:
    # A portal whose PostgreSQL does not answer: a port nothing listens on.
    probe = (
        "import django, json; django.setup(); from django.test import Client; "
        "r = Client().get('/healthz'); print(json.dumps([r.status_code, r.json()]))"
    )
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "mqttadmin.settings",
        "MQTTADMIN_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"postgres://nobody@127.0.0.1:{free_port()}/nowhere",
        # With DATABASE_URL every process shares one key: it must be set.
        "SECRET_KEY": "x" * 50,
    }
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    status, body = json.loads(result.stdout.strip().splitlines()[-1])
    assert status == 503
    assert body["failing"] == ["database"]
    assert body["database"].startswith("error")
