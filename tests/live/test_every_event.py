"""Every frame type sent to a group reaches every consumer in that group without
closing its socket: each consumer handles it or ignores it.

The types come from `mqttadmin.frames` (one list); a static check below keeps the
senders on those constants, so a new type added without a sample here fails."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.utils import timezone

from brokers.models import Broker, BrokerStatus
from mqttadmin import frames
from mqttadmin.live import CLOSE_FORBIDDEN
from mqttadmin.realtime import broker_group, session_group
from tests.factories import make_connected_broker
from tests.live.conftest import closed_with, receive_until, session_of, socket

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(settings.BASE_DIR)
SENDER_DIRS = ("brokers", "dashboard", "devices", "acl", "mqttadmin", "observe")


def _layer() -> BaseChannelLayer:
    layer = get_channel_layer()
    assert layer is not None
    return layer


def samples(broker: Broker) -> dict[str, dict[str, Any]]:
    """One frame of every type, as its sender builds it."""
    now = timezone.now().isoformat()
    return {
        frames.BROKER_STATUS: {
            "type": frames.BROKER_STATUS,
            "broker_id": broker.pk,
            "state": "connected",
            "last_connected_at": now,
        },
        frames.BROKER_MESSAGES: {
            "type": frames.BROKER_MESSAGES,
            "broker_id": broker.pk,
            "count": 1,
            "skipped": 0,
            "messages": [
                {
                    "topic": "plant/boiler",
                    "qos": 0,
                    "retain": False,
                    "received_at": now,
                    "size": 2,
                    "text": "21",
                }
            ],
        },
        frames.BROKER_CLIENTS: {"type": frames.BROKER_CLIENTS},
        frames.SESSION_LOGOUT: {"type": frames.SESSION_LOGOUT},
        frames.RUNTIME_NUDGE: {"type": frames.RUNTIME_NUDGE},
    }


def test_every_frame_type_has_a_sample(world: dict[str, Any]) -> None:
    broker = make_connected_broker(world["product"])
    assert set(samples(broker)) == set(frames.ALL_FRAME_TYPES)


def _literal_frame_types() -> list[str]:
    """`{"type": "a.b", ...}` dict literals in the app code: frames spelled out
    instead of named from mqttadmin.frames."""
    found = []
    for folder in SENDER_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts or path.name == "frames.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Dict):
                    continue
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "type"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)
                        and "." in value.value
                    ):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_senders_name_frame_types_from_the_one_list() -> None:
    assert _literal_frame_types() == []


def test_frame_refuses_an_unknown_type() -> None:
    with pytest.raises(ValueError):
        frames.frame("broker.typo")
    assert frames.frame(frames.BROKER_CLIENTS) == {"type": "broker.clients"}


async def _stays_open(communicator: WebsocketCommunicator) -> None:
    """No close within a short while (frames may arrive; they are drained)."""
    for _ in range(10):
        if await communicator.receive_nothing(timeout=0.05):
            continue
        output = await communicator.receive_output(timeout=1)
        assert output["type"] != "websocket.close", output


CONSUMERS = {
    "broker page": ("/ws/brokers/{pk}/", 'id="broker-status"'),
    "overview": ("/ws/overview/?view=overview", "broker-card-"),
    "brokers list": ("/ws/overview/?view=brokers", "<tr"),
    "devices": ("/ws/overview/?view=devices", ""),
}


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
@pytest.mark.parametrize(
    "kind", [kind for kind in frames.ALL_FRAME_TYPES if kind != frames.SESSION_LOGOUT]
)
def test_a_viewer_socket_survives_every_frame_type(
    world: dict[str, Any], consumer: str, kind: str
) -> None:
    """The frame reaches every group the socket joined (its broker's and its
    session's); the socket stays open and still follows its broker's status."""
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["viewer"], world["product"])
    path, first_marker = CONSUMERS[consumer]
    sample = samples(broker)[kind]
    session_key = client.session.session_key
    assert session_key is not None

    async def scenario() -> None:
        communicator = socket(path.format(pk=broker.pk), client)
        connected, _ = await communicator.connect()
        assert connected
        if first_marker:
            await receive_until(communicator, lambda f: first_marker in f)
        layer = _layer()
        for group in (broker_group(broker.pk), session_group(session_key)):
            await layer.group_send(group, dict(sample))
        await _stays_open(communicator)
        # Still alive and still serving: a status change is pushed.
        await sync_to_async(BrokerStatus.objects.filter(broker=broker).update)(
            state="error", connection_error="refused-after-frames"
        )
        await layer.group_send(
            broker_group(broker.pk),
            {"type": frames.BROKER_STATUS, "broker_id": broker.pk},
        )
        if consumer != "devices":
            await receive_until(communicator, lambda f: "refused-after-frames" in f)
        await _stays_open(communicator)
        await communicator.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
def test_an_unknown_frame_type_is_ignored(world: dict[str, Any], consumer: str) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["viewer"], world["product"])
    path, first_marker = CONSUMERS[consumer]

    async def scenario() -> None:
        communicator = socket(path.format(pk=broker.pk), client)
        await communicator.connect()
        if first_marker:
            await receive_until(communicator, lambda f: first_marker in f)
        for kind in ("broker.renamed", "something_new", "x.y.z"):
            await _layer().group_send(broker_group(broker.pk), {"type": kind})
        await _stays_open(communicator)
        await communicator.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
def test_a_malformed_frame_costs_the_frame_not_the_socket(
    world: dict[str, Any], consumer: str
) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["viewer"], world["product"])
    path, first_marker = CONSUMERS[consumer]

    async def scenario() -> None:
        communicator = socket(path.format(pk=broker.pk), client)
        await communicator.connect()
        if first_marker:
            await receive_until(communicator, lambda f: first_marker in f)
        await communicator.send_json_to({"action": "feed"})
        broken = {
            "type": frames.BROKER_MESSAGES,
            "broker_id": broker.pk,
            "count": "many",
            "messages": [{"no": "topic"}],
        }
        await _layer().group_send(broker_group(broker.pk), broken)
        await _stays_open(communicator)
        await communicator.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
def test_logout_still_closes_every_socket(world: dict[str, Any], consumer: str) -> None:
    """The one frame meant to close a socket still does (handled, not ignored)."""
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["viewer"], world["product"])
    path, first_marker = CONSUMERS[consumer]
    session_key = client.session.session_key
    assert session_key is not None

    async def scenario() -> None:
        communicator = socket(path.format(pk=broker.pk), client)
        await communicator.connect()
        if first_marker:
            await receive_until(communicator, lambda f: first_marker in f)
        await _layer().group_send(
            session_group(session_key), samples(broker)[frames.SESSION_LOGOUT]
        )
        assert await closed_with(communicator) == CLOSE_FORBIDDEN
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_an_mqtt_login_leaves_the_overview_socket_open(world: dict[str, Any]) -> None:
    """What closed the overview with 1011: a client connecting to a watched broker
    (its log line records the client and tells the broker's group)."""
    from observe import client_log

    broker = make_connected_broker(world["product"])
    Broker.objects.filter(pk=broker.pk).update(collect_sys_stats=True)
    client = session_of(world["users"]["viewer"], world["product"])
    line = (
        "1795347303: New client connected from 127.0.0.1:50144 as probe-1 "
        "(p2, c1, k60, u'mallory')."
    )

    async def scenario() -> None:
        overview = socket("/ws/overview/?view=overview", client)
        await overview.connect()
        await receive_until(overview, lambda f: "broker-card-" in f)
        for _ in range(3):
            await sync_to_async(client_log.record_log)(
                broker.pk, [(timezone.now(), line)]
            )
        await _stays_open(overview)
        await sync_to_async(BrokerStatus.objects.filter(broker=broker).update)(
            state="error", connection_error="still-following"
        )
        await _layer().group_send(
            broker_group(broker.pk),
            {"type": frames.BROKER_STATUS, "broker_id": broker.pk},
        )
        await receive_until(overview, lambda f: "still-following" in f)
        await overview.disconnect()

    async_to_sync(scenario)()
