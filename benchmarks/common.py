"""Shared pieces of the benchmarks: a private Mosquitto, Django set-up, timing."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _production_like_environment() -> None:
    """Measure what production runs: DEBUG off (no query log per statement), with
    throwaway keys. Set in the parent so the benchmark's child processes inherit
    them."""
    import secrets

    from cryptography.fernet import Fernet

    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("MQTTADMIN_SECRET_KEYS", Fernet.generate_key().decode())


_production_like_environment()


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqttadmin.settings")
    import django

    django.setup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class Mosquitto:
    """A private broker; generous queues so the benchmark measures us, not limits,
    unless `default_limits`: then Mosquitto's own defaults, as users run it."""

    def __init__(self, extra: str = "", default_limits: bool = False) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
        self.dir = Path(tempfile.mkdtemp(prefix="mqttadmin-bench-"))
        self.port = free_port()
        config = self.dir / "mosquitto.conf"
        limits = (
            ""
            if default_limits
            else "max_inflight_messages 1000\nmax_queued_messages 1000000\n"
            "max_queued_bytes 0\n"
        )
        config.write_text(
            f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\n"
            "allow_anonymous true\nsys_interval 1\n" + limits + "persistence false\n"
            "log_dest none\n" + extra
        )
        self.process = subprocess.Popen([binary, "-c", str(config)])
        wait_for_port(self.port)

    def dropped(self) -> int:
        """Messages the broker dropped so far (its `$SYS` counter)."""
        time.sleep(1.5)  # the counter is published every sys_interval (1 s)
        result = subprocess.run(
            [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-t",
                "$SYS/broker/publish/messages/dropped",
                "-C",
                "1",
                "-W",
                "5",
            ],
            capture_output=True,
            text=True,
        )
        return int(result.stdout.strip() or 0)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


# mosquitto_pub -l at QoS>0 disconnects when the PUBACK of a message id equal
# to its last one arrives; ids wrap at 65,535, so a longer run stops early (seen
# with 2.0.11: 34,467 of 100,000 sent). Runs of at most this many lines avoid it.
PUB_RUN_LINES = 60000


def publish_lines(port: int, topic: str, lines_file: Path, qos: int) -> float:
    """Publish every line of `lines_file` with mosquitto_pub -l; returns seconds."""
    started = time.monotonic()
    command = [
        "mosquitto_pub",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-t",
        topic,
        "-q",
        str(qos),
        "-l",
    ]
    if qos == 0:
        with lines_file.open("rb") as handle:
            subprocess.run(command, stdin=handle, check=True)
        return time.monotonic() - started
    lines = lines_file.read_bytes().splitlines(keepends=True)
    for start in range(0, len(lines), PUB_RUN_LINES):
        chunk = b"".join(lines[start : start + PUB_RUN_LINES])
        subprocess.run(command, input=chunk, check=True)
    return time.monotonic() - started


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set) of a running process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
