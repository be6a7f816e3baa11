"""Subscription counters, the brokers app's part of each ingest batch
(brokers.sinks; the runtime runs each batch, see runtime.ingest).
"""

from __future__ import annotations

import datetime
from collections import Counter

from django.db.models import F

from brokers.models import Subscription
from mqttadmin.pipeline import Matched, ReceivedMessage


def subscription_counters(batch: list[ReceivedMessage], matched: list[Matched]) -> None:
    """How many messages each subscription matched, and when it last did."""
    counts: Counter[int] = Counter()
    last_at: dict[int, datetime.datetime] = {}
    for message, found in zip(batch, matched, strict=True):
        for match in found.subscriptions:
            counts[match.id] += 1
            last_at[match.id] = message.received_at
    for subscription_id, count in sorted(counts.items()):
        Subscription.objects.filter(pk=subscription_id).update(
            messages_received=F("messages_received") + count,
            last_message_at=last_at[subscription_id],
        )
