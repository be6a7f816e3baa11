"""The live feed: committed messages to the browsers, one frame per broker per tick.

The ingest thread hands every committed batch to `LiveFeed.offer`, which only
appends to per-broker ring buffers under a short lock (it never touches the channel
layer, so a slow layer cannot hold ingest back). A ticker thread sends, per broker
that received anything, one "broker.messages" frame with the newest CAP messages and
how many older ones it skipped, and never two frames of a broker within TICK
seconds. Memory is bounded by brokers x CAP messages of at most PAYLOAD_LIMIT bytes.

Live push is at most once by design: a frame the layer drops (full channel, a
browser reconnecting) is gone, and the page re-syncs from the history instead.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mqttadmin.frames import BROKER_MESSAGES
from mqttadmin.pipeline import ReceivedMessage
from mqttadmin.realtime import broker_group, group_send

logger = logging.getLogger(__name__)

TICK = 0.1
# The newest messages a frame carries: 250 a second is more than anyone reads, and
# each row is rendered into the frame's HTML on the web server's event loop
# (about 0.3 ms a row), so a larger cap adds latency to every frame.
CAP = 25
# A live row shows a preview; the full payload is in the history.
PAYLOAD_LIMIT = 4096
MESSAGES_FRAME = BROKER_MESSAGES

Sender = Callable[[str, dict[str, Any]], None]


# --- The aggregator ------------------------------------------------------------


@dataclass
class _Pending:
    newest: deque[ReceivedMessage]
    count: int = 0


@dataclass
class FeedStats:
    """What the feed did since it started (read by the benchmark and tests)."""

    frames: int = 0
    messages: int = 0
    skipped: int = 0
    per_broker_frames: dict[int, int] = field(default_factory=dict)


def message_frame_item(message: ReceivedMessage) -> dict[str, Any]:
    """One message as plain types (the Redis layer serialises with msgpack)."""
    payload = message.payload[:PAYLOAD_LIMIT]
    item: dict[str, Any] = {
        "topic": message.topic,
        "qos": message.qos,
        "retain": message.retain,
        "received_at": message.received_at.isoformat(),
        "size": len(message.payload),
    }
    try:
        item["text"] = payload.decode("utf-8") if b"\x00" not in payload else None
    except UnicodeDecodeError:
        # A cut may split a multi-byte character: keep what decodes.
        item["text"] = (
            payload.decode("utf-8", "ignore")
            if len(message.payload) > PAYLOAD_LIMIT
            else None
        )
    if item["text"] is None:
        item["data"] = base64.b64encode(payload).decode("ascii")
    if message.properties:
        item["properties"] = message.properties
    return item


class LiveFeed:
    """Coalesces committed messages into at most one frame per broker per tick.

    A broker quiet for a tick is sent at once when a batch arrives (the ticker
    wakes on `offer`), later batches wait for the rest of the tick: the rate stays
    bounded without adding a tick of latency to a calm stream.
    """

    def __init__(
        self,
        tick: float = TICK,
        cap: int = CAP,
        send: Sender | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tick = tick
        self.cap = cap
        self._send = send or group_send
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._last_sent: dict[int, float] = {}
        self._arrived = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = FeedStats()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="mqtt-runtime-live-feed", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is pending, then end the ticker."""
        self._stopping.set()
        self._arrived.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the live feed thread did not stop in %ss", timeout)

    def offer(self, messages: Iterable[ReceivedMessage]) -> None:
        """Take a committed batch. Never blocks on the channel layer or the network."""
        by_broker: dict[int, list[ReceivedMessage]] = {}
        for message in messages:
            if message.topic.startswith("$SYS/"):
                continue  # broker statistics, shown on their own tab, not traffic
            by_broker.setdefault(message.broker_id, []).append(message)
        if not by_broker:
            return
        with self._lock:
            for broker_id, items in by_broker.items():
                pending = self._pending.get(broker_id)
                if pending is None:
                    pending = self._pending[broker_id] = _Pending(
                        deque(maxlen=self.cap)
                    )
                # Only the newest `cap` of a batch can survive the ring buffer.
                pending.newest.extend(items[-self.cap :])
                pending.count += len(items)
        self._arrived.set()

    def flush(self, force: bool = False) -> int:
        """Send one frame per broker whose tick has passed since its last frame
        (every pending broker with `force`); returns the frames sent."""
        now = self._clock()
        with self._lock:
            due = [
                broker_id
                for broker_id in self._pending
                if force or now - self._last_sent.get(broker_id, -1e9) >= self.tick
            ]
            pending = {broker_id: self._pending.pop(broker_id) for broker_id in due}
            for broker_id in due:
                self._last_sent[broker_id] = now
        for broker_id, entry in pending.items():
            newest = list(entry.newest)
            skipped = entry.count - len(newest)
            frame = {
                "type": MESSAGES_FRAME,
                "broker_id": broker_id,
                "count": entry.count,
                "skipped": skipped,
                "messages": [message_frame_item(m) for m in newest],
            }
            self._send(broker_group(broker_id), frame)
            self.stats.frames += 1
            self.stats.messages += len(newest)
            self.stats.skipped += skipped
            self.stats.per_broker_frames[broker_id] = (
                self.stats.per_broker_frames.get(broker_id, 0) + 1
            )
        return len(pending)

    def _next_due(self) -> float:
        """Seconds until the earliest pending broker may be sent (tick if none)."""
        now = self._clock()
        with self._lock:
            waits = [
                self._last_sent.get(broker_id, -1e9) + self.tick - now
                for broker_id in self._pending
            ]
        return max(0.0, min(waits)) if waits else self.tick

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._arrived.wait(self._next_due())
            self._arrived.clear()
            try:
                self.flush()
            except Exception:
                logger.exception("the live feed failed to send; going on")
            # Brokers that went quiet need no memory of their last frame.
            if len(self._last_sent) > 4 * max(len(self._pending), 256):
                cutoff = self._clock() - self.tick
                with self._lock:
                    self._last_sent = {
                        k: v for k, v in self._last_sent.items() if v >= cutoff
                    }
        try:
            self.flush(force=True)
        except Exception:
            logger.exception("the live feed failed to send its last frames")
