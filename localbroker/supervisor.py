"""The local Mosquitto as a process: discovery, its files, the guard and the supervisor.

When a `mosquitto` binary and the Dynamic Security plugin are found, `serve` writes a
config under var/mosquitto/ (one listener on 127.0.0.1, dynsec with the portal's
admin client, broker log lines on `$SYS/broker/log/#`, `$SYS` every few seconds,
persistence beside the config) and runs Mosquitto as a child process
(localbroker.services registers it in the portal):

- A supervisor thread restarts Mosquitto when it dies, with backoff; the portal's
  reload and restart (acl.lifecycle) act on the child through a lifecycle provider.
- No orphan: Mosquitto runs under a tiny guard (this file run as a script) that
  watches a pipe from the portal and ends Mosquitto when the pipe closes, which the
  kernel does on every exit of the portal, `kill -9` included. Every orderly exit
  path (serve's `finally`, atexit) also stops it.

Imports are the standard library only: the guard runs this file with a bare
interpreter, without Django.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import glob
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
SYS_INTERVAL_S = 5
# Per client: room for a whole ingest batch in flight, and a queue that rides out
# a burst while the portal commits (messages of up to a few KiB: tens of MiB).
MAX_INFLIGHT_MESSAGES = 5000
MAX_QUEUED_MESSAGES = 100000
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
# A run this long counts as healthy: the next crash restarts without delay build-up.
STABLE_AFTER_S = 30.0
LOG_ROTATE_BYTES = 5 * 1024 * 1024
DYNSEC_ITERATIONS = 101  # what mosquitto_ctrl 2.0 writes; 2.0 and 2.1 both read it
INSTALL_HINT = (
    "No local broker: mosquitto is not installed (apt-get install mosquitto, or brew "
    "install mosquitto), or set MQTTADMIN_MOSQUITTO to its path. Serving on without it."
)
PLUGIN_SEARCH = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/lib64/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/*/mosquitto_dynamic_security.so",
    "/opt/homebrew/lib/mosquitto_dynamic_security.so",
    "/opt/homebrew/opt/mosquitto/lib/mosquitto_dynamic_security.so",
    "/usr/local/opt/mosquitto/lib/mosquitto_dynamic_security.so",
    "/usr/lib/*/mosquitto_dynamic_security.dylib",
)


class LocalBrokerError(RuntimeError):
    """The local broker could not be set up or did not start."""


# --- Discovery ------------------------------------------------------------------


def find_mosquitto(configured: str = "") -> str | None:
    """The mosquitto binary: the configured path, else PATH, else the sbin folders
    distributions install it to (often not on a user's PATH)."""
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    found = shutil.which("mosquitto")
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"):
        candidate = Path(folder) / "mosquitto"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_dynsec_plugin(configured: str = "", binary: str | None = None) -> str | None:
    """The Dynamic Security plugin: the configured path, else a lib folder of the
    binary's prefix, else the places packages install it to."""
    if configured:
        return configured if Path(configured).is_file() else None
    patterns: list[str] = []
    if binary:
        # The plugin of the binary's own install first: it matches its version.
        prefix = Path(binary).resolve().parent.parent
        patterns += [
            str(prefix / "lib" / "mosquitto_dynamic_security.*"),
            str(prefix / "lib" / "*" / "mosquitto_dynamic_security.*"),
        ]
    patterns += PLUGIN_SEARCH
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if Path(path).is_file():
                return path
    return None


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int | None = None) -> int:
    """The preferred port when it is free (the broker row keeps its port across
    runs), else one the kernel hands out."""
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# --- Files ----------------------------------------------------------------------


def _dynsec_hash(password: str, salt: bytes, iterations: int) -> str:
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return base64.b64encode(digest).decode()


def dynsec_document(username: str, password: str) -> dict[str, Any]:
    """The plugin's state file with one admin client, as `mosquitto_ctrl dynsec
    init` writes it, plus publishing everywhere: the portal publishes (publish page,
    device commands) with the connection's credentials, which are this admin's."""
    salt = secrets.token_bytes(12)
    admin_acls = [
        (acltype, topic)
        for topic in ("$CONTROL/dynamic-security/#",)
        for acltype in ("publishClientSend", "publishClientReceive", "subscribePattern")
    ] + [
        ("publishClientReceive", "$SYS/#"),
        ("subscribePattern", "$SYS/#"),
        ("publishClientSend", "#"),
        ("publishClientReceive", "#"),
        ("subscribePattern", "#"),
        ("unsubscribePattern", "#"),
    ]
    return {
        "clients": [
            {
                "username": username,
                "textName": "MQTT Admin portal",
                "password": _dynsec_hash(password, salt, DYNSEC_ITERATIONS),
                "salt": base64.b64encode(salt).decode(),
                "iterations": DYNSEC_ITERATIONS,
                "roles": [{"rolename": "admin"}],
            }
        ],
        "roles": [
            {
                "rolename": "admin",
                "acls": [
                    {"acltype": acltype, "topic": topic, "allow": True}
                    for acltype, topic in admin_acls
                ],
            }
        ],
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
    }


def dynsec_file_admits(path: Path, username: str, password: str) -> bool:
    """Whether the plugin's file holds `username` with this password."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    for client in document.get("clients") or []:
        if client.get("username") != username:
            continue
        try:
            salt = base64.b64decode(client["salt"])
            iterations = int(client.get("iterations") or DYNSEC_ITERATIONS)
        except (KeyError, ValueError, TypeError):
            return False
        return secrets.compare_digest(
            _dynsec_hash(password, salt, iterations), str(client.get("password"))
        )
    return False


def _write_private(path: Path, text: str) -> None:
    """Write atomically, readable by this user only (the file holds a hash, the
    broker running as this user must be able to rewrite it)."""
    # As mqttadmin.lib.files.write_private, which this module cannot import: it
    # also runs on its own (the guard process, without the package on the path).
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


@dataclass(frozen=True)
class LocalBrokerFiles:
    """Where one local broker keeps its config, plugin state, data and log."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def dynsec(self) -> Path:
        return self.directory / "dynamic-security.json"

    @property
    def log(self) -> Path:
        return self.directory / "mosquitto.log"

    def prepare(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)

    def write_dynsec(self, username: str, password: str) -> None:
        document = dynsec_document(username, password)
        _write_private(self.dynsec, json.dumps(document, indent=2) + "\n")

    def write_config(self, *, port: int, plugin: str) -> None:
        lines = [
            "# Written by MQTT Admin when `manage.py serve` starts (edits are lost)",
            # As root Mosquitto would switch to the `mosquitto` user and lose access
            # to var/; as anyone else the line is ignored.
            f"user {getpass.getuser()}",
            f"listener {port} {HOST}",
            "allow_anonymous false",
            f"plugin {plugin}",
            f"plugin_opt_config_file {self.dynsec}",
            "persistence true",
            f"persistence_location {self.directory}/",
            "log_dest stderr",
            # The connected-clients view reads the broker's log lines from $SYS.
            "log_dest topic",
            # Every type but debug: debug logs each PUBLISH, which would fill the log
            # file and feed the portal's own $SYS subscription with its own traffic.
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_type subscribe",
            "log_type unsubscribe",
            "log_timestamp true",
            f"sys_interval {SYS_INTERVAL_S}",
            # The portal acknowledges a QoS 1/2 message only after committing it,
            # once per batch: at Mosquitto's defaults (20 in flight, 1000 queued)
            # a burst fills both while a commit runs and the rest is dropped.
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        ]
        _write_private(self.config, "\n".join(lines) + "\n")

    def rotate_log(self) -> None:
        try:
            if self.log.stat().st_size > LOG_ROTATE_BYTES:
                os.replace(self.log, self.log.with_name(self.log.name + ".1"))
        except FileNotFoundError:
            pass


# --- The guard (runs as its own process, without Django) -------------------------


def guard_main(argv: list[str]) -> int:
    """Run `argv` (mosquitto) and end it when stdin closes (the portal is gone) or
    on SIGTERM; SIGHUP is passed on. Prints the child's pid first."""
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sys.stderr)
    sys.stdout.write(f"{child.pid}\n")
    sys.stdout.flush()
    ended = threading.Event()

    def end_child() -> None:
        if ended.is_set():
            return
        ended.set()
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()

    def on_signal(signum: int, frame: Any) -> None:
        if signum == signal.SIGHUP:
            if child.poll() is None:
                child.send_signal(signal.SIGHUP)
        else:
            threading.Thread(target=end_child, daemon=True).start()

    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_parent() -> None:
        # The raw descriptor, not sys.stdin: a thread blocked in a buffered read
        # aborts the interpreter's shutdown.
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        end_child()

    threading.Thread(target=watch_parent, daemon=True).start()
    return child.wait()


# --- The supervisor ---------------------------------------------------------------


class Supervisor:
    """Keeps one Mosquitto (under its guard) running: restarts it with backoff when
    it dies, restarts it on request, stops it for good on `stop()`."""

    def __init__(self, *, binary: str, config: Path, port: int, log: Path) -> None:
        self.binary = binary
        self.config = config
        self.port = port
        self.log = log
        self.restarts = 0
        self._guard: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._started_at = 0.0
        self._generation = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._restart_requested = threading.Event()
        # Cuts a backoff pause short (stop, or a restart asked for meanwhile).
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """Mosquitto's pid while it runs (not the guard's)."""
        with self._lock:
            return self._pid

    @property
    def guard_pid(self) -> int | None:
        with self._lock:
            return self._guard.pid if self._guard is not None else None

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Start the guard and Mosquitto; wait until the port accepts."""
        with self._lock:
            if self._stopping.is_set():
                raise LocalBrokerError("stopping")
            with self.log.open("ab") as log:
                guard = subprocess.Popen(
                    [
                        sys.executable,
                        "-I",
                        __file__,
                        "guard",
                        self.binary,
                        "-c",
                        str(self.config),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    # Out of the terminal's process group: Ctrl+C reaches serve,
                    # which stops the broker in order.
                    start_new_session=True,
                )
            assert guard.stdout is not None
            line = guard.stdout.readline().strip()
            self._guard = guard
            self._pid = int(line) if line.isdigit() else None
            self._started_at = time.monotonic()
            self._generation += 1
            self._changed.notify_all()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not port_accepts(self.port):
            if guard.poll() is not None or time.monotonic() > deadline:
                self._end(guard)
                raise LocalBrokerError(
                    f"mosquitto did not start on {HOST}:{self.port}: {self.log_tail()}"
                )
            time.sleep(0.05)
        return guard

    def log_tail(self, limit: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:].strip()
        except OSError:
            return ""

    @staticmethod
    def _end(guard: subprocess.Popen[bytes]) -> None:
        """SIGTERM the guard (it ends Mosquitto); the whole group if it lingers."""
        if guard.poll() is None:
            guard.terminate()
            try:
                guard.wait(STOP_TIMEOUT_S + 2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(guard.pid, signal.SIGKILL)
                guard.wait()
        for stream in (guard.stdin, guard.stdout):
            if stream is not None:
                stream.close()

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(
            target=self._supervise, name="local-mosquitto", daemon=True
        )
        self._thread.start()

    def _pause(self, delay: float) -> bool:
        """Sleep up to `delay`; whether to go on (not stopping)."""
        self._wake.wait(delay)
        self._wake.clear()
        return not self._stopping.is_set()

    def _supervise(self) -> None:
        delay = BACKOFF_FIRST_S
        while not self._stopping.is_set():
            with self._lock:
                guard = self._guard
            if guard is None:
                return
            code = guard.wait()
            if self._stopping.is_set():
                return
            self._wake.clear()
            self._end(guard)
            if self._restart_requested.is_set():
                self._restart_requested.clear()
                delay = BACKOFF_FIRST_S
            else:
                if time.monotonic() - self._started_at > STABLE_AFTER_S:
                    delay = BACKOFF_FIRST_S
                logger.warning(
                    "the local mosquitto exited with %s; restarting in %.1fs: %s",
                    code,
                    delay,
                    self.log_tail(500),
                )
                if not self._pause(delay):
                    return
                delay = min(delay * 2, BACKOFF_MAX_S)
            while not self._stopping.is_set():
                try:
                    self._spawn()
                    self._restart_requested.clear()
                    self.restarts += 1
                    break
                except LocalBrokerError as exc:
                    if self._stopping.is_set():
                        return
                    logger.error("%s; retrying in %.1fs", exc, delay)
                    if not self._pause(delay):
                        return
                    delay = min(delay * 2, BACKOFF_MAX_S)

    def reload(self) -> int:
        """SIGHUP to Mosquitto; its pid."""
        pid = self.pid
        if pid is None:
            raise LocalBrokerError("the local mosquitto is not running")
        os.kill(pid, signal.SIGHUP)
        return pid

    def restart(self, timeout: float = READY_TIMEOUT_S + STOP_TIMEOUT_S) -> int:
        """Stop Mosquitto and start it again at once; the new pid once it listens."""
        with self._lock:
            generation = self._generation
            guard = self._guard
        if guard is None or self._stopping.is_set():
            raise LocalBrokerError("the local mosquitto is not supervised")
        self._restart_requested.set()
        if guard.poll() is None:
            guard.terminate()
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._generation == generation:
                left = deadline - time.monotonic()
                if left <= 0 or not self._changed.wait(left):
                    raise LocalBrokerError("the local mosquitto did not come back")
            pid = self._pid
        while not port_accepts(self.port):
            if time.monotonic() > deadline:
                raise LocalBrokerError("the local mosquitto did not come back")
            time.sleep(0.05)
        return pid or 0

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        with self._lock:
            guard = self._guard
            self._pid = None
        if guard is not None:
            self._end(guard)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(STOP_TIMEOUT_S)


if __name__ == "__main__" and sys.argv[1:2] == ["guard"]:
    code = guard_main(sys.argv[2:])
    # Mosquitto's own code (a signal as 128 + n), without waiting for the watcher.
    os._exit(code if code >= 0 else 128 - code)
