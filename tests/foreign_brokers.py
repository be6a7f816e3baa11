"""MQTT brokers other than Mosquitto, run as processes the test owns.

Each class starts one broker on free loopback ports of its own (kept across a
restart, so a client can find it again), with its files in the test's directory,
and says what it supports (`protocols`, `tls_port`). A missing program is a skip
with the reason, or a failure when CI requires every service (`missing()`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import ClassVar

from tests.services import free_port, missing, stop_process, wait_for_port

AEDES_DIR = Path(__file__).resolve().parent / "brokers_foreign" / "aedes"
# aedes 1.x is an ES module package that needs Node.js 20 or later.
AEDES_NODE_MAJOR = 20


class ForeignBrokerProcess:
    """One broker process; subclasses say how to configure and start it."""

    name: ClassVar[str] = "broker"
    # MQTT versions the broker accepts, as the portal names them.
    protocols: ClassVar[tuple[str, ...]] = ("3.1.1", "5")

    def __init__(
        self,
        workdir: Path,
        *,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.tls_port: int | None = free_port() if tls_cert else None
        self.log_path = self.workdir / f"{self.name}.log"
        # The WebSocket listener's port, where the broker has one.
        self.ws_port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def write_config(self) -> None:
        """Write the broker's configuration files (none by default)."""

    def start(self) -> ForeignBrokerProcess:
        self.write_config()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        try:
            for port in (self.port, self.tls_port, self.ws_port):
                if port is not None:
                    wait_for_port(port, timeout=15, process=self.process)
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"{self.name} did not start: {self.log[-2000:]}"
            ) from None
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class NatsProcess(ForeignBrokerProcess):
    """nats-server with its MQTT gateway (MQTT 3.1.1 only, over TCP or WebSocket
    at /mqtt). The gateway keeps
    sessions and retained messages in JetStream, which needs a server name and a
    store directory: the test's own, so a restart finds them again."""

    name = "nats"
    protocols = ("3.1.1",)

    def __init__(self, workdir: Path, **tls: Path | None) -> None:
        self.binary = shutil.which("nats-server") or (
            "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
        )
        if not self.binary:
            missing("nats-server is not installed (apt-get install nats-server)")
        super().__init__(workdir, **tls)
        self.client_port = free_port()
        self.monitor_port = free_port()
        self.ws_port = free_port()
        self.config_path = self.workdir / "nats.conf"
        if self.tls_port:
            # One MQTT listener per server: with TLS it is the TLS one.
            self.port = self.tls_port

    def write_config(self) -> None:
        tls = (
            f'  tls {{\n    cert_file: "{self.tls_cert}"\n'
            f'    key_file: "{self.tls_key}"\n  }}\n'
            if self.tls_cert
            else ""
        )
        self.config_path.write_text(
            f"listen: 127.0.0.1:{self.client_port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f'server_name: "compat-{self.client_port}"\n'
            f'jetstream {{\n  store_dir: "{self.workdir / "jetstream"}"\n}}\n'
            f"mqtt {{\n  listen: 127.0.0.1:{self.port}\n{tls}}}\n"
            # MQTT over WebSocket at path /mqtt (plain, on loopback).
            f"websocket {{\n  listen: 127.0.0.1:{self.ws_port}\n  no_tls: true\n}}\n"
        )

    def command(self) -> list[str]:
        assert self.binary is not None
        return [self.binary, "-c", str(self.config_path)]

    def stored_sessions(self) -> int:
        """MQTT sessions the gateway keeps (one message each in the JetStream
        stream `$MQTT_sess`), from the server's monitoring endpoint."""
        url = f"http://127.0.0.1:{self.monitor_port}/jsz?streams=true"
        with urllib.request.urlopen(url, timeout=5) as response:
            report = json.load(response)
        for account in report.get("account_details", []):
            for stream in account.get("stream_detail", []):
                if stream["name"] == "$MQTT_sess":
                    return int(stream["state"]["messages"])
        return 0


class AmqttProcess(ForeignBrokerProcess):
    """amqtt (PyPI), the asyncio broker, from this virtualenv's `amqtt` script;
    retained messages live in memory only."""

    name = "amqtt"
    protocols = ("3.1.1",)

    def __init__(self, workdir: Path, **tls: Path | None) -> None:
        script = Path(sys.executable).with_name("amqtt")
        if not script.exists():
            missing("amqtt is not installed (make install: it is in the dev extra)")
        self.script = script
        super().__init__(workdir, **tls)
        self.ws_port = free_port()
        self.config_path = self.workdir / "amqtt.yaml"

    def write_config(self) -> None:
        listeners: dict[str, dict[str, object]] = {
            "default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"},
            "websockets": {"type": "ws", "bind": f"127.0.0.1:{self.ws_port}"},
        }
        if self.tls_port:
            listeners["tls"] = {
                "type": "tcp",
                "bind": f"127.0.0.1:{self.tls_port}",
                "ssl": True,
                "certfile": str(self.tls_cert),
                "keyfile": str(self.tls_key),
            }
        config = {
            "listeners": listeners,
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                    "allow_anonymous": True
                }
            },
        }
        # JSON is YAML: no YAML writer needed.
        self.config_path.write_text(json.dumps(config, indent=2))

    def command(self) -> list[str]:
        return [str(self.script), "-c", str(self.config_path)]


class AedesProcess(ForeignBrokerProcess):
    """aedes (npm) through tests/brokers_foreign/aedes/server.js, with
    aedes-server-factory's TLS and WebSocket servers; in-memory persistence, so
    nothing (retained messages included) survives a restart."""

    name = "aedes"
    protocols = ("3.1.1", "5")

    def __init__(self, workdir: Path, **tls: Path | None) -> None:
        self.node = shutil.which("node")
        if not self.node:
            missing("Node.js is not installed (apt-get install nodejs npm)")
        version = subprocess.run(
            [self.node, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        major = int(version.lstrip("v").split(".")[0] or 0)
        if major < AEDES_NODE_MAJOR:
            missing(f"aedes needs Node.js {AEDES_NODE_MAJOR} or later, found {version}")
        if not (AEDES_DIR / "node_modules" / "aedes").is_dir():
            missing(
                "aedes is not installed (make install runs npm ci in "
                "tests/brokers_foreign/aedes)"
            )
        super().__init__(workdir, **tls)
        self.ws_port = free_port()

    def command(self) -> list[str]:
        assert self.node is not None
        options: dict[str, object] = {"port": self.port, "wsPort": self.ws_port}
        if self.tls_port:
            options |= {
                "tlsPort": self.tls_port,
                "certFile": str(self.tls_cert),
                "keyFile": str(self.tls_key),
            }
        return [self.node, str(AEDES_DIR / "server.js"), json.dumps(options)]


FOREIGN_BROKERS: dict[str, type[ForeignBrokerProcess]] = {
    broker.name: broker for broker in (NatsProcess, AmqttProcess, AedesProcess)
}
