"""The runtime's live feed: one frame per broker per tick with the newest messages
and a skipped count, bounded memory, and the whole path from a real Mosquitto
through the runtime to a browser's socket."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.models import Broker, BrokerStatus
from brokers.services import broker_control, broker_create, subscription_create
from mqttadmin.pipeline import ReceivedMessage
from runtime.live_feed import CAP, PAYLOAD_LIMIT, LiveFeed
from runtime.manager import Runtime
from tests.factories import make_product, make_superuser, make_user
from tests.live.conftest import receive_until, session_of, socket
from tests.runtime_support import wait_until


def message(broker_id: int, topic: str, payload: bytes = b"x") -> ReceivedMessage:
    return ReceivedMessage(
        broker_id=broker_id,
        topic=topic,
        payload=payload,
        qos=0,
        retain=False,
        received_at=timezone.now(),
    )


class RecordingFeed(LiveFeed):
    """A LiveFeed whose frames are kept, grouped by the tick that sent them."""

    def __init__(self, **options: Any) -> None:
        self.ticks: list[list[tuple[str, dict[str, Any]]]] = []
        self._current: list[tuple[str, dict[str, Any]]] = []
        super().__init__(send=lambda g, m: self._current.append((g, m)), **options)

    def flush(self, force: bool = False) -> int:
        self._current = []
        sent = super().flush(force)
        self.ticks.append(self._current)
        return sent


def test_one_frame_per_broker_per_tick_with_the_newest_and_a_skipped_count() -> None:
    feed = RecordingFeed()
    for batch in range(10):
        feed.offer(message(1, f"t/{batch * 100 + i}") for i in range(100))
    feed.offer(message(2, f"u/{i}") for i in range(5))
    assert feed.flush() == 2
    frames = dict(feed.ticks[-1])
    assert sorted(frames) == ["broker.1", "broker.2"]
    first = frames["broker.1"]
    assert first["count"] == 1000
    assert first["skipped"] == 1000 - CAP
    assert [m["topic"] for m in first["messages"]] == [
        f"t/{i}" for i in range(1000 - CAP, 1000)
    ]
    assert frames["broker.2"]["skipped"] == 0
    assert len(frames["broker.2"]["messages"]) == 5
    # Nothing new: nothing sent.
    assert feed.flush() == 0


def test_a_broker_gets_at_most_one_frame_per_tick() -> None:
    now = [100.0]
    feed = RecordingFeed(clock=lambda: now[0])
    feed.offer([message(1, "a/0")])
    assert feed.flush() == 1  # quiet before: sent at once
    for index in range(1, 4):
        feed.offer([message(1, f"a/{index}")] * 30)
        assert feed.flush() == 0  # within the tick: held back
    now[0] += feed.tick / 2
    assert feed.flush() == 0
    feed.offer([message(2, "b/0")])
    assert feed.flush() == 1  # another broker has its own tick
    now[0] += feed.tick  # (a whole one more: float halves may not add up)
    assert feed.flush() == 1
    ((group, frame),) = feed.ticks[-1]
    assert group == "broker.1"
    assert frame["count"] == 90
    assert frame["skipped"] == 90 - CAP
    assert frame["messages"][-1]["topic"] == "a/3"


def test_ticker_never_sends_two_frames_of_a_broker_in_one_tick() -> None:
    feed = RecordingFeed(tick=0.02)
    feed.start()
    offered = 0
    try:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            feed.offer(message(7, "hot/topic") for _ in range(37))
            offered += 37
            time.sleep(0.001)
    finally:
        feed.stop()
    frames = [m for tick in feed.ticks for _, m in tick]
    for tick in feed.ticks:
        groups = [group for group, _ in tick]
        assert len(groups) == len(set(groups))
    assert len(frames) > 1
    # Coalesced, not lost from the count: shown + skipped is everything offered.
    assert sum(f["count"] for f in frames) == offered
    assert sum(len(f["messages"]) + f["skipped"] for f in frames) == offered
    assert all(len(f["messages"]) <= CAP for f in frames)


def test_memory_is_bounded_by_the_cap_and_payloads_are_cut() -> None:
    feed = RecordingFeed()
    big = b"y" * (PAYLOAD_LIMIT * 4)
    for _ in range(50):
        feed.offer(message(3, "big", big) for _ in range(1000))
    pending = feed._pending[3]
    assert len(pending.newest) == CAP
    feed.flush()
    ((_, frame),) = feed.ticks[-1]
    assert frame["count"] == 50_000
    assert all(len(m["text"]) == PAYLOAD_LIMIT for m in frame["messages"])
    assert all(m["size"] == len(big) for m in frame["messages"])


def test_binary_payloads_travel_as_base64_and_sys_topics_stay_out() -> None:
    feed = RecordingFeed()
    feed.offer(
        [message(4, "bin", b"\x00\xff\x01"), message(4, "$SYS/broker/uptime", b"9")]
    )
    feed.flush()
    ((_, frame),) = feed.ticks[-1]
    assert [m["topic"] for m in frame["messages"]] == ["bin"]
    assert frame["messages"][0]["text"] is None
    assert frame["messages"][0]["data"] == "AP8B"


# --- end to end: Mosquitto -> runtime -> feed -> socket --------------------------


@pytest.mark.mosquitto
@pytest.mark.django_db(transaction=True)
def test_published_messages_and_status_changes_reach_the_socket(
    mosquitto: Any, sqlite_readers_do_not_wait: None
) -> None:
    broker_process = mosquitto()
    root = make_superuser()
    viewer = make_user()
    product = make_product(viewer=viewer)
    broker = broker_create(
        actor=root,
        product=product,
        name="Line",
        host="127.0.0.1",
        port=broker_process.port,
    )
    subscription_create(actor=root, broker=broker, name="all", topic_filter="#")
    runtime = Runtime("live-test", poll_interval=0.2)
    runtime.start()
    try:
        wait_until(
            lambda: BrokerStatus.objects.filter(
                broker=broker, state="connected", subscribed_topics_count=1
            ).exists(),
            10,
            "the runtime to connect and subscribe",
        )
        client = session_of(viewer, product)

        def publish(topic: str) -> None:
            publish_messages(
                ConnectionSettings(host="127.0.0.1", port=broker_process.port),
                [OutgoingMessage(topic=topic, payload=b'{"t": 21.5}', qos=1)],
            )

        def disconnect() -> None:
            current = Broker.objects.get(pk=broker.pk)
            broker_control(actor=root, broker=current, action="disconnect")

        async def scenario() -> None:
            communicator = socket(f"/ws/brokers/{broker.pk}/", client)
            assert (await communicator.connect())[0]
            await communicator.send_json_to({"action": "feed", "filter": "plant/#"})
            await receive_until(communicator, lambda f: 'id="live-rows"' in f)
            await sync_to_async(publish, thread_sensitive=False)("other/topic")
            await sync_to_async(publish, thread_sensitive=False)("plant/boiler")
            live = await receive_until(communicator, lambda f: "plant/boiler" in f)
            assert "21.5" in live
            assert "other/topic" not in live
            # A status change reaches the same socket, rendered as the page does.
            await sync_to_async(disconnect, thread_sensitive=False)()
            status = await receive_until(
                communicator,
                lambda f: 'id="broker-status"' in f and "Disconnected" in f,
                timeout=10,
            )
            assert 'hx-swap-oob="true"' in status
            await communicator.disconnect()

        async_to_sync(scenario)()
        assert runtime.live.stats.frames >= 1
    finally:
        runtime.stop()
    wait_until(
        lambda: (
            not [t for t in threading.enumerate() if t.name.startswith("mqtt-runtime-")]
        ),
        5,
        "runtime threads to end",
    )
