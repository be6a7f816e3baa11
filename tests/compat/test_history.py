"""The runtime's subscriptions and stored history on foreign brokers."""

from __future__ import annotations

from typing import Any

import pytest

from history.models import Topic
from tests.compat.conftest import BrokerFacts
from tests.compat.support import (
    connected_broker,
    publish_in_order,
    stored_topics,
    wait_stored,
)
from tests.runtime_support import state_is, status_of, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sqlite_readers_do_not_wait"),
]


def test_wildcard_subscription_stores_history(
    actor: Any, broker_process: Any, start_runtime: Any
) -> None:
    start_runtime()
    broker = connected_broker(
        actor, broker_process.port, subscriptions={"plant": "plant/+/temp"}
    )

    publish_in_order(
        broker_process.port, "plant/a/temp", "other/a/temp", "plant/b/humidity"
    )
    publish_in_order(broker_process.port, "plant/b/temp", qos=0)
    wait_stored(broker, "plant/b/temp")

    assert stored_topics(broker) == ["plant/a/temp", "plant/b/temp"]
    assert set(Topic.objects.filter(broker=broker).values_list("topic", flat=True)) == {
        "plant/a/temp",
        "plant/b/temp",
    }


def test_a_message_on_overlapping_subscriptions_is_stored_once(
    actor: Any, broker_process: Any, start_runtime: Any
) -> None:
    start_runtime()
    broker = connected_broker(
        actor,
        broker_process.port,
        subscriptions={"all of plant": "plant/#", "line a": "plant/a", "b": "b/#"},
    )

    publish_in_order(broker_process.port, "plant/a", "b/marker")
    wait_stored(broker, "b/marker")

    assert stored_topics(broker) == ["b/marker", "plant/a"]


def test_hash_stores_no_broker_internal_dollar_topics(
    actor: Any, broker_process: Any, facts: BrokerFacts, start_runtime: Any
) -> None:
    start_runtime()
    broker = connected_broker(actor, broker_process.port, subscriptions={"all": "#"})

    publish_in_order(broker_process.port, "plant/a", "plant/marker")
    wait_stored(broker, "plant/marker")

    # `#` never matches topics starting with `$` (MQTT 4.7.2); NATS' `#` does
    # (`$JS/…`, `$MQTT/sess/…`), and the portal must not store or count those.
    assert stored_topics(broker) == ["plant/a", "plant/marker"]
    assert not Topic.objects.filter(broker=broker, topic__startswith="$").exists()
    assert status_of(broker).messages_received == 2


def test_shared_subscription_where_the_broker_has_them(
    actor: Any, broker_process: Any, facts: BrokerFacts, start_runtime: Any
) -> None:
    start_runtime()
    broker = connected_broker(
        actor,
        broker_process.port,
        subscriptions={"shared": "$share/portal/plant/#", "marker": "marker"},
        subscribed=None,
    )
    wait_until(state_is(broker, "connected"), 10, "connected")

    publish_in_order(broker_process.port, "plant/a", "marker")
    wait_stored(broker, "marker")

    if facts.shared_subscriptions:
        assert stored_topics(broker) == ["marker", "plant/a"]
    else:
        # No `$share` on this broker: the group's messages never arrive (the
        # filter is taken as a topic starting with `$share`, or refused).
        assert stored_topics(broker) == ["marker"]
