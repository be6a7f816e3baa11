"""The Clients tab's table over the broker's socket: pushed when a client connects,
only to pages that have the tab open."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from brokers.models import Broker, BrokerStatus
from observe import client_log
from tests.factories import make_connected_broker
from tests.live.conftest import frames_for, receive_until, session_of, socket

pytestmark = pytest.mark.django_db(transaction=True)


def test_clients_table_is_pushed_when_a_client_connects(world: dict[str, Any]) -> None:
    broker = make_connected_broker(world["product"])
    Broker.objects.filter(pk=broker.pk).update(collect_sys_stats=True)
    BrokerStatus.objects.update_or_create(
        broker=broker,
        defaults={"state": "connected", "last_connected_at": timezone.now()},
    )
    client = session_of(world["users"]["viewer"])
    line = (
        "1795347303: New client connected from 127.0.0.1:50144 as dev-7 "
        "(p2, c1, k60, u'alice')."
    )

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        await communicator.connect()
        await receive_until(communicator, lambda f: 'id="broker-status"' in f)
        await communicator.send_json_to({"action": "clients"})
        first = await receive_until(communicator, lambda f: "clients-table-" in f)
        assert f'id="clients-table-{broker.pk}"' in first and "dev-7" not in first
        await sync_to_async(client_log.record_log)(broker.pk, [(timezone.now(), line)])
        pushed = await receive_until(communicator, lambda f: "dev-7" in f)
        assert 'hx-swap-oob="true"' in pushed and "alice" in pushed
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_clients_table_is_not_pushed_to_pages_without_the_tab(
    world: dict[str, Any],
) -> None:
    broker = make_connected_broker(world["product"])
    client = session_of(world["users"]["viewer"])
    line = (
        "1795347303: New client connected from 127.0.0.1:50144 as dev-8 (p2, c1, k60)."
    )

    async def scenario() -> None:
        communicator = socket(f"/ws/brokers/{broker.pk}/", client)
        await communicator.connect()
        await receive_until(communicator, lambda f: 'id="broker-status"' in f)
        await sync_to_async(client_log.record_log)(broker.pk, [(timezone.now(), line)])
        frames = await frames_for(communicator, 0.6)
        assert not any("clients-table-" in f for f in frames)
        await communicator.disconnect()

    async_to_sync(scenario)()
