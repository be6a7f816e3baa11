"""Ingest sinks (see mqttadmin.pipeline), named in settings.MQTTADMIN_INGEST_SINKS."""

from __future__ import annotations

from brokers.ingest import subscription_work
from devices.telemetry import ingest_batch
from mqttadmin.pipeline import Batch


class ActionRunSink:
    """Per-subscription counters, and a durable action run per message and
    subscription with actions (queued once the batch commits)."""

    def write(self, batch: Batch) -> None:
        subscription_work(batch.messages, batch.matched)


class TelemetrySink:
    """Device telemetry, availability and alert rules."""

    def write(self, batch: Batch) -> None:
        ingest_batch(batch.seen)
