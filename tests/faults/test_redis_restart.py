"""Redis restarted: tasks and live feeds resume by themselves; the portal stays up.

Real processes on loopback, as the distributed mode runs them: a private
`redis-server` (never the machine's own: other things use it), a `celery worker
--mqtt-runtime` (runtime and actions queue), `celery beat` (the sweeper of
stale action runs) and `daphne` serving the portal, all on the test database,
against a real Mosquitto. Redis is killed with SIGKILL and started again on the
same port with nothing in it (no persistence): whatever it held is gone.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from actions.models import ActionRun, ActionRunState
from brokers.models import Subscription
from brokers.services import subscription_create
from mqttadmin.realtime import RUNTIME_GROUP
from tests.factories import make_superuser
from tests.faults.support import (
    PROJECT,
    StampedPublisher,
    database_url,
    start_worker,
    stop_process,
    wait_stored,
)
from tests.runtime_support import running_broker, state_is, wait_until
from tests.services import free_port, missing, wait_for_port

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

REDIS_SERVER = Path("/usr/bin/redis-server")
# The runtime reconciles on its own this rarely: a subscription that is live within
# a few seconds was reached by a nudge over Redis, not by the timer.
POLL_INTERVAL = 30
# Action runs pending longer than this are re-enqueued by beat's sweep, which runs
# as often (production: 60 s). Short here so the test is bounded.
ACTIONS_SWEEP_S = 3
# Generous bounds for a 2-core machine shared with other test runs.
START_TIMEOUT = 40
RECOVERY_TIMEOUT = 30
# Long enough for every client to notice and to back off at least once.
OUTAGE_S = 3
MESSAGES_PER_PHASE = 5
# The stamped publisher's run id and sequence number, so each request names its message.
WEBHOOK_BODY = '{"run": "{{ payload.run }}", "seq": {{ payload.seq }}}'


class PrivateRedis:
    """A redis-server of the test's own on a free port, without persistence, so a
    restart loses everything, as an unconfigured Redis does."""

    def __init__(self, workdir: Path) -> None:
        if not REDIS_SERVER.exists():
            missing(f"redis-server is not installed at {REDIS_SERVER}")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(REDIS_SERVER),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, timeout=10, process=self.process)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, nothing saved."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)
        self.process = None

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=1)


class ConnectionClosed(Exception):
    """The server closed the WebSocket (or the TCP connection)."""


class FeedSocket:
    """The broker page's live socket as the page drives it: connect with the
    session cookie, ask for the feed (`{"action": "feed", ...}`), record every
    frame, and when the socket closes connect again after a short delay (htmx's
    ws extension does the same, and the page re-syncs from the history).

    A minimal RFC 6455 client on a plain socket: the venv has no WebSocket client
    library, and the protocol needed here is small (text frames, ping, close).
    """

    def __init__(self, port: int, path: str, cookie: str) -> None:
        self.port = port
        self.path = path
        self.cookie = cookie
        # (monotonic time, connection number, text) of every text frame.
        self.frames: list[tuple[float, int, str]] = []
        self.connections = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._buffer = b""
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FeedSocket:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def texts_since(self, since: float) -> list[str]:
        with self._lock:
            return [text for at, _n, text in self.frames if at >= since]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._connect() as sock:
                    self.connections += 1
                    number = self.connections
                    request = {"action": "feed", "filter": "", "paused": False}
                    self._send_text(sock, json.dumps(request))
                    while not self._stop.is_set():
                        text = self._read_message(sock)
                        if text is not None:
                            with self._lock:
                                self.frames.append((time.monotonic(), number, text))
            except (OSError, ConnectionClosed) as exc:
                self.errors.append(f"{time.monotonic():.1f} {exc!r}")
            self._stop.wait(0.5)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        origin = f"http://127.0.0.1:{self.port}"
        sock.sendall(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {origin}\r\nCookie: {self.cookie}\r\n\r\n"
            ).encode()
        )
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                raise ConnectionClosed("closed during the handshake")
            self._buffer += chunk
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            sock.close()
            raise ConnectionClosed(f"handshake refused: {head[:80]!r}")
        # Short reads so `stop` is noticed; the buffer keeps partial frames.
        sock.settimeout(0.5)
        return sock

    def _read_exact(self, sock: socket.socket, size: int) -> bytes:
        while len(self._buffer) < size:
            if self._stop.is_set():
                raise ConnectionClosed("stopping")
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionClosed("TCP connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _read_message(self, sock: socket.socket) -> str | None:
        """One whole message (continuation frames joined); None for control."""
        parts: list[bytes] = []
        while True:
            first, second = self._read_exact(sock, 2)
            opcode = first & 0x0F
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._read_exact(sock, 2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read_exact(sock, 8))
            payload = self._read_exact(sock, length)  # servers never mask
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                raise ConnectionClosed(f"closed by the server with {code}")
            if opcode == 0x9:
                self._send_frame(sock, 0xA, payload)
                return None
            if opcode == 0xA:
                return None
            parts.append(payload)
            if first & 0x80:
                return b"".join(parts).decode("utf-8")

    def _send_text(self, sock: socket.socket, text: str) -> None:
        self._send_frame(sock, 0x1, text.encode("utf-8"))

    def _send_frame(self, sock: socket.socket, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        header = bytes([0x80 | opcode])
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(header + mask + masked)


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    """Daphne's /healthz: the status and the parts it names."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/healthz", timeout=10
        ) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_daphne(port: int, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    """The portal's web process (HTTP and WebSockets) on the test database."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "mqttadmin.asgi:application",
        ],
        cwd=PROJECT,
        env={
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": redis_url,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
        },
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def start_beat(redis_url: str, log: Path, sweep_s: int) -> subprocess.Popen[bytes]:
    """`celery beat` with the configured (database) scheduler, sweeping action
    runs every `sweep_s` seconds."""
    command = [sys.executable, "-m", "celery", "-A", "mqttadmin", "beat"]
    # Wake every second so the short sweep interval is kept to the second.
    command += ["--max-interval", "1", "-l", "INFO"]
    return subprocess.Popen(
        command,
        cwd=PROJECT,
        env={
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": redis_url,
            "MQTTADMIN_ACTIONS_SWEEP_S": str(sweep_s),
        },
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@contextlib.contextmanager
def channel_layers_on(redis_url: str) -> Iterator[None]:
    """Point this process's channel layer (the services' nudges) at `redis_url`."""
    from django.test import override_settings

    layers: dict[str, dict[str, Any]] = {
        "default": {**settings.CHANNEL_LAYERS["default"]},
    }
    layers["default"]["CONFIG"] = {
        **layers["default"]["CONFIG"],
        "hosts": [{"address": redis_url, "socket_timeout": 30}],
    }
    with override_settings(CHANNEL_LAYERS=layers):
        yield


def live_frame_of(
    feed: FeedSocket, publishers: list[StampedPublisher], since: float
) -> bool:
    """Whether a live frame (not a re-sync) since `since` shows one of their topics."""
    return any(
        publisher.topic in text and 'hx-swap-oob="afterbegin"' in text
        for text in feed.texts_since(since)
        for publisher in publishers
    )


def webhook_keys(sink: Any) -> dict[tuple[str, int], set[str]]:
    """The Idempotency-Keys the sink saw, per message (run id, seq)."""
    keys: dict[tuple[str, int], set[str]] = defaultdict(set)
    for request in list(sink.requests):
        body = json.loads(request.body)
        keys[(body["run"], body["seq"])].add(request.headers["Idempotency-Key"])
    return keys


def test_redis_restart_resumes_tasks_and_live_feeds_and_the_portal_stays_up(
    mosquitto: Any, http_sink: Any, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """Proves: with Redis killed and started again empty, (1) a webhook runs once
    in effect for every message published before, during and after the outage
    (messages stored during it keep durable ActionRuns that the sweeper hands to
    the worker once Redis is back), (2) the runtime's nudge listener joins its group
    again by itself, (3) the broker page's live socket gets live frames again
    after reconnecting (and re-syncs the outage's messages from the history), and
    (4) daphne keeps answering /healthz throughout, naming Redis while it is down.
    """
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        missing("DATABASE_URL does not name PostgreSQL")
    if not os.environ.get("REDIS_URL"):
        missing("REDIS_URL is not set")
    broker_process = mosquitto()
    redis = PrivateRedis(tmp_path / "redis")
    queue = f"faults-redis-{uuid.uuid4().hex[:8]}"
    web_port = free_port()
    logs = {
        "worker": tmp_path / "worker.log",
        "daphne": tmp_path / "daphne.log",
        "beat": tmp_path / "beat.log",
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    feed: FeedSocket | None = None
    publishers: list[StampedPublisher] = []
    try:
        redis.start()
        env = {
            "REDIS_URL": redis.url,
            "MQTTADMIN_ACTIONS_QUEUE": queue,
            "MQTTADMIN_ACTIONS_SWEEP_S": str(ACTIONS_SWEEP_S),
        }
        # The private Redis is the worker's alone: it also takes beat's tasks
        # from the default queue.
        processes["worker"] = start_worker(
            "redis-restart",
            f"{queue},celery",
            logs["worker"],
            extra_env=env,
            poll_interval=POLL_INTERVAL,
        )
        processes["daphne"] = start_daphne(web_port, redis.url, logs["daphne"])
        processes["beat"] = start_beat(redis.url, logs["beat"], ACTIONS_SWEEP_S)
        wait_until(
            lambda: "MQTT runtime" in logs["worker"].read_text(),
            START_TIMEOUT,
            "worker started",
        )
        wait_for_port(web_port, START_TIMEOUT, process=processes["daphne"])
        # With a 30 s timer, the broker created next must reach the runtime by a
        # nudge: wait until its listener is in the group.
        group_key = f"asgi:group:{RUNTIME_GROUP}"
        store = redis.client()
        wait_until(lambda: store.exists(group_key), 10, "nudge listener joined")
        store.close()

        with channel_layers_on(redis.url):
            actor = make_superuser()
            broker = running_broker(actor, broker_process.port)
            subscription = subscription_create(
                actor=actor,
                broker=broker,
                name="hook",
                topic_filter="faults/#",
                qos=1,
                actions=[
                    {
                        "type": "webhook",
                        "url": f"{http_sink.url}/hook",
                        "body": WEBHOOK_BODY,
                    }
                ],
            )
            wait_until(
                state_is(broker, "connected", subscribed_topics_count=1),
                15,
                "subscribed",
            )

            client = Client()
            client.force_login(actor)
            cookie = f"sessionid={client.cookies[settings.SESSION_COOKIE_NAME].value}"
            feed = FeedSocket(web_port, f"/ws/brokers/{broker.pk}/", cookie).start()
            wait_until(
                lambda: any("innerHTML" in text for text in feed.texts_since(0)),
                15,
                "the feed's first sync",
            )

            def phase(name: str, count: int = MESSAGES_PER_PHASE) -> StampedPublisher:
                publisher = StampedPublisher(
                    broker_process.port, rate=20, count=count
                ).start()
                publishers.append(publisher)
                publisher.wait_acked(15)
                assert len(publisher.acked) == count, name
                return publisher

            # Before: webhook and live frame, as usual.
            before_at = time.monotonic()
            before = phase("before")
            wait_until(
                lambda: len(webhook_keys(http_sink)) == MESSAGES_PER_PHASE,
                15,
                "webhooks before the outage",
            )
            wait_until(
                lambda: live_frame_of(feed, [before], before_at),
                10,
                "live frames before the outage",
            )

            # The outage: Redis gone for OUTAGE_S at least, messages keep coming.
            redis.kill()
            killed_at = time.monotonic()
            during = phase("during")
            during_report = wait_stored(during, 20)
            assert not during_report.gaps, during_report.as_dict()
            status, health = healthz(web_port)
            assert processes["daphne"].poll() is None
            assert status == 503 and health["failing"] == ["redis"], health
            time.sleep(max(0.0, killed_at + OUTAGE_S - time.monotonic()))
            figures["outage_s"] = round(time.monotonic() - killed_at, 1)
            figures["sweep_s"] = ACTIONS_SWEEP_S
            figures["healthz_during_outage"] = status

            # Back, empty: each part must find its way back on its own.
            redis.start()
            restarted_at = time.monotonic()
            after: list[StampedPublisher] = []
            store = redis.client()

            def expected() -> set[tuple[str, int]]:
                return {
                    (p.run_id, seq) for p in (before, during, *after) for seq in p.acked
                }

            checks = {
                # Live push is at most once, and the socket may still be
                # reconnecting: the loop publishes a little every second until a
                # live frame shows one of those messages.
                "live_feed": lambda: live_frame_of(feed, after, restarted_at),
                "webhooks": lambda: set(webhook_keys(http_sink)) >= expected(),
                "nudges": lambda: store.exists(group_key),
            }
            recovered: dict[str, float] = {}
            probed_at = 0.0
            while len(recovered) < len(checks):
                now = time.monotonic()
                assert now - restarted_at < RECOVERY_TIMEOUT, (
                    f"only {sorted(recovered)} recovered in {RECOVERY_TIMEOUT}s"
                )
                if "live_feed" not in recovered and now - probed_at >= 1:
                    after.append(phase("after", 2))
                    probed_at = now
                for name, check in checks.items():
                    if name not in recovered and check():
                        recovered[name] = round(time.monotonic() - restarted_at, 1)
                time.sleep(0.1)
            store.close()
            figures.update({f"{name}_recovered_s": s for name, s in recovered.items()})

            # A nudge reaches the rejoined listener: far quicker than its timer.
            changed_at = time.monotonic()
            subscription_create(
                actor=actor, broker=broker, name="second", topic_filter="other/#"
            )
            wait_until(
                state_is(broker, "connected", subscribed_topics_count=2),
                POLL_INTERVAL / 3,
                "a nudged subscription after the restart",
            )
            figures["nudge_reaction_s"] = round(time.monotonic() - changed_at, 2)

        # The last probes' actions may still be on their way.
        messages = expected()

        def settled() -> bool:
            runs = ActionRun.objects.filter(subscription=subscription)
            counted = Subscription.objects.filter(pk=subscription.pk).values_list(
                "actions_executed", "actions_failed"
            )[0]
            return (
                not runs.filter(state=ActionRunState.PENDING).exists()
                and sum(counted) >= len(messages)
                and len(webhook_keys(http_sink)) >= len(messages)
            )

        wait_until(settled, 15, "the last probes' actions")
        keys = webhook_keys(http_sink)
        reports = [
            wait_stored(publisher, 10).as_dict()
            for publisher in (before, during, *after)
        ]
        totals = {name: sum(r[name] for r in reports) for name in reports[0]}
        figures.update(
            messages_sent=totals["sent"],
            stored=totals["stored"],
            gaps=totals["gaps"],
            duplicates=totals["duplicates"],
            dead_letters=totals["dead_letters"],
            webhook_requests=len(http_sink.requests),
            webhook_effects=http_sink.effects,
            feed_connections=feed.connections,
        )
        # Every message stored once, none dead-lettered (an error after the commit
        # must not send a stored batch down the poison path a second time).
        assert totals["gaps"] == totals["duplicates"] == 0, totals
        assert totals["dead_letters"] == 0, totals
        assert totals["stored"] == totals["sent"] == len(messages), totals
        # Exactly once in effect: one ActionRun, so one key, per message, each done.
        assert set(keys) == messages
        doubled = {message: sorted(k) for message, k in keys.items() if len(k) > 1}
        assert not doubled, f"acted on by more than one ActionRun: {doubled}"
        assert http_sink.effects == len(messages)
        runs = ActionRun.objects.filter(subscription=subscription)
        assert runs.count() == len(messages)
        assert set(runs.values_list("state", flat=True)) == {ActionRunState.DONE}
        subscription.refresh_from_db()
        assert subscription.actions_executed == len(messages)
        assert subscription.actions_failed == 0
        # The page re-synced from the history on reconnecting: it shows what was
        # stored during the outage, which no live frame carried.
        resyncs = [t for t in feed.texts_since(restarted_at) if "innerHTML" in t]
        assert any(during.topic in text for text in resyncs)
        # The portal stayed up and says so again.
        assert processes["daphne"].poll() is None
        assert healthz(web_port)[0] == 200
    except BaseException:
        for name, log in logs.items():
            if log.exists():
                print(f"--- {name} ---\n{log.read_text(errors='replace')[-6000:]}")
        if feed is not None:
            print(f"--- feed errors ---\n{feed.errors}")
        raise
    finally:
        for publisher in publishers:
            publisher.stop()
        if feed is not None:
            feed.stop()
        for process in processes.values():
            stop_process(process)
        redis.kill()
