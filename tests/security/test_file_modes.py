"""Files of an embedded install are this user's only: var/ is 0700, the SQLite
database with its -wal and -shm 0600, and generated secrets 0600 from the moment
they exist."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from mqttadmin.lib.files import create_private, write_private

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter with the umask most systems use (files 0644): what
# `make run` would create on first start, while its database connection is open.
FIRST_START = """
import os, stat, sys
os.umask(0o022)
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "mqttadmin.settings"
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.db import connection
call_command("migrate", verbosity=0)
from mqttadmin.management.commands.serve import ensure_initial_admin
from mqttadmin.lib.crypto import encrypt
from localbroker.demo import _simulator_password
assert ensure_initial_admin() is not None
encrypt("x")
_simulator_password(settings.VAR_DIR)
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS t (x int)")
    cursor.execute("INSERT INTO t VALUES (1)")
for path in sorted(settings.VAR_DIR.rglob("*")) + [settings.VAR_DIR]:
    print(oct(stat.S_IMODE(path.stat().st_mode)), path.relative_to(settings.VAR_DIR))
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_first_start_creates_private_files_only(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"}
        and not key.startswith("MQTTADMIN_")
    }
    env["MQTTADMIN_VAR_DIR"] = str(var)
    done = subprocess.run(
        [sys.executable, "-c", FIRST_START],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    modes = {
        name: mode
        for mode, name in (
            line.split(" ", 1) for line in done.stdout.strip().splitlines()
        )
    }
    assert modes["."] == "0o700"
    for name in (
        "mqttadmin.sqlite3",
        "mqttadmin.sqlite3-wal",
        "mqttadmin.sqlite3-shm",
        "secret_key",
        "initial_admin.txt",
    ):
        assert modes.get(name) == "0o600", (name, modes)
    # Every other generated file (encryption key, demo simulator secret) too.
    files = {name: m for name, m in modes.items() if name != "." and "/" not in name}
    assert len(files) >= 7, modes
    assert set(files.values()) == {"0o600"}, modes
    assert not [name for name in files if name.endswith(".tmp")]


def test_an_existing_install_is_made_private_on_start(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    os.chmod(var, 0o755)  # noqa: S103 (an old install's mode, on purpose)
    database = var / "mqttadmin.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").write_bytes(b"")
        os.chmod(f"{database}{suffix}", 0o644)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL"}
    }
    env["MQTTADMIN_VAR_DIR"] = str(var)
    subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert mode(var) == 0o700
    for suffix in ("", "-wal", "-shm"):
        assert mode(Path(f"{database}{suffix}")) == 0o600, suffix


def test_secrets_are_private_from_the_first_byte_and_never_replaced(
    tmp_path: Path,
) -> None:
    old = os.umask(0)  # the most permissive umask: the mode must not depend on it
    try:
        path = tmp_path / "key"
        assert create_private(path, "first\n")
        assert mode(path) == 0o600
        assert not create_private(path, "second\n")
        assert path.read_text() == "first\n"
        write_private(path, "rotated\n")
        assert mode(path) == 0o600 and path.read_text() == "rotated\n"
        assert [p.name for p in tmp_path.iterdir()] == ["key"]
    finally:
        os.umask(old)


def test_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    link = tmp_path / "secret"
    link.symlink_to(target)
    assert not create_private(link, "secret\n")
    write_private(link, "secret\n")
    assert target.read_text() == "keep"
    assert not link.is_symlink() and mode(link) == 0o600
