"""`manage.py check --deploy` is clean with the documented production settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

# The production values README's "Production" section lists.
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "k" * 20 + "Zq8!vR2#pL5@xT9$mW3%nB7^hF4&jC6*dG1(sK0)",
    "ALLOWED_HOSTS": "mqtt.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://mqtt.example.com",
    "SITE_URL": "https://mqtt.example.com",
    "MQTTADMIN_TLS": "1",
    "USE_X_FORWARDED_PROTO": "1",
    "MQTTADMIN_TRUSTED_PROXY_COUNT": "1",
}


def run_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        "PATH": os.environ["PATH"],
        "MQTTADMIN_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "mqttadmin.settings",
        "MQTTADMIN_SECRET_KEYS": Fernet.generate_key().decode(),
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_check_is_clean_with_the_production_settings(tmp_path: Path) -> None:
    result = run_check(tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout, result.stdout + result.stderr


def test_deploy_check_warns_without_tls(tmp_path: Path) -> None:
    result = run_check(tmp_path, **{**PRODUCTION, "MQTTADMIN_TLS": "0"})
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012"):
        assert warning in result.stderr + result.stdout


def test_the_example_environment_file_loads_as_it_is(tmp_path: Path) -> None:
    """Copying .env.example to .env must start: empty values mean "the default"."""
    example = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            example[key.strip()] = value.strip()
    example["MQTTADMIN_VAR_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **example},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
