"""Pieces the fault tests share: a publisher that stamps every message with a run
id and a sequence number, the report of what was stored (gaps, duplicates), and
runtime worker processes that a test may kill.

"Sent" counts only messages the broker acknowledged (PUBACK): a message the
broker never accepted is not the portal's to lose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import paho.mqtt.client as mqtt
from django.conf import settings

from history.models import StoredMessage
from runtime.models import DeadLetter

PROJECT = Path(__file__).resolve().parents[2]


class StampedPublisher:
    """Publishes QoS 1 messages `{"run": id, "seq": n}` at `rate` per second on
    `<prefix>/<run>/<n % 4>` from a thread of its own, reconnecting through
    broker restarts; `acked` holds the sequence numbers the broker acknowledged."""

    def __init__(
        self, port: int, rate: float, count: int, prefix: str = "faults"
    ) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.topic = f"{prefix}/{self.run_id}"
        self.rate = rate
        self.count = count
        self.acked: set[int] = set()
        self.published = 0
        self._mids: dict[int, int] = {}
        self._early: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.finished = threading.Event()
        # A persistent session: paho sends unacknowledged messages again after
        # a reconnect, so a broker restart costs the publisher nothing either.
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"pub-{self.run_id}",
            clean_session=False,
        )
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        # paho annotates whole seconds; it takes a float (its delays are time math).
        self.client.reconnect_delay_set(0.1, 1)  # type: ignore[arg-type]
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> StampedPublisher:
        self._thread.start()
        return self

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        with self._lock:
            seq = self._mids.pop(mid, None)
            if seq is None:
                # Acknowledged before publish() returned its mid to _run.
                self._early.add(mid)
            else:
                self.acked.add(seq)

    def _run(self) -> None:
        started = time.monotonic()
        for seq in range(self.count):
            if self._stop.is_set():
                break
            due = started + seq / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            payload = json.dumps({"run": self.run_id, "seq": seq})
            # Not under self._lock: paho calls on_publish holding its own mutex,
            # which publish() takes too.
            info = self.client.publish(f"{self.topic}/{seq % 4}", payload, qos=1)
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                    self.acked.add(seq)
                else:
                    self._mids[info.mid] = seq
            self.published = seq + 1
        self.finished.set()

    def wait_acked(self, timeout: float) -> None:
        """Until every published message is acknowledged (or `timeout`)."""
        self.finished.wait(timeout)
        deadline = time.monotonic() + timeout
        while len(self.acked) < self.published and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class SequenceReport:
    sent: int
    stored: int
    distinct: int
    gaps: list[int] = field(default_factory=list)
    duplicates: int = 0
    dead_letters: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "stored": self.stored,
            "gaps": len(self.gaps),
            "duplicates": self.duplicates,
            "dead_letters": self.dead_letters,
        }


def stored_sequence(publisher: StampedPublisher) -> list[int]:
    rows = StoredMessage.objects.filter(
        topic__startswith=f"{publisher.topic}/"
    ).values_list("text", flat=True)
    return [json.loads(text)["seq"] for text in rows]


def sequence_report(
    publisher: StampedPublisher, expected: set[int] | None = None
) -> SequenceReport:
    """Gaps: acknowledged sequence numbers (or `expected`) never stored."""
    seqs = stored_sequence(publisher)
    distinct = set(seqs)
    wanted = publisher.acked if expected is None else expected
    return SequenceReport(
        sent=len(publisher.acked),
        stored=len(seqs),
        distinct=len(distinct),
        gaps=sorted(wanted - distinct),
        duplicates=len(seqs) - len(distinct),
        dead_letters=DeadLetter.objects.filter(
            topic__startswith=f"{publisher.topic}/"
        ).count(),
    )


def wait_stored(
    publisher: StampedPublisher, timeout: float, expected: set[int] | None = None
) -> SequenceReport:
    """Poll until nothing acknowledged is missing (or `timeout`); the report."""
    deadline = time.monotonic() + timeout
    while True:
        report = sequence_report(publisher, expected)
        if not report.gaps or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


def database_url() -> str:
    """The test database (not the configured one), for worker processes."""
    db = settings.DATABASES["default"]
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return (
        f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
        f"/{db['NAME']}"
    )


def start_worker(
    name: str,
    queue: str,
    log: Path,
    *,
    runtime: bool = True,
    extra_env: dict[str, str] | None = None,
    lease_ttl: float = 3,
    poll_interval: float = 1,
    pool: str = "solo",
    concurrency: int = 1,
) -> subprocess.Popen[bytes]:
    """`celery -A mqttadmin worker` (with the MQTT runtime unless `runtime` is
    False) on the test database, consuming only `queue`, logging to `log`."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MQTTADMIN_RUNTIME_LEASE_TTL": str(lease_ttl),
        "MQTTADMIN_RUNTIME_POLL_INTERVAL": str(poll_interval),
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "celery", "-A", "mqttadmin", "worker"]
    if runtime:
        command.append("--mqtt-runtime")
    command += [
        "-P",
        pool,
        "--concurrency",
        str(concurrency),
        "-n",
        f"{name}@%h",
        # A queue of its own: these workers must not run other tests' tasks.
        "-Q",
        queue,
        "--without-heartbeat",
        "--without-mingle",
        "--without-gossip",
        "-l",
        "INFO",
    ]
    return subprocess.Popen(
        command,
        cwd=PROJECT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def rss_mib(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default), in MiB."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
