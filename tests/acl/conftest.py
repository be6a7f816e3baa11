"""Real Mosquitto brokers managed by the portal (Dynamic Security plugin, password
and ACL files) and a small MQTT toolkit to check what they allow."""

from __future__ import annotations

import glob
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from acl import services as acl_services
from acl.models import ManagedBroker
from brokers.models import Broker
from tests.factories import make_broker
from tests.services import MosquittoProcess, missing

ADMIN_USER, ADMIN_PASSWORD = "admin", "dynsec-Admin-55"
WAIT = 5.0  # every wait on a broker is bounded by this


def _plugin_path() -> str:
    found = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so"))
    found += sorted(glob.glob("/usr/lib/mosquitto_dynamic_security.so"))
    if not found:
        missing(
            "the Dynamic Security plugin is missing "
            "(/usr/lib/<arch>/mosquitto_dynamic_security.so, Debian's mosquitto)"
        )
    return found[0]


@dataclass
class ManagedProcess:
    process: MosquittoProcess
    broker: Broker
    directory: Path

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def managed(self) -> ManagedBroker:
        return ManagedBroker.objects.get(broker=self.broker)


@pytest.fixture
def dynsec_broker(mosquitto: Any, tmp_path: Path, world: dict) -> ManagedProcess:
    """A broker with the Dynamic Security plugin; the portal manages it as dynsec
    with the connection's own (admin) credentials."""
    plugin = _plugin_path()
    ctrl = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
    if not Path(ctrl).exists():
        missing("mosquitto_ctrl is not installed (apt-get install mosquitto-clients)")
    directory = tmp_path / "dynsec"
    directory.mkdir()
    config = directory / "dynsec.json"
    subprocess.run(
        [ctrl, "dynsec", "init", str(config), ADMIN_USER, ADMIN_PASSWORD],
        check=True,
        capture_output=True,
        timeout=10,
    )
    # The broker runs as the test user (MosquittoProcess writes `user <me>`) and
    # must be able to write its state back.
    config.chmod(0o600)
    process = mosquitto(
        "listener {port} 127.0.0.1\nallow_anonymous false\n"
        f"plugin {plugin}\nplugin_opt_config_file {config}\n",
        name="dynsec",
    )
    # Disabled: the MQTT runtime must not hold a connection of its own in tests.
    broker = make_broker(
        world["product"],
        name="Dynsec",
        port=process.port,
        enabled=False,
        connect_timeout=3.0,
        username=ADMIN_USER,
        password=ADMIN_PASSWORD,
    )
    acl_services.management_update(
        actor=world["users"]["superuser"], broker=broker, management="dynsec"
    )
    return ManagedProcess(process, broker, directory)


@pytest.fixture
def files_broker(mosquitto: Any, tmp_path: Path, world: dict) -> ManagedProcess:
    """A broker reading a password file and an ACL file the portal writes; it is
    reloaded by SIGHUP to the pid in its pid file."""
    directory = tmp_path / "files"
    directory.mkdir()
    passwd, acl = directory / "passwd", directory / "acl"
    passwd.write_text("")
    acl.write_text("")
    process = mosquitto(
        "listener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {passwd}\nacl_file {acl}\n",
        name="files",
    )
    wait_until(process.pid_path.exists)
    broker = make_broker(
        world["product"],
        name="Files",
        port=process.port,
        enabled=False,
        connect_timeout=3.0,
    )
    acl_services.management_update(
        actor=world["users"]["superuser"],
        broker=broker,
        management="files",
        password_file=str(passwd),
        acl_file=str(acl),
        reload_method="signal",
        pid_file=str(process.pid_path),
    )
    return ManagedProcess(process, broker, directory)


# --- MQTT toolkit ---------------------------------------------------------------


def wait_until(predicate: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {predicate}")
        time.sleep(0.02)


def _client(username: str, password: str | None, client_id: str = "") -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id or f"t-{time.monotonic_ns() % 10**9}",
        reconnect_on_failure=False,
    )
    client.username_pw_set(username, password)
    return client


def connack(port: int, username: str, password: str | None, client_id: str = "") -> int:
    """The CONNACK reason code (0 = accepted) for these credentials."""
    client = _client(username, password, client_id)
    answer: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(*args: Any) -> None:
        answer["rc"] = args[3]
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert done.wait(WAIT), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return int(answer["rc"].value)


class Connection:
    """A connected client that keeps its connection (to see it kicked)."""

    def __init__(
        self, port: int, username: str, password: str, client_id: str = ""
    ) -> None:
        self.client = _client(username, password, client_id)
        self.connected = threading.Event()
        self.closed = threading.Event()
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.on_disconnect = lambda *a: self.closed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(
    port: int, username: str, password: str, messages: list[tuple[str, str]]
) -> None:
    """Publish in order on one connection, QoS 1, each acknowledged (Mosquitto
    acknowledges a refused publish too and drops it)."""
    client = _client(username, password)
    ready = threading.Event()
    client.on_connect = lambda *a: ready.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert ready.wait(WAIT), "no CONNACK"
        for topic, payload in messages:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(WAIT)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


class Observer:
    """A privileged subscriber to `#` that records what the broker delivers."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.port = port
        self.client = _client(username, password)
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *a: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(WAIT), "the observer could not subscribe"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    @property
    def topics(self) -> list[str]:
        with self._lock:
            return [topic for topic, _payload in self.messages]

    def wait_for(self, topic: str) -> None:
        wait_until(lambda: topic in self.topics)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def observe() -> Iterator[Any]:
    observers: list[Observer] = []

    def start(port: int, username: str, password: str) -> Observer:
        observer = Observer(port, username, password)
        observers.append(observer)
        return observer

    yield start
    for observer in observers:
        observer.close()


def assert_allowed_and_denied(
    observer: Observer,
    port: int,
    username: str,
    password: str,
    allowed: str,
    denied: str,
) -> None:
    """The denied message is published first on the same connection: once the
    allowed one arrived, the denied one would have arrived before it."""
    publish_all(port, username, password, [(denied, "denied"), (allowed, "allowed")])
    observer.wait_for(allowed)
    time.sleep(0.2)
    assert denied not in observer.topics
