"""The runtime's read path: BufferedReadClient against a real Mosquitto, and the
chunked MessageQueue between network threads and the ingest thread."""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from brokers.client import BufferedReadClient
from runtime.message_queue import MessageQueue

pytestmark = pytest.mark.mosquitto


def _payloads() -> list[bytes]:
    # Sizes around and beyond the 64 KiB read chunk, so packets straddle buffer
    # refills, plus empty payloads and lengths needing 1-3 length bytes.
    sizes = [0, 1, 127, 128, 16_383, 16_384, 65_535, 65_536, 65_537, 200_000]
    sizes += [20] * 500
    return [bytes([n % 251]) * size for n, size in enumerate(sizes)]


def _receiver(port: int, qos: int, via_hook: bool) -> tuple[BufferedReadClient, list]:
    received: list[tuple[str, bytes, int]] = []
    client = BufferedReadClient(CallbackAPIVersion.VERSION2, client_id=f"buf-{qos}")
    # QoS 2 always takes paho's own path to on_message, as in the runtime.
    client.on_message = lambda c, u, m: received.append((m.topic, m.payload, m.qos))
    if via_hook:
        client.on_publish_received = lambda topic, payload, q, retain, mid, props: (
            received.append((topic, bytes(payload), q))
        )
    subscribed = threading.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", port)
    client.subscribe("buf/#", qos)
    client.loop_start()
    assert subscribed.wait(5)
    return client, received


@pytest.mark.parametrize(
    ("qos", "via_hook"), [(0, True), (1, True), (2, True), (1, False)]
)
def test_every_message_arrives_whole_and_in_order(
    plain_broker: Any, qos: int, via_hook: bool
) -> None:
    client, received = _receiver(plain_broker.port, qos, via_hook)
    try:
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="buf-pub")
        publisher.connect("127.0.0.1", plain_broker.port)
        publisher.loop_start()
        payloads = _payloads()
        infos = [
            publisher.publish(f"buf/{n}", p, qos=qos) for n, p in enumerate(payloads)
        ]
        for info in infos:
            info.wait_for_publish(10)
        deadline = time.monotonic() + 15
        while len(received) < len(payloads) and time.monotonic() < deadline:
            time.sleep(0.05)
        publisher.disconnect()
        publisher.loop_stop()
    finally:
        client.disconnect()
        client.loop_stop()
    assert [topic for topic, _, _ in received] == [
        f"buf/{n}" for n in range(len(payloads))
    ]
    assert [payload for _, payload, _ in received] == payloads
    assert {q for _, _, q in received} == {qos}


def test_after_read_hands_over_each_burst(plain_broker: Any) -> None:
    bursts: list[int] = []
    pending: list[str] = []
    client = BufferedReadClient(CallbackAPIVersion.VERSION2, client_id="buf-burst")
    client.on_publish_received = lambda topic, *rest: pending.append(topic)

    def hand_over() -> None:
        if pending:
            bursts.append(len(pending))
            pending.clear()

    client.after_read = hand_over
    client.connect("127.0.0.1", plain_broker.port)
    client.subscribe("buf/#", 0)
    client.loop_start()
    try:
        time.sleep(0.3)
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="buf-pub2")
        publisher.connect("127.0.0.1", plain_broker.port)
        publisher.loop_start()
        for n in range(2000):
            publisher.publish(f"buf/{n}", b"x" * 10)
        deadline = time.monotonic() + 10
        while sum(bursts) < 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        publisher.disconnect()
        publisher.loop_stop()
    finally:
        client.disconnect()
        client.loop_stop()
    assert sum(bursts) == 2000
    # Reads are batched: far fewer hand-overs than messages.
    assert len(bursts) < 2000


def test_message_queue_bounds_by_messages_not_chunks() -> None:
    q: MessageQueue[int] = MessageQueue(maxsize=5)
    assert q.put_many([1, 2, 3], timeout=0)
    assert not q.put_many([4, 5, 6], timeout=0.05)  # 6 > 5: waits, then gives up
    assert q.qsize() == 3
    assert q.get_many(2) == [1, 2]
    assert q.put_many([4, 5, 6], timeout=0)
    assert q.qsize() == 4 and not q.full()
    assert q.put(7, timeout=0)
    assert q.full()
    assert q.get_many(10, timeout=0) == [3, 4, 5, 6, 7]
    assert q.get_many(10, timeout=0.01) == []
    # A chunk larger than the bound goes into an empty queue instead of waiting
    # forever.
    assert q.put_many(list(range(12)), timeout=0)
    assert q.qsize() == 12


def test_message_queue_blocked_producer_resumes_when_consumer_takes() -> None:
    q: MessageQueue[int] = MessageQueue(maxsize=2)
    q.put_many([1, 2])
    done = threading.Event()

    def produce() -> None:
        q.put_many([3, 4], timeout=5)
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    time.sleep(0.1)
    assert q.full() and not done.is_set()
    assert q.get_many(5) == [1, 2]
    assert done.wait(5)
    thread.join(5)
    assert q.get_many(5) == [3, 4]
