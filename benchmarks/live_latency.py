"""Live feed latency benchmark: from an MQTT publish to the browser's WebSocket frame.

    .venv/bin/python benchmarks/live_latency.py --rate 1000 --seconds 20
    .venv/bin/python benchmarks/live_latency.py --rate 5000 --seconds 30
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mqttadmin_bench \\
    REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python benchmarks/live_latency.py --mode distributed --rate 1000

Starts its own Mosquitto and the portal in one of two set-ups:
  embedded     `manage.py serve` (Daphne, in-memory channel layer, runtime in the
               same process), as `make run` runs it;
  distributed  `daphne mqttadmin.asgi:application` plus
               `celery -A mqttadmin worker --mqtt-runtime -P solo`, talking through
               Redis (needs REDIS_URL, and DATABASE_URL for a shared database).
A logged-in WebSocket client asks the broker's socket for the feed (as the Activity
tab does), a publisher sends `seq=N ts=<time>` messages at a fixed rate, and every
message that arrives in a frame gives one latency sample (receive time - ts). It
prints p50/p95/p99, frames, the messages shown and skipped (the feed keeps the newest
25 per broker per 100 ms tick), and the server processes' RSS over time.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, Mosquitto, free_port, setup_django, wait_for_port

TOPIC = "bench/live"
SAMPLE = re.compile(r"seq=(\d+) ts=([0-9.]+)")
SKIPPED = re.compile(r'data-skipped="(\d+)"')
PYTHON = sys.executable


@dataclass
class Result:
    mode: str
    rate: int
    published: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    frames: int = 0
    skipped: int = 0
    rss_mib: list[tuple[float, float]] = field(default_factory=list)
    publish_seconds: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the portal's side -------------------------------------------------------------


def prepare_database(broker_port: int) -> tuple[int, str]:
    """Migrate, create a user, a product and a broker subscribed to bench/#; return
    the broker id and a logged-in session cookie."""
    setup_django()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from brokers.models import Broker
    from brokers.services import broker_create, subscription_create
    from mqttadmin.models import Membership, Product

    call_command("migrate", interactive=False, verbosity=0)
    Broker.objects.filter(name="live-bench").delete()
    user, _ = get_user_model().objects.get_or_create(username="live-bench")
    product, _ = Product.objects.get_or_create(
        slug="live-bench", defaults={"name": "Live bench"}
    )
    Membership.objects.get_or_create(product=product, user=user, role="viewer")
    broker = broker_create(
        actor=None,
        product=product,
        name="live-bench",
        host="127.0.0.1",
        port=broker_port,
    )
    subscription_create(actor=None, broker=broker, name="bench", topic_filter="bench/#")
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    from django.conf import settings

    return broker.pk, client.cookies[settings.SESSION_COOKIE_NAME].value


def wait_connected(broker_id: int, timeout: float = 30.0) -> None:
    from brokers.models import BrokerStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if BrokerStatus.objects.filter(
            broker_id=broker_id, state="connected", subscribed_topics_count__gte=1
        ).exists():
            return
        time.sleep(0.2)
    raise SystemExit("the runtime did not connect the benchmark broker")


def start_servers(mode: str, port: int, env: dict[str, str]) -> list[subprocess.Popen]:
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if mode == "embedded":
        command = [
            PYTHON,
            "manage.py",
            "serve",
            "--no-local-broker",
            "--no-demo",
            "--port",
            str(port),
        ]
        return [subprocess.Popen(command, cwd=ROOT, env=env, **quiet)]
    daphne = [
        str(Path(PYTHON).parent / "daphne"),
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "mqttadmin.asgi:application",
    ]
    worker = [
        str(Path(PYTHON).parent / "celery"),
        "-A",
        "mqttadmin",
        "worker",
        "--mqtt-runtime",
        "-P",
        "solo",
        "--loglevel",
        "warning",
    ]
    return [
        subprocess.Popen(daphne, cwd=ROOT, env=env, **quiet),
        subprocess.Popen(worker, cwd=ROOT, env=env, **quiet),
    ]


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


# --- the browser's side and the publisher -----------------------------------------


class FeedSocket:
    """A minimal RFC 6455 client (text frames), enough to read the feed: the
    project has no WebSocket client library, and autobahn is bound to Twisted once
    Django loaded Daphne."""

    def __init__(self, port: int, path: str, cookie: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nCookie: sessionid={cookie}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed during the handshake")
            head += chunk
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.decode("latin-1"))

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def receive_text(self) -> str | None:
        """The next text message; None when the server closed."""
        parts: list[bytes] = []
        while True:
            first, second = self._read(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read(8))
            payload = self._read(length)
            if opcode == 0x8:
                return None
            if opcode == 0x9:
                continue  # pings: Daphne's keepalive, answered by not caring
            if opcode in (0x1, 0x0):
                parts.append(payload)
                if first & 0x80:
                    return b"".join(parts).decode("utf-8", "replace")

    def close(self) -> None:
        self.sock.close()


def watch_feed(
    port: int,
    broker_id: int,
    cookie: str,
    result: Result,
    ready: threading.Event,
    done: threading.Event,
) -> None:
    """Ask for the feed as the Activity tab does, then time each row that arrives."""
    feed = FeedSocket(port, f"/ws/brokers/{broker_id}/", cookie)
    feed.send_text(json.dumps({"action": "feed", "filter": "bench/#"}))
    feed.sock.settimeout(0.5)
    try:
        while not done.is_set():
            try:
                html = feed.receive_text()
            except TimeoutError:
                continue
            now = time.time()
            if html is None:
                return
            if 'id="live-rows"' not in html:
                continue
            if 'hx-swap-oob="innerHTML"' in html:
                ready.set()  # the re-sync: live frames follow
                continue
            result.frames += 1
            for _seq, sent in SAMPLE.findall(html):
                result.latencies_ms.append((now - float(sent)) * 1000)
            skipped = SKIPPED.findall(html)
            if skipped:
                result.skipped = int(skipped[-1])
    finally:
        feed.close()


def publish_at_rate(port: int, rate: int, seconds: float, result: Result) -> None:
    """QoS 0 at `rate` messages/s, in 10 ms slices, each stamped with its time."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="live-bench-pub")
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    per_slice = max(1, rate // 100)
    started = time.monotonic()
    seq = 0
    slice_index = 0
    while time.monotonic() - started < seconds:
        for _ in range(per_slice):
            client.publish(TOPIC, f"seq={seq} ts={time.time():.6f}", qos=0)
            seq += 1
        slice_index += 1
        pause = started + slice_index * 0.01 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    result.publish_seconds = time.monotonic() - started
    result.published = seq
    client.loop_stop()
    client.disconnect()


def run(mode: str, rate: int, seconds: float, env: dict[str, str]) -> Result:
    result = Result(mode, rate)
    broker = Mosquitto()
    servers: list[subprocess.Popen] = []
    try:
        broker_id, cookie = prepare_database(broker.port)
        port = free_port()
        servers = start_servers(mode, port, env)
        wait_for_port(port, timeout=60)
        wait_connected(broker_id)
        pids = [p.pid for p in servers]
        ready, done = threading.Event(), threading.Event()
        watcher = threading.Thread(
            target=watch_feed,
            args=(port, broker_id, cookie, result, ready, done),
            daemon=True,
        )
        watcher.start()
        if not ready.wait(30):
            raise SystemExit("the feed did not answer")
        sampling = threading.Event()

        def sample_rss() -> None:
            started = time.monotonic()
            while not sampling.is_set():
                result.rss_mib.append((time.monotonic() - started, rss_mib(pids)))
                sampling.wait(1.0)

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        publish_at_rate(broker.port, rate, seconds, result)
        time.sleep(3)  # the last ticks and batches
        sampling.set()
        done.set()
        watcher.join(5)
        sampler.join(5)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        broker.stop()
    return result


def report(result: Result) -> None:
    shown = len(result.latencies_ms)
    print(
        f"\n== {result.mode}, {result.rate:,} msg/s for {result.publish_seconds:.1f}s"
    )
    print(
        f"published {result.published:,}; frames {result.frames:,} "
        f"({result.frames / max(result.publish_seconds, 1e-9):.1f}/s); "
        f"shown {shown:,}; skipped {result.skipped:,}"
    )
    if shown:
        print(
            f"latency ms: p50 {result.percentile(0.50):.1f}  "
            f"p95 {result.percentile(0.95):.1f}  p99 {result.percentile(0.99):.1f}  "
            f"max {max(result.latencies_ms):.1f}  mean "
            f"{statistics.fmean(result.latencies_ms):.1f}"
        )
    if result.rss_mib:
        points = result.rss_mib[:: max(1, len(result.rss_mib) // 8)]
        print(
            "server RSS MiB over time: "
            + ", ".join(f"{t:.0f}s {m:.0f}" for t, m in points)
            + f" (last {result.rss_mib[-1][1]:.0f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="messages per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--mode", choices=["embedded", "distributed", "both"], default="embedded"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mqttadmin-live-"))
    # The servers' var/ (keys, files) stays out of the project's own.
    os.environ.setdefault("MQTTADMIN_VAR_DIR", str(workdir))
    if not os.environ.get("DATABASE_URL"):
        # Both processes must see one database: a SQLite file, not memory.
        os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'db.sqlite3'}"
    env = dict(os.environ)
    modes = ["embedded", "distributed"] if args.mode == "both" else [args.mode]
    for mode in modes:
        mode_env = dict(env)
        if mode == "embedded":
            mode_env.pop("REDIS_URL", None)
        elif not env.get("REDIS_URL"):
            raise SystemExit("distributed mode needs REDIS_URL (and DATABASE_URL)")
        # This process writes the rows the servers read; its own channel layer is
        # not used.
        report(run(mode, args.rate, args.seconds, mode_env))


if __name__ == "__main__":
    main()
