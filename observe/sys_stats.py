"""Broker statistics from `$SYS/#`, kept apart from message history.

The runtime subscribes `$SYS/#` on brokers the portal manages and on those whose
operator turned `collect_sys_stats` on. Ingest hands every `$SYS/...` message to
`route_sys_messages` before it stores a batch: they never reach history, topics or
the message counters. Values land in BrokerSysStats (latest per topic), a time
series in BrokerStatsSample (every few seconds, bounded), and log lines
(`$SYS/broker/log/...`) go on to observe.client_log.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from brokers.models import Broker, BrokerStatus
from observe import broker_drops, client_log
from observe.models import BrokerStatsSample, BrokerSysStats
from observe.selectors import collects_sys_stats, managed_q

if TYPE_CHECKING:
    from mqttadmin.pipeline import ReceivedMessage

logger = logging.getLogger(__name__)

SYS_PREFIX = "$SYS/"
BROKER_PREFIX = "$SYS/broker/"
SYS_FILTER = "$SYS/#"
# One sample every this many seconds, kept this long (settings override both).
DEFAULT_SAMPLE_S = 10.0
DEFAULT_RETENTION_S = 24 * 3600.0
# The series the stats API returns: the last hour, at most this many points.
SERIES_WINDOW = datetime.timedelta(hours=1)
SERIES_POINTS = 720
# Which brokers want $SYS is re-read at most this often (the runtime asks per tick).
WANTED_TTL = 2.0
# Mosquitto's `$SYS/broker/load/<path>/1min` values, by the name the API gives them.
LOAD_1MIN = {
    "messages_received": "messages/received",
    "messages_sent": "messages/sent",
    "publish_received": "publish/received",
    "publish_sent": "publish/sent",
    "publish_dropped": "publish/dropped",
    "bytes_received": "bytes/received",
    "bytes_sent": "bytes/sent",
    "connections": "connections",
    "sockets": "sockets",
}


# --- Which brokers ----------------------------------------------------------------


class _Wanted:
    """The ids of brokers that want `$SYS/#`, re-read every WANTED_TTL seconds or
    when asked about a broker it has not seen yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded_at = -1e9
        self._wanted: frozenset[int] = frozenset()
        self._known: frozenset[int] = frozenset()

    def wants(self, broker_id: int, *, fresh: bool = False) -> bool:
        with self._lock:
            stale = fresh or time.monotonic() - self._loaded_at > WANTED_TTL
            if stale or broker_id not in self._known:
                rows = list(Broker.objects.values_list("pk", "collect_sys_stats"))
                managed = set(
                    Broker.objects.filter(managed_q()).values_list("pk", flat=True)
                )
                self._known = frozenset(pk for pk, _flag in rows)
                self._wanted = frozenset(pk for pk, flag in rows if flag) | managed
                self._loaded_at = time.monotonic()
            return broker_id in self._wanted


_wanted = _Wanted()


def sys_subscriptions(broker_id: int, *, fresh: bool = False) -> dict[str, int]:
    """What the runtime adds to a broker's subscriptions: `$SYS/#` at QoS 0, or
    nothing. A new session asks `fresh`: its broker may reuse a deleted one's id
    (SQLite), which the cached answer would still describe."""
    try:
        return {SYS_FILTER: 0} if _wanted.wants(broker_id, fresh=fresh) else {}
    except DatabaseError:
        # The reconcile loop copes with a failing database; $SYS can wait.
        logger.warning("could not read which brokers want $SYS", exc_info=True)
        return {}


# --- Ingest (the runtime's ingest thread) ---------------------------------------------


def route_sys_messages(batch: list[ReceivedMessage]) -> list[ReceivedMessage]:
    """The messages of `batch` to store as history: `$SYS/...` ones are recorded
    as broker statistics and connected clients instead."""
    if not any(message.topic.startswith(SYS_PREFIX) for message in batch):
        return batch
    rest: list[ReceivedMessage] = []
    by_broker: dict[int, list[ReceivedMessage]] = defaultdict(list)
    for message in batch:
        if message.topic.startswith(SYS_PREFIX):
            by_broker[message.broker_id].append(message)
        else:
            rest.append(message)
    for broker_id, messages in by_broker.items():
        try:
            with transaction.atomic():
                record_sys_messages(broker_id, messages)
        except IntegrityError:
            # The broker was deleted while its messages waited in the queue.
            logger.info("$SYS messages of broker %s dropped", broker_id)
        except DatabaseError:
            raise
        except Exception:
            # Statistics are best effort: never hold the broker's messages back.
            logger.exception("$SYS messages of broker %s could not be read", broker_id)
    return rest


def _text(payload: bytes) -> str:
    return payload.decode("utf-8", errors="replace")


def record_sys_messages(
    broker_id: int,
    messages: list[ReceivedMessage],
    now: datetime.datetime | None = None,
) -> None:
    """Record one broker's `$SYS` messages (in the order received)."""
    now = now or timezone.now()
    values: dict[str, str] = {}
    log_lines: list[tuple[datetime.datetime, str]] = []
    latest: datetime.datetime | None = None
    for message in messages:
        if message.topic.startswith(client_log.LOG_PREFIX):
            log_lines.append((message.received_at, _text(message.payload)))
        elif message.topic.startswith(BROKER_PREFIX):
            values[message.topic[len(BROKER_PREFIX) :]] = _text(message.payload)[:200]
            latest = message.received_at
    stats, _created = BrokerSysStats.objects.get_or_create(broker_id=broker_id)
    fields: list[str] = []
    if client_log.record_log(broker_id, log_lines):
        stats.log_seen_at = log_lines[-1][0]
        fields.append("log_seen_at")
    client_log.check_refused_logins(broker_id, now)
    if values and latest is not None:
        before, seen_before = stats.values, stats.updated_at
        stats.values = {**stats.values, **values}
        stats.updated_at = latest
        fields += ["values", "updated_at"]
        fields += broker_drops.check_dropped_messages(
            stats, before, seen_before, latest
        )
    if stats.values and (
        stats.sampled_at is None
        or (now - stats.sampled_at).total_seconds() >= sample_interval()
    ):
        _sample(broker_id, stats.values, now)
        stats.sampled_at = now
        fields.append("sampled_at")
    if fields:
        stats.save(update_fields=fields)


def sample_interval() -> float:
    return float(getattr(settings, "BROKER_STATS_SAMPLE_S", DEFAULT_SAMPLE_S))


def retention() -> datetime.timedelta:
    seconds = float(getattr(settings, "BROKER_STATS_RETENTION_S", DEFAULT_RETENTION_S))
    return datetime.timedelta(seconds=seconds)


def number(value: str | None) -> int | float | None:
    """`"12"`, `"7.30"`, `"8 seconds"` as a number; None when absent or not one."""
    if not value:
        return None
    word = value.split()[0] if value.split() else ""
    try:
        return int(word)
    except ValueError:
        try:
            return float(word)
        except ValueError:
            return None


def _rate(before: int | None, after: int | None, seconds: float) -> float | None:
    # A counter that went down means the broker restarted: no rate across that.
    if before is None or after is None or seconds <= 0 or after < before:
        return None
    return round((after - before) / seconds, 3)


def _count(values: dict[str, str], key: str) -> int | None:
    value = number(values.get(key))
    return int(value) if value is not None and value >= 0 else None


def _sample(broker_id: int, values: dict[str, str], now: datetime.datetime) -> None:
    previous = (
        BrokerStatsSample.objects.filter(broker_id=broker_id)
        .order_by("-sampled_at")
        .first()
    )
    received = _count(values, "messages/received")
    sent = _count(values, "messages/sent")
    seconds = (now - previous.sampled_at).total_seconds() if previous else 0.0
    BrokerStatsSample.objects.create(
        broker_id=broker_id,
        sampled_at=now,
        messages_received=received,
        messages_sent=sent,
        messages_received_per_s=_rate(
            previous.messages_received if previous else None, received, seconds
        ),
        messages_sent_per_s=_rate(
            previous.messages_sent if previous else None, sent, seconds
        ),
        clients_connected=_count(values, "clients/connected"),
    )
    BrokerStatsSample.objects.filter(
        broker_id=broker_id, sampled_at__lt=now - retention()
    ).delete()


# --- Reading ----------------------------------------------------------------------


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _why_empty(broker: Broker, collecting: bool) -> tuple[str, str]:
    """(reason, hint) when a broker has no $SYS data."""
    if not collecting:
        return "not_collected", _(
            "The portal does not subscribe to this broker's $SYS topics: turn on "
            "“collect $SYS statistics and connected clients” in its settings."
        )
    status = BrokerStatus.objects.filter(broker=broker).first()
    if not broker.enabled or status is None or not status.connected:
        return "not_connected", _(
            "The portal is not connected to this broker, so no $SYS data arrives."
        )
    return "no_data", _(
        "The broker has published no $SYS data: check that sys_interval is not 0 "
        "and that the portal's MQTT user may read $SYS/#."
    )


def series_of(broker: Broker, now: datetime.datetime | None = None) -> dict[str, Any]:
    """The time series for charts: seconds since the epoch and one list per value."""
    now = now or timezone.now()
    rows = list(
        BrokerStatsSample.objects.filter(
            broker=broker, sampled_at__gte=now - SERIES_WINDOW
        )
        .order_by("-sampled_at")
        .values_list(
            "sampled_at",
            "messages_received_per_s",
            "messages_sent_per_s",
            "clients_connected",
        )[:SERIES_POINTS]
    )
    rows.reverse()
    return {
        "t": [round(row[0].timestamp(), 3) for row in rows],
        "messages_received_per_s": [row[1] for row in rows],
        "messages_sent_per_s": [row[2] for row in rows],
        "clients_connected": [row[3] for row in rows],
    }


def stats_of(broker: Broker) -> dict[str, Any]:
    """What the stats API and the Stats tab show of a broker."""
    stats = BrokerSysStats.objects.filter(broker=broker).first()
    values: dict[str, str] = stats.values if stats else {}
    collecting = collects_sys_stats(broker)
    # Values kept from before collection was turned off are shown, marked as such.
    reason, hint = (
        (None, "") if values and collecting else _why_empty(broker, collecting)
    )

    def get(key: str) -> int | float | None:
        return number(values.get(key))

    return {
        "available": bool(values),
        "collecting": collecting,
        "reason": reason,
        "hint": hint,
        "version": values.get("version"),
        "uptime_seconds": get("uptime"),
        "clients": {
            "connected": get("clients/connected"),
            "total": get("clients/total"),
            "maximum": get("clients/maximum"),
            "disconnected": get("clients/disconnected"),
        },
        "messages": {
            "received": get("messages/received"),
            "sent": get("messages/sent"),
            "stored": get("messages/stored"),
        },
        "publish": {
            "received": get("publish/messages/received"),
            "sent": get("publish/messages/sent"),
            "dropped": get("publish/messages/dropped"),
        },
        "bytes": {"received": get("bytes/received"), "sent": get("bytes/sent")},
        "load_1min": {
            name: get(f"load/{path}/1min") for name, path in LOAD_1MIN.items()
        },
        "subscriptions": get("subscriptions/count"),
        "retained": get("retained messages/count"),
        "updated_at": _iso(stats.updated_at if stats else None),
        "series": series_of(broker),
    }
