"""Real services for tests: skip when missing, fail when CI requires them."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import NoReturn

import pytest


def missing(reason: str) -> NoReturn:
    """Skip with a visible reason, or fail when CI requires every service."""
    from django.conf import settings

    if settings.MQTTADMIN_REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int,
    timeout: float = 10.0,
    host: str = "127.0.0.1",
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until `port` accepts connections; give up early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise TimeoutError(f"the process exited with {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate a server the test started; kill it if it does not stop in 5 s."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if not path:
        missing("mosquitto is not installed (apt-get install mosquitto)")
    return path


class MosquittoProcess:
    """A Mosquitto the test owns: its own config, port and directory."""

    def __init__(self, workdir: Path, extra_config: str = "", port: int | None = None):
        self.binary = mosquitto_binary()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra_config = extra_config
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.pid_path = self.workdir / "mosquitto.pid"
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        """`extra_config` may name its own listeners, with `{port}` for this port."""
        extra = self.extra_config.replace("{port}", str(self.port))
        listener = "listener " in extra
        base = (
            # Started as root, Mosquitto would drop to `mosquitto` and lose access
            # to the test's private directory; as anyone else this line is ignored.
            f"user {getpass.getuser()}\n"
            f"pid_file {self.pid_path}\n"
            f"persistence true\npersistence_location {self.workdir}/\n"
            "log_dest stdout\nlog_type all\n"
        )
        if not listener:
            base += f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        self.config_path.write_text(base + extra + "\n")

    def start(self) -> MosquittoProcess:
        self.write_config()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, process=self.process)
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"mosquitto did not start: {self.log_path.read_text()[-2000:]}"
            ) from None
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self) -> None:
        assert self.process is not None
        self.process.send_signal(1)  # SIGHUP

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
