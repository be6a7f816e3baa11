"""The history's part of ingest: stored rows for the messages a subscription keeps
(COPY on PostgreSQL), and one topic-index upsert per topic and batch.

`HistorySink` is named in settings.MQTTADMIN_INGEST_SINKS (mqttadmin.pipeline): it
runs inside the batch's transaction, after the `$SYS` sink took its messages.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from django.db import connection

from brokers.models import DEFAULT_HISTORY_PAYLOAD_BYTES, Broker
from history.models import StoredMessage
from mqttadmin.pipeline import Batch, Matched, ReceivedMessage

LAST_PAYLOAD_BYTES = 4096


class HistorySink:
    """History rows (COPY on PostgreSQL) and the topic index."""

    def write(self, batch: Batch) -> None:
        history_sink_write(batch)


def history_payload_caps(broker_ids: set[int]) -> dict[int, int]:
    """Each broker's `history_payload_max_bytes`: what history keeps of a payload."""
    return dict(
        Broker.objects.filter(pk__in=broker_ids).values_list(
            "pk", "history_payload_max_bytes"
        )
    )


def cut_payload(payload: bytes, cap: int) -> bytes:
    """The first `cap` bytes of a payload; a UTF-8 text payload is cut before the
    character the cap would split, so the kept prefix is still text."""
    if len(payload) <= cap:
        return payload
    head = payload[:cap]
    for trim in range(4):
        kept = head[: len(head) - trim]
        try:
            kept.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:
                return head  # invalid before the cut: binary, kept as bytes
            continue
        return kept
    return head


def split_payload(payload: bytes) -> tuple[str | None, bytes | None]:
    """(text, None) for UTF-8 without NUL, else (None, bytes): stored exactly once."""
    if b"\x00" not in payload:
        try:
            return payload.decode("utf-8"), None
        except UnicodeDecodeError:
            pass
    return None, payload


def _history_rows(
    batch: list[ReceivedMessage], matched: list[Matched], caps: dict[int, int]
) -> list[tuple[Any, ...]]:
    rows = []
    for message, match in zip(batch, matched, strict=True):
        if not match.stored:
            continue
        size = len(message.payload)
        cap = caps.get(message.broker_id, DEFAULT_HISTORY_PAYLOAD_BYTES)
        # A 20 MB payload stored whole is read whole by every page that lists it:
        # history keeps a prefix, its real size and a flag.
        truncated = size > cap
        text, data = split_payload(
            cut_payload(message.payload, cap) if truncated else message.payload
        )
        rows.append(
            (
                message.broker_id,
                message.topic,
                text,
                data,
                message.qos,
                message.retain,
                json_safe(message.properties) if message.properties else None,
                message.received_at,
                size,
                truncated,
            )
        )
    return rows


def json_safe(value: Any) -> Any:
    """MQTT 5 properties as JSON: bytes (correlation data) become text or hex."""
    if isinstance(value, dict):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes | bytearray):
        text, _data = split_payload(bytes(value))
        return text if text is not None else {"hex": bytes(value).hex()}
    if isinstance(value, str) and "\x00" in value:
        # PostgreSQL's jsonb cannot hold U+0000: one such property would fail
        # every retry of the batch. Kept visible, as the escape's text.
        return value.replace("\x00", "\\u0000")
    return value


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str | None) -> str:
    """A value in PostgreSQL's COPY text format (NULL is \\N)."""
    if value is None:
        return "\\N"
    # Most values need no escaping; four C-level scans beat one translate().
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _copy_line(row: tuple[Any, ...]) -> str:
    (
        broker_id,
        topic,
        text,
        data,
        qos,
        retain,
        properties,
        received_at,
        payload_size,
        payload_truncated,
    ) = row
    return (
        "\t".join(
            (
                str(broker_id),
                _copy_text(topic),
                _copy_text(text),
                "\\N" if data is None else "\\\\x" + data.hex(),
                str(qos),
                "t" if retain else "f",
                "\\N" if properties is None else _copy_text(json.dumps(properties)),
                received_at.isoformat(),
                str(payload_size),
                "t" if payload_truncated else "f",
            )
        )
        + "\n"
    )


HISTORY_COLUMNS = (
    "broker_id",
    "topic",
    "text",
    "data",
    "qos",
    "retain",
    "properties",
    "received_at",
    "payload_size",
    "payload_truncated",
)


def _write_history(rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    if connection.vendor == "postgresql":
        table = StoredMessage._meta.db_table
        sql = f"COPY {table} ({', '.join(HISTORY_COLUMNS)}) FROM STDIN"
        # One block of COPY text instead of a write_row call per message: at
        # tens of thousands of messages a second the per-row Python cost counts.
        data = "".join(map(_copy_line, rows)).encode("utf-8")
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            copy.write(data)
        return
    if connection.vendor == "sqlite":
        # One prepared INSERT run per row by SQLite itself: the ORM's bulk_create
        # spends most of a batch building model instances and SQL (measured: 15k
        # messages/s at 5,000 a batch, 3x slower than this).
        columns = ", ".join(HISTORY_COLUMNS)
        placeholders = ", ".join(["%s"] * len(HISTORY_COLUMNS))
        # Table and column names are this module's constants; values are parameters.
        sql = f"INSERT INTO {StoredMessage._meta.db_table} ({columns}) VALUES ({placeholders})"  # noqa: S608, E501
        # The messages of one socket read share their time: adapted once.
        times: dict[Any, Any] = {}
        adapt_time = connection.ops.adapt_datetimefield_value
        params = []
        for row in rows:
            received_at = row[7]
            stored_time = times.get(received_at)
            if stored_time is None:
                stored_time = times[received_at] = adapt_time(received_at)
            properties = None if row[6] is None else json.dumps(row[6])
            params.append((*row[:6], properties, stored_time, *row[8:]))
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)
        return
    StoredMessage.objects.bulk_create(
        [StoredMessage(**dict(zip(HISTORY_COLUMNS, row, strict=True))) for row in rows],
        batch_size=500,
    )


def _upsert_topics(batch: list[ReceivedMessage]) -> None:
    if not batch:
        return
    latest: dict[tuple[int, str], ReceivedMessage] = {}
    counts: Counter[tuple[int, str]] = Counter()
    for message in batch:
        key = (message.broker_id, message.topic)
        counts[key] += 1
        latest[key] = message
    # Every value is a parameter; the increment needs ON CONFLICT, which the ORM's
    # bulk_create(update_conflicts=True) cannot express.
    sql = (
        "INSERT INTO brokers_topic (broker_id, topic, messages, last_payload, "
        "last_payload_truncated, last_payload_digest, last_seen_at,"
        " retained, description, unit) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, '', '') "
        "ON CONFLICT (broker_id, topic) DO UPDATE SET "
        "messages = brokers_topic.messages + excluded.messages, "
        "last_payload = excluded.last_payload, "
        "last_payload_truncated = excluded.last_payload_truncated, "
        "last_payload_digest = excluded.last_payload_digest, "
        "last_seen_at = excluded.last_seen_at, retained = excluded.retained"
    )
    params = [
        (
            broker_id,
            topic,
            counts[(broker_id, topic)],
            message.payload[:LAST_PAYLOAD_BYTES],
            len(message.payload) > LAST_PAYLOAD_BYTES,
            hashlib.sha256(message.payload).digest(),
            message.received_at,
            message.retain,
        )
        # Sorted so concurrent writers take row locks in the same order.
        for (broker_id, topic), message in sorted(latest.items())
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def history_sink_write(batch: Batch) -> None:
    """The history's part of a batch: rows for stored messages, the topic index."""
    # One small query per batch: a changed cap holds from the next batch on.
    caps = history_payload_caps(batch.broker_ids)
    _write_history(_history_rows(batch.messages, batch.matched, caps))
    _upsert_topics(batch.seen)
