"""What the runtime does with received messages, one batch at a time.

The runtime's ingest thread drains its queue into batches and calls `store_batch`
inside one transaction; only after it returns (committed) does the runtime
acknowledge QoS>0 messages. Nothing here runs on paho's network thread.
"""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import F

from brokers.models import BrokerStatus, Subscription


@dataclass(frozen=True)
class ReceivedMessage:
    """One PUBLISH as the runtime received it."""

    broker_id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: datetime.datetime
    mid: int = 0
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubscriptionMatch:
    id: int
    topic_filter: str
    store_messages: bool


def subscriptions_by_broker(broker_ids: set[int]) -> dict[int, list[SubscriptionMatch]]:
    """The enabled subscriptions of these brokers, one query per batch."""
    found: dict[int, list[SubscriptionMatch]] = {pk: [] for pk in broker_ids}
    rows = Subscription.objects.filter(broker_id__in=broker_ids, enabled=True)
    for broker_id, pk, topic_filter, store in rows.values_list(
        "broker_id", "pk", "topic_filter", "store_messages"
    ):
        inner = (
            topic_filter.split("/", 2)[2]
            if topic_filter.startswith("$share/")
            else topic_filter
        )
        found[broker_id].append(SubscriptionMatch(pk, inner, store))
    return found


def store_batch(batch: list[ReceivedMessage]) -> None:
    """Record a batch: per-broker counters now; history and topics come with it."""
    if not batch:
        return
    per_broker = Counter(message.broker_id for message in batch)
    with transaction.atomic():
        for broker_id, count in per_broker.items():
            BrokerStatus.objects.filter(broker_id=broker_id).update(
                messages_received=F("messages_received") + count
            )
