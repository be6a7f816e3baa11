"""The ingest sink of the devices app (settings.MQTTADMIN_INGEST_SINKS)."""

from __future__ import annotations

from devices.telemetry import ingest_batch
from mqttadmin.pipeline import Batch


class TelemetrySink:
    """Device telemetry, availability and alert rules."""

    def write(self, batch: Batch) -> None:
        ingest_batch(batch.seen)
