"""Writes of the history app: deleting stored messages, annotating topics."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from brokers.models import Broker
from history.models import StoredMessage, Topic
from history.queries import HistoryQuery
from mqttadmin.audit import audit_record, diff, snapshot


def history_delete(broker: Broker, query: HistoryQuery) -> int:
    """Delete what the query selects; returns how many rows went."""
    with transaction.atomic():
        deleted, _per_model = query.apply(
            StoredMessage.objects.filter(broker=broker)
        ).delete()
    return deleted


TOPIC_NOTE_FIELDS = ("description", "unit")


@transaction.atomic
def topic_annotate(*, actor: Any, topic: Topic, description: str, unit: str) -> Topic:
    """Set an operator's description and unit on a topic; audited when changed."""
    before = snapshot(topic, TOPIC_NOTE_FIELDS)
    topic.description = description
    topic.unit = unit
    topic.clean_fields(
        exclude=[f.name for f in Topic._meta.fields if f.name not in TOPIC_NOTE_FIELDS]
    )
    changes = diff(before, snapshot(topic, TOPIC_NOTE_FIELDS))
    if changes:
        # Only these columns: ingest updates the counters and last value of the same
        # row concurrently, and a full save would write stale ones back.
        topic.save(update_fields=list(TOPIC_NOTE_FIELDS))
        audit_record(
            actor=actor,
            action="topic.annotate",
            target=topic,
            product=topic.broker.product,
            changes=changes,
        )
    return topic
