"""History exports: CSV and NDJSON, streamed in chunks (never all in memory)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

from django.db.models import QuerySet

from history.models import StoredMessage
from history.queries import message_as_dict
from mqttadmin.lib.csv_cells import SafeWriter

EXPORT_FIELDS = (
    "id",
    "received_at",
    "topic",
    "qos",
    "retain",
    "payload_encoding",
    "payload",
    "payload_size",
    "payload_truncated",
)


def export_ndjson(queryset: QuerySet[StoredMessage]) -> Iterator[str]:
    """One JSON document per line, streamed in chunks (never all in memory).

    Always valid JSON: `payload_view` never parses NaN or Infinity, and
    allow_nan=False would rather fail than write them.
    """
    for message in queryset.iterator(chunk_size=2000):
        row = message_as_dict(message)
        del row["payload_cut"]  # exports read every payload whole
        yield json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"


def export_csv(queryset: QuerySet[StoredMessage]) -> Iterator[str]:
    """CSV streamed in chunks; cells that a spreadsheet would run as a formula get
    a leading single quote (`mqttadmin.lib.csv_cells`)."""
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.writerow(EXPORT_FIELDS)
    for message in queryset.iterator(chunk_size=2000):
        row = message_as_dict(message)
        payload = row["payload"]
        if row["payload_encoding"] == "json":
            payload = json.dumps(payload, ensure_ascii=False, allow_nan=False)
        writer.writerow(
            [
                row["id"],
                row["received_at"],
                row["topic"],
                row["qos"],
                int(row["retain"]),
                row["payload_encoding"],
                payload,
                row["payload_size"],
                int(row["payload_truncated"]),
            ]
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
