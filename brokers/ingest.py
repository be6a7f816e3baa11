"""What the runtime does with received messages, one batch at a time.

The runtime's ingest thread drains its queue into batches and calls `store_batch`;
only after it returns (committed) does the runtime acknowledge QoS>0 messages. Per
batch: history rows in bulk (COPY on PostgreSQL), one upsert per topic, one counter
update per broker. Nothing here runs on paho's network thread.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections import Counter
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import F

from brokers.action_runner import enqueue_runs
from brokers.models import (
    DEFAULT_HISTORY_PAYLOAD_BYTES,
    ActionRun,
    Broker,
    BrokerStatus,
    DeadLetter,
    StoredMessage,
    Subscription,
)
from mqttadmin.pipeline import (
    Batch,
    Matched,
    ReceivedMessage,
    SubscriptionMatch,
    ingest_sinks,
)

logger = logging.getLogger(__name__)

LAST_PAYLOAD_BYTES = 4096


class SubscriptionCache:
    """Subscriptions per broker, re-read at most every `ttl` seconds.

    The runtime keeps one so a busy stream costs one query per second, not one per
    batch; a subscription change reaches matching within `ttl` (the runtime's own
    subscribe/unsubscribe takes about as long).
    """

    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._loaded_at = -1e9
        self._matches: dict[int, list[SubscriptionMatch]] = {}

    def get(self, broker_ids: set[int]) -> dict[int, list[SubscriptionMatch]]:
        now = time.monotonic()
        if now - self._loaded_at > self.ttl or not broker_ids <= self._matches.keys():
            wanted = broker_ids | self._matches.keys()
            self._matches = subscriptions_by_broker(wanted)
            self._loaded_at = now
        return self._matches


def subscriptions_by_broker(broker_ids: set[int]) -> dict[int, list[SubscriptionMatch]]:
    """The enabled subscriptions of these brokers, one query per batch."""
    found: dict[int, list[SubscriptionMatch]] = {pk: [] for pk in broker_ids}
    rows = Subscription.objects.filter(broker_id__in=broker_ids, enabled=True)
    for broker_id, pk, topic_filter, group, store, actions in rows.values_list(
        "broker_id", "pk", "topic_filter", "shared_group", "store_messages", "actions"
    ):
        shared = bool(group) or topic_filter.startswith("$share/")
        if topic_filter.startswith("$share/"):
            topic_filter = topic_filter.split("/", 2)[2]
        found[broker_id].append(
            SubscriptionMatch(pk, topic_filter, store, bool(actions), shared)
        )
    return found


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
        "last_seen_at,"
        " retained, description, unit) VALUES (%s, %s, %s, %s, %s, %s, '', '') "
        "ON CONFLICT (broker_id, topic) DO UPDATE SET "
        "messages = brokers_topic.messages + excluded.messages, "
        "last_payload = excluded.last_payload, last_seen_at = excluded.last_seen_at, "
        "retained = excluded.retained"
    )
    params = [
        (
            broker_id,
            topic,
            counts[(broker_id, topic)],
            message.payload[:LAST_PAYLOAD_BYTES],
            message.received_at,
            message.retain,
        )
        # Sorted so concurrent writers take row locks in the same order.
        for (broker_id, topic), message in sorted(latest.items())
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def subscription_work(batch: list[ReceivedMessage], matched: list[Matched]) -> None:
    """Per-subscription counters, and durable action runs for those with actions."""
    counts: Counter[int] = Counter()
    last_at: dict[int, datetime.datetime] = {}
    runs: list[ActionRun] = []
    for message, found in zip(batch, matched, strict=True):
        for match in found.subscriptions:
            counts[match.id] += 1
            last_at[match.id] = message.received_at
            if match.has_actions:
                runs.append(
                    ActionRun(
                        subscription_id=match.id,
                        topic=message.topic,
                        payload=message.payload,
                        qos=message.qos,
                        retain=message.retain,
                        received_at=message.received_at,
                    )
                )
    for subscription_id, count in sorted(counts.items()):
        Subscription.objects.filter(pk=subscription_id).update(
            messages_received=F("messages_received") + count,
            last_message_at=last_at[subscription_id],
        )
    if runs:
        ActionRun.objects.bulk_create(runs, batch_size=500)
        enqueue_runs([run.pk for run in runs])


def history_sink_write(batch: Batch) -> None:
    """The history's part of a batch: rows for stored messages, the topic index."""
    # One small query per batch: a changed cap holds from the next batch on.
    caps = history_payload_caps(batch.broker_ids)
    _write_history(_history_rows(batch.messages, batch.matched, caps))
    _upsert_topics(batch.seen)


def _process(batch: list[ReceivedMessage], cache: SubscriptionCache | None) -> None:
    candidates = cache.get if cache else subscriptions_by_broker
    work = Batch(list(batch), candidates)
    with transaction.atomic():
        for sink in ingest_sinks():
            sink.write(work)
        for broker_id, count in Counter(m.broker_id for m in work.seen).items():
            BrokerStatus.objects.filter(broker_id=broker_id).update(
                messages_received=F("messages_received") + count
            )


def store_batch(
    batch: list[ReceivedMessage], cache: SubscriptionCache | None = None
) -> None:
    """Record a batch in one transaction.

    A database failure propagates (the runtime keeps the batch unacknowledged and
    retries). Any other failure is a poison message: the batch is retried one
    message at a time and the ones that still fail go to the dead-letter list.
    """
    try:
        _process(batch, cache)
    except DatabaseError:
        raise
    except Exception:
        logger.warning("batch of %d failed; isolating the poison", len(batch))
        for message in batch:
            try:
                _process([message], None)
            except DatabaseError:
                raise
            except Exception as exc:
                logger.exception("message on %s dead-lettered", message.topic)
                DeadLetter.objects.create(
                    broker_id=message.broker_id,
                    topic=message.topic,
                    payload=message.payload,
                    qos=message.qos,
                    error=f"{exc.__class__.__name__}: {exc}",
                    received_at=message.received_at,
                )
