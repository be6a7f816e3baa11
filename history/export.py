"""History exports: CSV and NDJSON, streamed in chunks (never all in memory).

Payloads are exported byte-exact: the text as received (base64 for binary),
never a parsed value written back, so `1.50` stays `1.50`.
"""

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
    # Beside the payload it describes; the size and truncated flag stay last.
    "properties",
    "payload_size",
    "payload_truncated",
)


def export_ndjson(
    queryset: QuerySet[StoredMessage], *, parsed: bool = False
) -> Iterator[str]:
    """One JSON document per line, streamed in chunks (never all in memory).

    Always strict JSON: the payload is a string, and `payload_json` (with
    `parsed`) is only ever a value `parse_json` read, which refuses NaN, Infinity
    and overflowing numbers; allow_nan=False would rather fail than write them.
    """
    for message in queryset.iterator(chunk_size=2000):
        row = message_as_dict(message, parsed=parsed)
        del row["payload_cut"]  # exports read every payload whole
        yield json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"


def export_csv(queryset: QuerySet[StoredMessage]) -> Iterator[str]:
    """CSV streamed in chunks; cells that a spreadsheet would run as a formula get
    a leading single quote (`mqttadmin.lib.csv_cells`). MQTT 5 properties are one
    JSON cell (empty for none)."""
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.writerow(EXPORT_FIELDS)
    for message in queryset.iterator(chunk_size=2000):
        row = message_as_dict(message)
        properties = row["properties"]
        writer.writerow(
            [
                row["id"],
                row["received_at"],
                row["topic"],
                row["qos"],
                int(row["retain"]),
                row["payload_encoding"],
                row["payload"],
                json.dumps(properties, ensure_ascii=False, allow_nan=False)
                if properties
                else "",
                row["payload_size"],
                int(row["payload_truncated"]),
            ]
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
