"""Ingest sinks (see mqttadmin.pipeline), named in settings.MQTTADMIN_INGEST_SINKS."""

from __future__ import annotations

from brokers.ingest import subscription_counters
from mqttadmin.pipeline import Batch


class SubscriptionSink:
    """Per-subscription counters: messages matched, last message time."""

    def write(self, batch: Batch) -> None:
        subscription_counters(batch.messages, batch.matched)
