"""The ingest sink of this app (see mqttadmin.pipeline), named first in
settings.MQTTADMIN_INGEST_SINKS."""

from __future__ import annotations

from mqttadmin.pipeline import Batch
from observe.sys_stats import SYS_PREFIX, route_sys_messages


class SysSink:
    """`$SYS/...` messages are broker statistics and log lines, never history:
    taken out of the batch before any other sink sees it."""

    def write(self, batch: Batch) -> None:
        taken = batch.take(lambda message: message.topic.startswith(SYS_PREFIX))
        if taken:
            route_sys_messages(taken)
