"""Settings: embedded defaults, overrides by environment, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup(); "
    "print(json.dumps({'engine': settings.DATABASES['default']['ENGINE'], "
    "'layer': settings.CHANNEL_LAYERS['default']['BACKEND'], "
    "'eager': settings.CELERY_TASK_ALWAYS_EAGER, 'broker': settings.CELERY_BROKER_URL,"
    " 'debug': settings.DEBUG, 'journal': str(settings.DATABASES['default']"
    ".get('OPTIONS', {}).get('init_command', ''))}))"
)


def load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ["PATH"], "MQTTADMIN_VAR_DIR": str(tmp_path)}
    clean["DJANGO_SETTINGS_MODULE"] = "mqttadmin.settings"
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_environment_runs_embedded(tmp_path: Path) -> None:
    result = load_settings(tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["engine"] == "django.db.backends.sqlite3"
    assert "journal_mode=WAL" in found["journal"]
    assert found["layer"] == "channels.layers.InMemoryChannelLayer"
    assert found["eager"] is True
    assert (tmp_path / "secret_key").exists()


def test_database_and_redis_urls_switch_to_services(tmp_path: Path) -> None:
    result = load_settings(
        tmp_path,
        DATABASE_URL="postgres://u@127.0.0.1:5432/db",
        REDIS_URL="redis://127.0.0.1:6379/0",
        SECRET_KEY="x" * 50,
        DEBUG="0",
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["engine"] == "django.db.backends.postgresql"
    assert found["layer"] == "channels_redis.core.RedisChannelLayer"
    assert found["eager"] is False
    assert found["broker"] == "redis://127.0.0.1:6379/0"
    assert found["debug"] is False


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"DEBUG": "0", "DATABASE_URL": "postgres://u@127.0.0.1:5432/db"},
            "SECRET_KEY",
        ),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"DATABASE_URL": "nosuchdb://x/y"}, "DATABASE_URL"),
        ({"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL"),
        ({"SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS"),
    ],
)
def test_bad_values_stop_start_up_naming_the_variable(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    result = load_settings(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr


def test_env_example_lists_every_setting() -> None:
    example = (ROOT / ".env.example").read_text()
    source = (ROOT / "mqttadmin" / "settings.py").read_text()
    import re

    read = set(re.findall(r'_(?:read|bool)\(\s*"([A-Z_]+)"', source))
    listed = set(re.findall(r"^#?\s*([A-Z_]+)=", example, re.M))
    assert read <= listed, f"missing from .env.example: {sorted(read - listed)}"
