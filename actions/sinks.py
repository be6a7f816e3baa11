"""The ingest sink of the actions app (settings.MQTTADMIN_INGEST_SINKS)."""

from __future__ import annotations

from actions.models import ActionRun
from actions.runner import enqueue_runs
from mqttadmin.pipeline import Batch


class ActionRunSink:
    """A durable action run per message and subscription with actions, written
    in the ingest transaction and queued once the batch commits."""

    def write(self, batch: Batch) -> None:
        runs = [
            ActionRun(
                subscription_id=match.id,
                topic=message.topic,
                payload=message.payload,
                qos=message.qos,
                retain=message.retain,
                received_at=message.received_at,
            )
            for message, found in zip(batch.messages, batch.matched, strict=True)
            for match in found.subscriptions
            if match.has_actions
        ]
        if runs:
            ActionRun.objects.bulk_create(runs, batch_size=500)
            enqueue_runs([run.pk for run in runs])
