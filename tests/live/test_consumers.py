"""The WebSocket consumers through the real ASGI stack: who may open which socket,
what they may do on it, filters, re-sync from history and logout."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.contrib.sessions.models import Session
from django.utils import timezone

from alerts.models import Alert
from brokers.models import Broker, BrokerStatus
from history.models import StoredMessage, Topic
from mqttadmin.frames import BROKER_MESSAGES as MESSAGES_FRAME
from mqttadmin.live import CLOSE_FORBIDDEN
from mqttadmin.models import AuditEntry, Membership
from mqttadmin.realtime import broker_group
from tests.factories import make_connected_broker
from tests.live.conftest import (
    closed_with,
    frames_for,
    receive_until,
    session_of,
    socket,
)

pytestmark = pytest.mark.django_db(transaction=True)


def frame(broker: Broker, *topics: str, skipped: int = 0) -> dict[str, Any]:
    """A frame as the runtime's LiveFeed sends it."""
    now = timezone.now().isoformat()
    return {
        "type": MESSAGES_FRAME,
        "broker_id": broker.pk,
        "count": len(topics) + skipped,
        "skipped": skipped,
        "messages": [
            {
                "topic": topic,
                "qos": 0,
                "retain": False,
                "received_at": now,
                "size": len(f"payload of {topic}"),
                "text": f"payload of {topic}",
            }
            for topic in topics
        ],
    }


async def group_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(group, message)


# --- who may connect ---------------------------------------------------------


def test_anonymous_socket_is_closed_with_4403(world: dict[str, Any]) -> None:
    broker = make_connected_broker(world["product"])

    async def scenario() -> None:
        for path in (f"/ws/brokers/{broker.pk}/", "/ws/overview/"):
            communicator = socket(path)
            connected, _ = await communicator.connect()
            assert connected
            assert await closed_with(communicator) == CLOSE_FORBIDDEN
            await communicator.disconnect()

    async_to_sync(scenario)()


def test_member_of_another_product_is_closed_with_4403(world: dict[str, Any]) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["outsider"])

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        await communicator.connect()
        assert await closed_with(communicator) == CLOSE_FORBIDDEN
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_unknown_broker_is_closed_with_4403(world: dict[str, Any]) -> None:
    client = session_of(world["users"]["admin"])

    async def scenario() -> None:
        communicator = socket("/ws/brokers/999999/", client)
        await communicator.connect()
        assert await closed_with(communicator) == CLOSE_FORBIDDEN
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_foreign_origin_is_refused(world: dict[str, Any]) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["admin"])

    async def scenario() -> None:
        for origin in (b"http://evil.example", None):
            communicator = socket(f"/ws/brokers/{broker.pk}/", client, origin=origin)
            connected, _ = await communicator.connect()
            assert not connected
            await communicator.disconnect()

    async_to_sync(scenario)()


def test_viewer_gets_the_status_block_without_write_buttons(
    world: dict[str, Any],
) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["viewer"])

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        connected, _ = await communicator.connect()
        assert connected
        html = await receive_until(communicator, lambda f: 'id="broker-status"' in f)
        assert 'hx-swap-oob="true"' in html
        assert "Connected" in html
        assert 'name="action"' not in html  # no connect/disconnect for viewers
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_operator_gets_controls_with_the_page_csrf_token(
    world: dict[str, Any],
) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["operator"])
    client.cookies["csrftoken"] = "a" * 32

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        headers = communicator.scope["headers"]
        assert isinstance(headers, list)
        headers.append((b"cookie", b"csrftoken=" + b"a" * 32))
        await communicator.connect()
        html = await receive_until(communicator, lambda f: 'id="broker-status"' in f)
        assert 'value="disconnect"' in html
        await communicator.disconnect()

    async_to_sync(scenario)()


def _publish_over_socket(world: dict[str, Any], role: str, topic: str) -> str:
    """Send a publish request as a member with `role`; the result fragment."""
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"][role])
    result: list[str] = []

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        await communicator.connect()
        await receive_until(communicator, lambda f: 'id="broker-status"' in f)
        await communicator.send_json_to(
            {"action": "publish", "topic": topic, "payload": "on"}
        )
        result.append(
            await receive_until(communicator, lambda f: "live-publish-result" in f)
        )
        await communicator.disconnect()

    async_to_sync(scenario)()
    return result[0]


def test_viewer_cannot_publish_over_the_socket(world: dict[str, Any]) -> None:
    assert "operator role" in _publish_over_socket(world, "viewer", "plant/cmd")
    assert not AuditEntry.objects.filter(action="broker.publish").exists()


def test_bad_publish_request_names_the_field_and_publishes_nothing(
    world: dict[str, Any],
) -> None:
    # Named by the label the publish box shows, not the request's key.
    assert "Topic:" in _publish_over_socket(world, "operator", "plant/#")
    assert not AuditEntry.objects.filter(action="broker.publish").exists()


# --- the feed ------------------------------------------------------------------


def test_feed_starts_from_history_then_streams_only_matching_topics(
    world: dict[str, Any],
) -> None:
    broker = make_connected_broker(world["product"])
    now = timezone.now()
    for index, topic in enumerate(["plant/a", "other/x", "plant/b"]):
        StoredMessage.objects.create(
            broker=broker,
            topic=topic,
            text=f"stored {topic}",
            received_at=now - datetime.timedelta(seconds=10 - index),
        )
    client = session_of(world["users"]["viewer"])

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        await communicator.connect()
        await receive_until(communicator, lambda f: 'id="broker-status"' in f)
        await communicator.send_json_to({"action": "feed", "filter": "plant/#"})
        resync = await receive_until(communicator, lambda f: 'id="live-rows"' in f)
        assert 'hx-swap-oob="innerHTML"' in resync
        assert resync.index("stored plant/b") < resync.index("stored plant/a")
        assert "other/x" not in resync
        await group_send(
            broker_group(broker.pk), frame(broker, "other/y", "plant/c", "plant/d")
        )
        live = await receive_until(communicator, lambda f: "plant/c" in f)
        assert 'hx-swap-oob="afterbegin"' in live
        assert "other/y" not in live
        # Newest first, like the rest of the feed.
        assert live.index("plant/d") < live.index("plant/c")
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_bad_filter_is_refused_and_the_feed_keeps_its_filter(
    world: dict[str, Any],
) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["viewer"])

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        await communicator.connect()
        await communicator.send_json_to({"action": "feed", "filter": "plant/#"})
        await receive_until(communicator, lambda f: 'id="live-rows"' in f)
        await communicator.send_json_to({"action": "feed", "filter": "plant/#/x"})
        html = await receive_until(communicator, lambda f: 'role="alert"' in f)
        assert "Topic filter:" in html
        await group_send(broker_group(broker.pk), frame(broker, "other/z", "plant/e"))
        live = await receive_until(communicator, lambda f: "plant/e" in f)
        assert "other/z" not in live
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_paused_feed_counts_instead_of_showing_and_resume_resyncs(
    world: dict[str, Any],
) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["viewer"])

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        await communicator.connect()
        await communicator.send_json_to({"action": "feed", "paused": True})
        await receive_until(communicator, lambda f: 'data-paused="1"' in f)
        await group_send(broker_group(broker.pk), frame(broker, "a", "b", skipped=3))
        paused = await receive_until(communicator, lambda f: "not shown" in f)
        assert "5 messages not shown" in paused
        assert 'id="live-rows"' not in paused
        await communicator.send_json_to({"action": "feed", "paused": False})
        resumed = await receive_until(communicator, lambda f: 'id="live-rows"' in f)
        assert 'hx-swap-oob="innerHTML"' in resumed
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_skipped_messages_are_shown_with_the_count(world: dict[str, Any]) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["viewer"])

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        await communicator.connect()
        await communicator.send_json_to({"action": "feed"})
        await receive_until(communicator, lambda f: 'id="live-rows"' in f)
        await group_send(broker_group(broker.pk), frame(broker, "t/1", skipped=950))
        html = await receive_until(communicator, lambda f: "t/1" in f)
        assert 'data-skipped="950"' in html
        await communicator.disconnect()

    async_to_sync(scenario)()


# --- logout and lost access ----------------------------------------------------


def test_logout_closes_the_sessions_sockets(world: dict[str, Any]) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["viewer"])

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        overview = socket("/ws/overview/", client)
        await communicator.connect()
        await overview.connect()
        await receive_until(communicator, lambda f: 'id="broker-status"' in f)
        response = await sync_to_async(client.post)("/logout/")
        assert response.status_code in (200, 302)
        assert await closed_with(communicator) == CLOSE_FORBIDDEN
        assert await closed_with(overview) == CLOSE_FORBIDDEN
        await communicator.disconnect()
        await overview.disconnect()

    async_to_sync(scenario)()


def test_ended_session_is_found_on_the_next_request(world: dict[str, Any]) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["viewer"])

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        await communicator.connect()
        await receive_until(communicator, lambda f: 'id="broker-status"' in f)
        # Ended without the logout signal (expiry, clearsessions, an admin).
        await sync_to_async(Session.objects.all().delete)()
        await communicator.send_json_to({"action": "feed"})
        assert await closed_with(communicator) == CLOSE_FORBIDDEN
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_removed_member_is_closed_on_the_next_subscribe(world: dict[str, Any]) -> None:
    broker = make_connected_broker(world["product"])
    viewer = world["users"]["viewer"]
    client = session_of(viewer)

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        await communicator.connect()
        await receive_until(communicator, lambda f: 'id="broker-status"' in f)
        await sync_to_async(Membership.objects.filter(user=viewer).delete)()
        await communicator.send_json_to({"action": "feed"})
        assert await closed_with(communicator) == CLOSE_FORBIDDEN
        await communicator.disconnect()

    async_to_sync(scenario)()


# --- the overview socket ---------------------------------------------------------


def test_overview_syncs_cards_and_alerts_then_follows_status(
    world: dict[str, Any],
) -> None:
    product = world["product"]
    broker = make_connected_broker(product, name="Line 7")
    hidden = make_connected_broker(world["other"], name="Not yours")
    Alert.objects.create(
        product=product, rule_key="r1", subject="Boiler", message="too hot"
    )
    client = session_of(world["users"]["viewer"], product)

    async def scenario() -> None:
        communicator = socket("/ws/overview/?view=overview", client)
        connected, _ = await communicator.connect()
        assert connected
        first = await receive_until(communicator, lambda f: "broker-card-" in f)
        assert f'id="broker-card-{broker.pk}"' in first
        assert f"broker-card-{hidden.pk}" not in first
        assert "too hot" in first
        await sync_to_async(BrokerStatus.objects.filter(broker=broker).update)(
            state="error", connection_error="refused"
        )
        await group_send(
            broker_group(broker.pk), {"type": "broker.status", "broker_id": broker.pk}
        )
        update = await receive_until(communicator, lambda f: "refused" in f)
        assert 'data-state="error"' in update
        # Another product's broker is not this socket's business.
        await group_send(
            broker_group(hidden.pk), {"type": "broker.status", "broker_id": hidden.pk}
        )
        later = await frames_for(communicator, 0.5)
        assert not any(f"broker-card-{hidden.pk}" in f for f in later)
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_brokers_list_socket_sends_rows(world: dict[str, Any]) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["viewer"], world["product"])

    async def scenario() -> None:
        communicator = socket("/ws/overview/?view=brokers", client)
        await communicator.connect()
        html = await receive_until(communicator, lambda f: "<tr" in f)
        assert f'<tr id="broker-{broker.pk}" hx-swap-oob="true">' in html
        assert "broker-card" not in html
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_topic_explorer_counts_and_last_values_update_in_place(
    world: dict[str, Any],
) -> None:
    broker = make_connected_broker(world["product"])
    topic = Topic.objects.create(
        broker=broker,
        topic="plant/boiler",
        messages=41,
        last_payload=b"21.5",
        last_seen_at=timezone.now(),
    )
    client = session_of(world["users"]["viewer"])

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        await communicator.connect()
        await receive_until(communicator, lambda f: 'id="broker-status"' in f)
        await communicator.send_json_to({"action": "topics"})
        await sync_to_async(Topic.objects.filter(pk=topic.pk).update)(
            messages=42, last_payload=b"22.0", last_seen_at=timezone.now()
        )
        await group_send(broker_group(broker.pk), frame(broker, "plant/boiler"))
        html = await receive_until(communicator, lambda f: "topic-count-" in f)
        assert f'id="topic-count-{topic.pk}" hx-swap-oob="true">42<' in html
        assert f'id="topic-last-{topic.pk}" hx-swap-oob="true">22.0<' in html
        await communicator.disconnect()

    async_to_sync(scenario)()
