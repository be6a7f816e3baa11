"""Shared by the $SYS statistics and connected-clients tests: a Mosquitto that
publishes its log and $SYS every second, the runtime, and MQTT clients that stay
connected."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.runtime_support import retrying, wait_until  # noqa: F401 (re-exported)
from tests.services import MosquittoProcess, missing

PORTAL_USER, PORTAL_PASSWORD = "portal", "portal-Pa55"
USERS = {"alice": "alice-Pa55", "bob": "bob-Pa55", "carol": "carol-Pa55"}
LOG_CONFIG = "log_dest topic\nlog_type all\nsys_interval 1\n"


def passwd_file(directory: Path, users: dict[str, str]) -> Path:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        missing("mosquitto_passwd is not installed (apt-get install mosquitto)")
    path = directory / "passwd"
    for index, (user, password) in enumerate(users.items()):
        flags = ["-b", "-c"] if index == 0 else ["-b"]
        subprocess.run(
            [tool, *flags, str(path), user, password],
            check=True,
            capture_output=True,
            timeout=10,
        )
    path.chmod(0o644)
    return path


@pytest.fixture
def log_broker(mosquitto: Any, tmp_path: Path) -> MosquittoProcess:
    """Password-protected, publishing its log on $SYS/broker/log/# and $SYS every
    second."""
    passwd = passwd_file(tmp_path, {PORTAL_USER: PORTAL_PASSWORD, **USERS})
    return mosquitto(
        "listener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {passwd}\n{LOG_CONFIG}",
        name="syslog",
    )


PROTOCOLS = {
    "3.1": mqtt.MQTTv31,
    "3.1.1": mqtt.MQTTv311,
    "5": mqtt.MQTTv5,
}


@dataclass
class Held:
    """An MQTT client the test keeps connected."""

    client: mqtt.Client
    client_id: str
    closed: threading.Event

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def hold(
    port: int,
    client_id: str,
    username: str,
    password: str,
    *,
    protocol: str = "3.1.1",
    keepalive: int = 60,
) -> Held:
    """Connect and stay connected (paho's loop in its own thread)."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=PROTOCOLS[protocol],
        reconnect_on_failure=False,
    )
    client.username_pw_set(username, password)
    connected, closed = threading.Event(), threading.Event()
    answer: dict[str, Any] = {}

    def on_connect(*args: Any) -> None:
        answer["rc"] = args[3]
        connected.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *args: closed.set()
    client.connect("127.0.0.1", port, keepalive=keepalive)
    client.loop_start()
    if not connected.wait(5) or answer["rc"].is_failure:
        client.loop_stop()
        raise AssertionError(f"{client_id} could not connect: {answer.get('rc')}")
    return Held(client, client_id, closed)


def refused_connect(port: int, username: str, password: str) -> int:
    """Try to connect with bad credentials; the CONNACK reason code."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bad-{time.monotonic_ns() % 10**9}",
        reconnect_on_failure=False,
    )
    client.username_pw_set(username, password)
    done = threading.Event()
    answer: dict[str, Any] = {}

    def on_connect(*args: Any) -> None:
        answer["rc"] = args[3]
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert done.wait(5), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return int(answer["rc"].value)
