"""Broker statistics from $SYS/#: the stats API against a real Mosquitto and the
runtime, the time series and its retention, and why there is no data when there
is none."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from acl import services as acl_services
from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.models import Broker, BrokerStatus
from brokers.services import broker_create, subscription_create
from history.models import StoredMessage, Topic
from mqttadmin.models import AuditEntry
from mqttadmin.pipeline import ReceivedMessage
from observe import sys_stats
from observe.models import BrokerStatsSample, BrokerSysStats
from runtime.ingest import store_batch
from tests.clients import HTMX, as_user, logged_in
from tests.observe import sys_support
from tests.observe.sys_support import (
    PORTAL_PASSWORD,
    PORTAL_USER,
    USERS,
    hold,
    retrying,
    wait_until,
)

# Fixtures of sys_support, used by this module's tests.
log_broker = sys_support.log_broker


def stats_api(user: Any, broker: Broker) -> dict[str, Any]:
    response = retrying(as_user(user).get, f"/api/v1/brokers/{broker.pk}/stats/")
    assert response.status_code == 200, response.content
    return response.json()


def new_broker(world: dict, port: int = 1, **fields: Any) -> Broker:
    fields.setdefault("enabled", False)
    return retrying(
        broker_create,
        actor=world["users"]["superuser"],
        product=world["product"],
        name=f"stats-{port}-{Broker.objects.count()}",
        host="127.0.0.1",
        port=port,
        **fields,
    )


@pytest.mark.mosquitto
@pytest.mark.django_db(transaction=True)
def test_stats_api_shows_clients_and_growing_counters_from_a_real_broker(
    log_broker: Any, world: dict, start_runtime: Any, settings: Any
) -> None:
    settings.BROKER_STATS_SAMPLE_S = 1
    viewer = world["users"]["viewer"]
    start_runtime()
    broker = new_broker(
        world,
        log_broker.port,
        enabled=True,
        username=PORTAL_USER,
        password=PORTAL_PASSWORD,
        collect_sys_stats=True,
    )
    held = [
        hold(log_broker.port, "alice-1", "alice", USERS["alice"]),
        hold(log_broker.port, "bob-1", "bob", USERS["bob"], protocol="5"),
    ]
    try:
        # The broker counts the portal's own connection too.
        wait_until(
            lambda: stats_api(viewer, broker)["clients"]["connected"] == 3,
            what="three clients connected",
        )
        first = stats_api(viewer, broker)
        assert first["available"] is True
        assert first["reason"] is None
        assert first["version"].startswith("mosquitto version")
        assert isinstance(first["uptime_seconds"], int)
        assert first["clients"]["maximum"] >= 3
        assert first["clients"]["total"] >= 3
        assert first["subscriptions"] >= 1
        assert set(first["load_1min"]) >= {
            "messages_received",
            "messages_sent",
            "bytes_received",
            "connections",
        }
        assert first["updated_at"]

        received = first["messages"]["received"]
        publish_messages(
            ConnectionSettings(
                host="127.0.0.1",
                port=log_broker.port,
                username="carol",
                password=USERS["carol"],
            ),
            [OutgoingMessage(topic=f"plant/{n}", payload=b"1") for n in range(20)],
        )
        wait_until(
            lambda: stats_api(viewer, broker)["messages"]["received"] >= received + 20,
            what="messages received to grow",
        )
        assert stats_api(viewer, broker)["bytes"]["received"] > 0

        series = wait_until(
            lambda: (
                (s := stats_api(viewer, broker)["series"])["messages_received_per_s"][
                    -3:
                ].count(None)
                < 3
                and len(s["t"]) >= 3
                and s
            ),
            what="a series with rates",
        )
        assert len(series["t"]) == len(series["clients_connected"])
        assert series["t"] == sorted(series["t"])
        assert 3 in series["clients_connected"]
        assert any(rate and rate > 0 for rate in series["messages_sent_per_s"])

        # $SYS is neither history nor topics nor counted as received messages.
        assert not StoredMessage.objects.filter(topic__startswith="$SYS").exists()
        assert not Topic.objects.filter(broker=broker).exists()
        assert BrokerStatus.objects.get(broker=broker).messages_received == 0
    finally:
        for client in held:
            client.close()


@pytest.mark.mosquitto
@pytest.mark.django_db(transaction=True)
def test_a_broker_that_publishes_no_sys_says_so(
    mosquitto: Any, world: dict, start_runtime: Any
) -> None:
    process = mosquitto("sys_interval 0\n", name="quiet")
    viewer = world["users"]["viewer"]
    runtime = start_runtime()
    broker = new_broker(world, process.port, enabled=True, collect_sys_stats=True)
    # The portal's own $SYS/# is not counted among the broker's topics.
    wait_until(
        lambda: (
            broker.pk in runtime.sessions
            and sys_stats.SYS_FILTER in runtime.sessions[broker.pk].subscribed
        ),
        what="$SYS/# subscribed",
    )
    assert BrokerStatus.objects.get(broker=broker).subscribed_topics_count == 0
    answer = stats_api(viewer, broker)
    assert answer["available"] is False
    assert answer["reason"] == "no_data"
    assert "sys_interval" in answer["hint"]
    assert answer["clients"]["connected"] is None
    assert answer["messages"]["received"] is None


def test_a_broker_not_collected_says_how_to_turn_it_on(world: dict, db: Any) -> None:
    broker = new_broker(world)
    answer = stats_api(world["users"]["viewer"], broker)
    assert (answer["available"], answer["collecting"]) == (False, False)
    assert answer["reason"] == "not_collected"
    assert "collect $SYS" in answer["hint"]
    # Not zeros: nothing is known.
    assert answer["uptime_seconds"] is None
    assert answer["clients"] == {
        "connected": None,
        "total": None,
        "maximum": None,
        "disconnected": None,
    }
    assert answer["series"]["t"] == []


def test_a_collected_broker_that_is_not_connected_says_so(world: dict, db: Any) -> None:
    broker = new_broker(world, collect_sys_stats=True)
    answer = stats_api(world["users"]["viewer"], broker)
    assert (answer["collecting"], answer["reason"]) == (True, "not_connected")


def test_managed_brokers_and_opted_in_brokers_subscribe_to_sys(
    world: dict, db: Any
) -> None:
    plain = new_broker(world)
    opted_in = new_broker(world, collect_sys_stats=True)
    managed = new_broker(world)
    acl_services.management_update(
        actor=world["users"]["superuser"], broker=managed, management="dynsec"
    )
    assert sys_stats.sys_subscriptions(plain.pk) == {}
    assert sys_stats.sys_subscriptions(opted_in.pk) == {"$SYS/#": 0}
    assert sys_stats.sys_subscriptions(managed.pk) == {"$SYS/#": 0}
    assert stats_api(world["users"]["viewer"], managed)["collecting"] is True


def sys_message(broker: Broker, topic: str, payload: str) -> ReceivedMessage:
    return ReceivedMessage(
        broker_id=broker.pk,
        topic=f"$SYS/broker/{topic}",
        payload=payload.encode(),
        qos=0,
        retain=False,
        received_at=timezone.now(),
    )


def test_samples_carry_rates_and_expire(world: dict, db: Any, settings: Any) -> None:
    settings.BROKER_STATS_SAMPLE_S = 10
    settings.BROKER_STATS_RETENTION_S = 60
    broker = new_broker(world, collect_sys_stats=True)
    start = timezone.now()

    def feed(seconds: int, received: int, sent: int, clients: int) -> None:
        sys_stats.record_sys_messages(
            broker.pk,
            [
                sys_message(broker, "messages/received", str(received)),
                sys_message(broker, "messages/sent", str(sent)),
                sys_message(broker, "clients/connected", str(clients)),
            ],
            now=start + datetime.timedelta(seconds=seconds),
        )

    feed(0, 100, 50, 2)
    feed(5, 150, 60, 2)  # within the sample interval: values only
    feed(10, 200, 150, 3)
    feed(20, 10, 5, 1)  # the broker restarted: its counters began again
    samples = list(BrokerStatsSample.objects.filter(broker=broker))
    assert [(s.messages_received_per_s, s.messages_sent_per_s) for s in samples] == [
        (None, None),
        (10.0, 10.0),
        (None, None),
    ]
    assert [s.clients_connected for s in samples] == [2, 3, 1]
    assert BrokerSysStats.objects.get(broker=broker).values["messages/received"] == "10"

    feed(70, 50, 25, 1)  # the first sample is now older than the retention
    kept = BrokerStatsSample.objects.filter(broker=broker).order_by("sampled_at")
    assert [s.sampled_at - start for s in kept] == [
        datetime.timedelta(seconds=n) for n in (10, 20, 70)
    ]
    newest = kept.last()
    assert newest is not None
    assert newest.messages_received_per_s == 0.8


def test_sys_messages_of_a_batch_never_reach_history(world: dict, db: Any) -> None:
    broker = new_broker(world, collect_sys_stats=True)
    user_message = ReceivedMessage(
        broker_id=broker.pk,
        topic="plant/temp",
        payload=b"21",
        qos=0,
        retain=False,
        received_at=timezone.now(),
    )
    subscription_create(
        actor=None, broker=broker, name="all", topic_filter="#", store_messages=True
    )
    store_batch(
        [
            sys_message(broker, "uptime", "12 seconds"),
            user_message,
            sys_message(broker, "version", "mosquitto version 2.0.11"),
        ]
    )
    assert list(StoredMessage.objects.values_list("topic", flat=True)) == ["plant/temp"]
    assert list(Topic.objects.values_list("topic", flat=True)) == ["plant/temp"]
    assert BrokerStatus.objects.get(broker=broker).messages_received == 1
    values = BrokerSysStats.objects.get(broker=broker).values
    assert values == {"uptime": "12 seconds", "version": "mosquitto version 2.0.11"}
    assert stats_api(world["users"]["viewer"], broker)["uptime_seconds"] == 12


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_members_read_the_stats(world: dict, db: Any, role: str) -> None:
    broker = new_broker(world)
    response = as_user(world["users"][role]).get(f"/api/v1/brokers/{broker.pk}/stats/")
    assert response.status_code == 200


def test_other_products_get_404_for_stats(world: dict, db: Any) -> None:
    broker = new_broker(world)
    response = as_user(world["users"]["outsider"]).get(
        f"/api/v1/brokers/{broker.pk}/stats/"
    )
    assert response.status_code == 404


# --- The Stats tab and the broker form ------------------------------------------------


def test_the_stats_tab_has_cards_and_charts(world: dict, db: Any) -> None:
    broker = new_broker(world, collect_sys_stats=True)
    BrokerSysStats.objects.create(
        broker=broker,
        values={"version": "mosquitto version 2.0.11", "clients/connected": "4"},
        updated_at=timezone.now(),
    )
    page = logged_in(world["users"]["viewer"], world["product"])
    body = page.get(f"/brokers/{broker.pk}/?tab=stats").content.decode()
    assert "mosquitto version 2.0.11" in body
    assert f'data-broker-stats="/api/v1/brokers/{broker.pk}/stats/"' in body
    assert "js/broker-stats.js" in body
    cards = page.get(f"/brokers/{broker.pk}/stats/", **HTMX)
    assert cards.status_code == 200
    assert cards.content.decode().startswith(f'<div id="stats-cards-{broker.pk}"')


def test_the_stats_tab_says_why_it_is_empty(world: dict, db: Any) -> None:
    broker = new_broker(world)
    page = logged_in(world["users"]["viewer"], world["product"])
    body = page.get(f"/brokers/{broker.pk}/?tab=stats").content.decode()
    assert "collect $SYS statistics and connected clients" in body


def test_the_broker_form_turns_collection_on(world: dict, db: Any) -> None:
    broker = new_broker(world)
    page = logged_in(world["users"]["operator"], world["product"])
    form = page.get(f"/brokers/{broker.pk}/edit/").content.decode()
    assert 'name="collect_sys_stats"' in form
    response = page.post(
        f"/brokers/{broker.pk}/edit/",
        {
            "name": broker.name,
            "host": "127.0.0.1",
            "port": "1",
            "transport": "tcp",
            "ws_path": "/mqtt",
            "protocol": "3.1.1",
            "client_id": broker.client_id,
            "keepalive": "60",
            "session_expiry_interval": "0",
            "connect_timeout": "10",
            "max_payload_bytes": "262144",
            "clean_start": "on",
            "collect_sys_stats": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    broker.refresh_from_db()
    assert broker.collect_sys_stats is True
    entry = AuditEntry.objects.filter(action="broker.update").latest("id")
    assert "collect_sys_stats" in str(entry.changes)
