"""Reads of devices, telemetry series, alert rules and alerts, scoped to a user.

Time buckets are computed in SQL (epoch seconds divided by the bucket size), so a
month of points becomes a few hundred rows before it leaves the database.
"""

from __future__ import annotations

import datetime
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db.models import (
    Avg,
    Count,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    Max,
    Min,
    Q,
    QuerySet,
    Value,
)
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from brokers.owners import SubscriptionOwner
from devices.models import AlertRule, Device, TelemetryPoint
from devices.sparklines import sparkline_svg
from mqttadmin.lib.times import parse_iso_time
from mqttadmin.models import Product

MAX_POINTS = 10_000
MAX_BUCKETS = 5_000
DEFAULT_SPAN = datetime.timedelta(hours=24)
BUCKET_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Tiles show the last 24 hours (what the users asked for) in 15-minute averages.
SPARKLINE_SPAN = datetime.timedelta(hours=24)
SPARKLINE_BUCKETS = 96
STATUS_FILTERS = ("online", "offline", "unknown", "stale")


class EpochSeconds(Func):
    """Whole seconds since 1970 of a datetime column (SQLite and PostgreSQL)."""

    output_field = IntegerField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            # %%%% survives the template (%%) and the SQLite cursor's %% to %.
            template="CAST(strftime('%%%%s', %(expressions)s) AS INTEGER)",
            **extra,
        )

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="FLOOR(EXTRACT(EPOCH FROM %(expressions)s))::bigint",
            **extra,
        )


# --- Devices ------------------------------------------------------------------


def devices_for(
    user: Any,
    product: Product | None = None,
    *,
    broker: int | None = None,
    status: str | None = None,
) -> QuerySet[Device]:
    """The devices a user sees, optionally of one product, broker or status
    (online, offline, unknown or stale)."""
    devices = Device.objects.for_user(user).select_related("broker", "product")
    if product is not None:
        devices = devices.filter(product=product)
    if broker is not None:
        devices = devices.filter(broker_id=broker)
    if status == "stale":
        devices = devices.stale()
    elif status:
        devices = devices.filter(status=status)
    return devices.order_by("name", "device_id")


# --- Telemetry series ---------------------------------------------------------


def parse_bucket(value: str | None) -> int | None:
    """`30s`, `1m`, `15m`, `1h`, `1d` as seconds; None for no bucketing."""
    if not value:
        return None
    match = re.fullmatch(r"(\d{1,6})([smhd])", value.strip())
    if not match or int(match.group(1)) == 0:
        raise ValidationError(
            {"bucket": _("A bucket is a number and a unit: 30s, 1m, 15m, 1h, 1d.")}
        )
    return int(match.group(1)) * BUCKET_UNITS[match.group(2)]


@dataclass(frozen=True)
class SeriesQuery:
    """A telemetry request: which key, which time range, which bucket size."""

    since: datetime.datetime
    until: datetime.datetime
    key: str | None = None
    bucket: int | None = None

    @classmethod
    def from_params(
        cls, params: Any, now: datetime.datetime | None = None
    ) -> SeriesQuery:
        now = now or timezone.now()
        errors: dict[str, str] = {}
        until = parse_iso_time(params.get("until"), "until", errors) or now
        since = parse_iso_time(params.get("since"), "since", errors) or (
            until - DEFAULT_SPAN
        )
        if since > until:
            errors["until"] = _("until is before since.")
        try:
            bucket = parse_bucket(params.get("bucket"))
        except ValidationError as exc:
            errors.update({k: v[0] for k, v in exc.message_dict.items()})
            bucket = None
        if bucket and not errors:
            buckets = (until - since).total_seconds() / bucket
            if buckets > MAX_BUCKETS:
                errors["bucket"] = _(
                    "That makes %(count)d buckets; at most %(max)d: choose a larger "
                    "bucket or a shorter range."
                ) % {"count": buckets, "max": MAX_BUCKETS}
        if errors:
            raise ValidationError(errors)
        key = (params.get("key") or "").strip() or None
        return cls(since=since, until=until, key=key, bucket=bucket)


def _points(device_ids: list[int], query: SeriesQuery) -> QuerySet[TelemetryPoint]:
    points = TelemetryPoint.objects.filter(
        device_id__in=device_ids, ts__gte=query.since, ts__lte=query.until
    )
    if query.key:
        points = points.filter(key=query.key)
    return points


def _bucket_expression(bucket: int) -> ExpressionWrapper:
    # Integer division on both databases: the bucket's number since 1970.
    return ExpressionWrapper(
        EpochSeconds(F("ts")) / Value(bucket), output_field=IntegerField()
    )


def _epoch(bucket_number: int, bucket: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(bucket_number * bucket, tz=datetime.UTC)


def telemetry_series(device: Device, query: SeriesQuery) -> dict[str, Any]:
    """Raw points (oldest first, at most MAX_POINTS) or per-bucket averages."""
    points = _points([device.pk], query)
    if not query.bucket:
        rows = list(
            points.order_by("ts", "id").values_list("key", "ts", "value")[
                : MAX_POINTS + 1
            ]
        )
        truncated = len(rows) > MAX_POINTS
        return {
            "points": [
                {"key": key, "ts": ts, "value": value}
                for key, ts, value in rows[:MAX_POINTS]
            ],
            "truncated": truncated,
        }
    buckets = (
        points.annotate(bucket=_bucket_expression(query.bucket))
        .values("key", "bucket")
        .annotate(avg=Avg("value"), low=Min("value"), high=Max("value"), n=Count("id"))
        .order_by("key", "bucket")
    )
    return {
        "points": [
            {
                "key": row["key"],
                "ts": _epoch(row["bucket"], query.bucket),
                "value": row["avg"],
                "min": row["low"],
                "max": row["high"],
                "count": row["n"],
            }
            for row in buckets
        ],
        "truncated": False,
    }


@dataclass(frozen=True)
class Bucketed:
    """Per-bucket statistics of one key, indexed from the range's start."""

    start: datetime.datetime
    bucket: int
    count: int
    avg: list[float | None]
    low: list[float | None]
    high: list[float | None]


def bucketed_series(
    device_ids: list[int], query: SeriesQuery
) -> dict[int, dict[str, Bucketed]]:
    """Bucketed series per device and key over the query's range, in one query:
    slot i covers [since + i*bucket, since + (i+1)*bucket); empty slots are None."""
    assert query.bucket
    bucket = query.bucket
    first = int(query.since.timestamp()) // bucket
    count = int(query.until.timestamp()) // bucket - first + 1
    rows = (
        _points(device_ids, query)
        .annotate(slot=_bucket_expression(bucket))
        .values("device_id", "key", "slot")
        .annotate(avg=Avg("value"), low=Min("value"), high=Max("value"))
    )
    found: dict[int, dict[str, Bucketed]] = defaultdict(dict)
    for row in rows:
        index = row["slot"] - first
        if not 0 <= index < count:
            continue
        series = found[row["device_id"]].get(row["key"])
        if series is None:
            series = Bucketed(
                start=_epoch(first, bucket),
                bucket=bucket,
                count=count,
                avg=[None] * count,
                low=[None] * count,
                high=[None] * count,
            )
            found[row["device_id"]][row["key"]] = series
        series.avg[index] = row["avg"]
        series.low[index] = row["low"]
        series.high[index] = row["high"]
    return found


def sparklines_for(
    devices: list[Device], now: datetime.datetime | None = None
) -> dict[int, dict[str, list[float | None]]]:
    """The last 24 hours per device and key in SPARKLINE_BUCKETS averages (slot i
    is the i-th bucket of the day; None where nothing arrived), for the tiles.

    Tiles are redrawn every few seconds, and a day of points is many rows: the
    complete buckets do not change, so they are read once per bucket and device
    (cached until the next bucket starts) and only the current bucket is read on
    every redraw.
    """
    if not devices:
        return {}
    now = now or timezone.now()
    bucket = int(SPARKLINE_SPAN.total_seconds()) // SPARKLINE_BUCKETS
    current = int(now.timestamp()) // bucket
    first = current - SPARKLINE_BUCKETS + 1
    complete_until = _epoch(current, bucket) - datetime.timedelta(microseconds=1)
    # The creation time tells a device from a deleted one whose pk came back.
    keys = {
        device.pk: (
            f"sparkline:{device.pk}:{device.created_at.timestamp()}:{bucket}:{current}"
        )
        for device in devices
    }
    cached: dict[str, dict[str, list[float | None]]] = cache.get_many(
        list(keys.values())
    )
    lines: dict[int, dict[str, list[float | None]]] = {}
    missing = []
    for device in devices:
        found = cached.get(keys[device.pk])
        if found is None:
            missing.append(device.pk)
        else:
            lines[device.pk] = {key: list(values) for key, values in found.items()}
    if missing:
        older = bucketed_series(
            missing,
            SeriesQuery(
                since=_epoch(first, bucket), until=complete_until, bucket=bucket
            ),
        )
        fresh = {
            pk: {key: [*series.avg, None] for key, series in older.get(pk, {}).items()}
            for pk in missing
        }
        cache.set_many(
            {keys[pk]: values for pk, values in fresh.items()}, timeout=bucket
        )
        lines.update(fresh)
    latest = bucketed_series(
        [device.pk for device in devices],
        SeriesQuery(since=_epoch(current, bucket), until=now, bucket=bucket),
    )
    for pk, series_by_key in latest.items():
        for key, series in series_by_key.items():
            values = lines[pk].setdefault(key, [None] * SPARKLINE_BUCKETS)
            values[-1] = series.avg[0]
    return lines


def recent_points(
    device: Device, query: SeriesQuery, limit: int = 100
) -> QuerySet[TelemetryPoint]:
    """The newest raw points in the range, for the detail page's table."""
    return _points([device.pk], query).order_by("-ts", "-id")[:limit]


# --- Alert rules -----------------------------------------------------------------


def alert_rules_for(user: Any) -> QuerySet[AlertRule]:
    return AlertRule.objects.for_user(user).select_related("device", "product")


def rules_of_device(device: Device) -> QuerySet[AlertRule]:
    """Rules that watch this device: its own and the product-wide ones."""
    return (
        AlertRule.objects.filter(product_id=device.product_id)
        .filter(Q(device=device) | Q(device__isnull=True))
        .order_by("key", "id")
    )


# --- Tiles --------------------------------------------------------------------

KEYS_PER_TILE = 6


@dataclass(frozen=True)
class TileValue:
    key: str
    value: Any
    sparkline: SafeString


@dataclass(frozen=True)
class Tile:
    device: Device
    values: list[TileValue]
    more: int


def device_tiles(devices: list[Device]) -> list[Tile]:
    """Tiles of the devices list and the overview: the first values with their
    sparklines."""
    lines = sparklines_for(devices)
    tiles = []
    for device in devices:
        items = device.value_items
        series = lines.get(device.pk, {})
        values = [
            TileValue(key, value, sparkline_svg(series.get(key, []), label=key))
            for key, value in items[:KEYS_PER_TILE]
        ]
        tiles.append(Tile(device, values, max(0, len(items) - KEYS_PER_TILE)))
    return tiles


def subscription_owners(ids: list[int]) -> dict[int, SubscriptionOwner]:
    """The devices whose telemetry or availability subscription is among `ids`
    (brokers.owners: the subscription pages link there and offer no Edit/Delete)."""
    owners: dict[int, SubscriptionOwner] = {}
    devices = Device.objects.filter(
        Q(telemetry_subscription_id__in=ids) | Q(availability_subscription_id__in=ids)
    ).only("pk", "name", "telemetry_subscription_id", "availability_subscription_id")
    for device in devices:
        owner = SubscriptionOwner(
            label=device.name, url=reverse("devices:detail", args=[device.pk])
        )
        for sid in (
            device.telemetry_subscription_id,
            device.availability_subscription_id,
        ):
            if sid is not None:
                owners[sid] = owner
    return owners
