"""The live feed writes times in the zone of the page that opened the socket: the
browser's (`tz` cookie) unless the user chose one on the account page."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings

from history.models import StoredMessage
from mqttadmin.frames import BROKER_MESSAGES
from mqttadmin.models import UserPreferences
from mqttadmin.realtime import broker_group
from mqttadmin.timezones import TIME_ZONE_COOKIE
from tests.factories import make_connected_broker
from tests.live.conftest import ORIGIN, receive_until, session_of

pytestmark = pytest.mark.django_db

STORED_AT = datetime.datetime(2026, 12, 3, 7, 38, 1, tzinfo=datetime.UTC)
LIVE_AT = datetime.datetime(2026, 7, 3, 7, 38, 1, tzinfo=datetime.UTC)


def zoned_socket(path: str, user: Any, zone: str) -> WebsocketCommunicator:
    """A socket of a logged-in browser whose zone cookie says `zone`."""
    from mqttadmin.asgi import application

    client = session_of(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    cookie = f"{settings.SESSION_COOKIE_NAME}={session}; {TIME_ZONE_COOKIE}={zone}"
    headers = [(b"host", b"testserver"), (b"origin", ORIGIN)]
    headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def feed_times(world: dict[str, Any], user: Any, zone: str) -> tuple[str, str]:
    """The re-synced feed (a stored message) and a live frame, as HTML."""
    broker = make_connected_broker(world["product"])
    StoredMessage.objects.create(
        broker=broker, topic="plant/a", text="1", received_at=STORED_AT
    )
    frames: list[str] = []
    communicator = zoned_socket(f"/ws/brokers/{broker.pk}/", user, zone)

    async def scenario() -> None:
        await communicator.connect()
        await communicator.send_json_to({"action": "feed", "filter": ""})
        frames.append(
            await receive_until(communicator, lambda f: "plant/a</code>" in f)
        )
        layer = get_channel_layer()
        assert layer is not None
        message = {
            "topic": "plant/live",
            "qos": 0,
            "retain": False,
            "received_at": LIVE_AT.isoformat(),
            "size": 1,
            "text": "2",
        }
        await layer.group_send(
            broker_group(broker.pk),
            {
                "type": BROKER_MESSAGES,
                "broker_id": broker.pk,
                "count": 1,
                "skipped": 0,
                "messages": [message],
            },
        )
        frames.append(
            await receive_until(communicator, lambda f: "plant/live</code>" in f)
        )
        await communicator.disconnect()

    async_to_sync(scenario)()
    return frames[0], frames[1]


def test_the_feed_writes_times_in_the_browser_s_zone(world: dict[str, Any]) -> None:
    resync, live = feed_times(world, world["users"]["viewer"], "America/New_York")
    assert ">2026-12-03 02:38:01 EST</time>" in resync
    assert 'title="2026-12-03T02:38:01.000-05:00"' in resync
    # Summer time on a live frame: the zone's name follows the date.
    assert ">2026-07-03 03:38:01 EDT</time>" in live


def test_the_feed_follows_the_zone_the_user_chose(world: dict[str, Any]) -> None:
    user = world["users"]["viewer"]
    UserPreferences.objects.create(user=user, time_zone="Asia/Tokyo")
    resync, live = feed_times(world, user, "America/New_York")
    assert ">2026-12-03 16:38:01 JST</time>" in resync
    assert ">2026-07-03 16:38:01 JST</time>" in live


def test_a_zone_the_server_does_not_know_leaves_the_feed_in_utc(
    world: dict[str, Any],
) -> None:
    resync, live = feed_times(world, world["users"]["viewer"], "Nowhere/Land")
    assert ">2026-12-03 07:38:01 UTC</time>" in resync
    assert ">2026-07-03 07:38:01 UTC</time>" in live
