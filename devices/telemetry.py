"""From received MQTT messages to device telemetry, availability and alerts.

The runtime's ingest calls `ingest_batch` inside its transaction, once per batch:
one query finds the devices of the batch's brokers (nothing is cached across
batches, so device edits apply to the next batch), points are bulk-inserted, and
each device row is updated once. The `telemetry` subscription action uses the same
code through `telemetry_from_message`.

Flattening rules (decided here, tested in tests/devices/test_flatten.py):
- A JSON object gives one key per numeric leaf, nested keys joined with "."
  ({"temperature": 21.5, "env": {"hum": 40}} gives temperature and env.hum). The
  topic is not part of the key.
- true/false count as 1/0 (door open, relay on). Strings, null and arrays are
  ignored: arrays have no stable names, and numbers in strings are guesses.
- A payload that is a plain number (or JSON number/boolean) gives one key named
  after the last topic level (plant/d1/temperature 21.5 gives temperature).
- NaN and infinities are dropped; at most MAX_KEYS keys per message.

Messages on a device's availability topic set its status (the payloads compare
after trimming spaces); messages on its command topic are not telemetry.

Retained messages are what a (re)subscription replays: they update the latest
values and the status but are not stored as points again, do not count as the
device being seen and do not trigger alert rules.
"""

from __future__ import annotations

import datetime
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction

from devices.alerts import evaluate_rules
from devices.choices import DeviceStatus
from devices.models import MAX_KEY_LENGTH, Device, TelemetryPoint
from mqttadmin.lib.payloads import parse_json
from mqttadmin.lib.topics import topic_matches
from mqttadmin.lib.units import decimals_of

if TYPE_CHECKING:
    from mqttadmin.pipeline import ReceivedMessage

logger = logging.getLogger(__name__)

MAX_KEYS = 100
MAX_DEPTH = 8

DEVICE_FIELDS = (
    "pk",
    "product_id",
    "broker_id",
    "device_id",
    "name",
    "telemetry_topic",
    "availability_topic",
    "command_topic",
    "payload_online",
    "payload_offline",
)


# --- Flattening ---------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None


def _walk(data: dict[str, Any], prefix: str, out: dict[str, float], depth: int) -> None:
    for raw_key, value in data.items():
        if len(out) >= MAX_KEYS:
            return
        key = str(raw_key).strip()
        if not key:
            continue
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            if depth < MAX_DEPTH:
                _walk(value, name, out, depth + 1)
            continue
        number = _number(value)
        if number is not None and len(name) <= MAX_KEY_LENGTH:
            out[name] = number


def flatten_payload(payload: bytes, topic: str) -> dict[str, float]:
    """The numeric values of one message, by key (see the module's rules)."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return {}
    if not text:
        return {}
    # Bounded (depth, size): a deep payload is no telemetry, and must not fail
    # the ingest batch it came in. NaN and infinities are dropped by _number.
    parsed = parse_json(text, allow_non_finite=True)
    data: Any = None if parsed is None else parsed.value
    if parsed is None:
        try:
            data = float(text)
        except ValueError:
            return {}
    if isinstance(data, dict):
        out: dict[str, float] = {}
        _walk(data, "", out, 0)
        return out
    number = _number(data)
    key = topic.rsplit("/", 1)[-1]
    if number is None or not key or len(key) > MAX_KEY_LENGTH:
        return {}
    return {key: number}


# --- Matching messages to devices ---------------------------------------------


@dataclass(frozen=True)
class DeviceRef:
    """What matching needs of a device: read once per batch with values()."""

    pk: int
    product_id: int
    broker_id: int
    device_id: str
    name: str
    telemetry_topic: str
    availability_topic: str
    command_topic: str
    payload_online: str
    payload_offline: str


class DeviceIndex:
    """The devices of some brokers, indexed so a topic finds its devices without
    testing every filter: `a/b/#` and exact filters are dictionary lookups on the
    topic's prefixes; other filters (`a/+/c`) are tested one by one."""

    def __init__(self, devices: list[DeviceRef]) -> None:
        self.devices = {device.pk: device for device in devices}
        self._prefix: dict[tuple[int, str], list[DeviceRef]] = defaultdict(list)
        self._exact: dict[tuple[int, str], list[DeviceRef]] = defaultdict(list)
        self._other: dict[int, list[DeviceRef]] = defaultdict(list)
        self._availability: dict[tuple[int, str], list[DeviceRef]] = defaultdict(list)
        for device in devices:
            topic_filter = device.telemetry_topic
            levels = topic_filter.split("/")
            wildcard_levels = [lv for lv in levels if lv in ("+", "#")]
            if not wildcard_levels:
                self._exact[(device.broker_id, topic_filter)].append(device)
            elif wildcard_levels == ["#"] and len(levels) > 1:
                prefix = "/".join(levels[:-1])
                self._prefix[(device.broker_id, prefix)].append(device)
            elif topic_filter:
                self._other[device.broker_id].append(device)
            if device.availability_topic:
                key = (device.broker_id, device.availability_topic)
                self._availability[key].append(device)

    def availability(self, broker_id: int, topic: str) -> list[DeviceRef]:
        return self._availability.get((broker_id, topic), [])

    def telemetry(self, broker_id: int, topic: str) -> list[DeviceRef]:
        """Devices whose telemetry filter matches, less those for which the topic
        is their availability or command topic."""
        found = list(self._exact.get((broker_id, topic), []))
        levels = topic.split("/")
        for end in range(1, len(levels) + 1):
            found.extend(self._prefix.get((broker_id, "/".join(levels[:end])), []))
        found.extend(
            device
            for device in self._other.get(broker_id, [])
            if topic_matches(device.telemetry_topic, topic)
        )
        return [
            device
            for device in found
            if topic not in (device.availability_topic, device.command_topic)
        ]


def devices_of_brokers(broker_ids: set[int]) -> list[DeviceRef]:
    """One query for every device of these brokers."""
    rows = Device.objects.filter(broker_id__in=broker_ids).values_list(*DEVICE_FIELDS)
    return [DeviceRef(*row) for row in rows]


# --- Applying a batch ---------------------------------------------------------


@dataclass
class DeviceUpdate:
    """What one batch changes on one device, written with one UPDATE."""

    values: dict[str, tuple[float, datetime.datetime]] = field(default_factory=dict)
    seen_at: datetime.datetime | None = None
    status: str | None = None
    status_at: datetime.datetime | None = None
    # (key, ts, value) in arrival order, for the alert rules.
    readings: list[tuple[str, datetime.datetime, float]] = field(default_factory=list)
    # The most decimals each key's values in the batch needed (its display width).
    decimals: dict[str, int] = field(default_factory=dict)

    def saw(self, at: datetime.datetime) -> None:
        """The device spoke at `at` (messages need not arrive in time order)."""
        if self.seen_at is None or at > self.seen_at:
            self.seen_at = at


@dataclass
class IngestResult:
    points: int = 0
    devices: set[int] = field(default_factory=set)


def _availability_state(device: DeviceRef, payload: bytes) -> str | None:
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if text == device.payload_online.strip():
        return DeviceStatus.ONLINE
    if text == device.payload_offline.strip():
        return DeviceStatus.OFFLINE
    return None


# (device pk, key, ts, value): a TelemetryPoint row without the model around it.
Point = tuple[int, str, datetime.datetime, float]


def _collect(
    batch: list[ReceivedMessage], index: DeviceIndex
) -> tuple[list[Point], dict[int, DeviceUpdate]]:
    points: list[Point] = []
    updates: dict[int, DeviceUpdate] = defaultdict(DeviceUpdate)
    for message in batch:
        at = message.received_at
        for device in index.availability(message.broker_id, message.topic):
            state = _availability_state(device, message.payload)
            if state is None:
                logger.debug("device %s: unknown availability payload", device.pk)
                continue
            update = updates[device.pk]
            update.status, update.status_at = state, at
            if state == DeviceStatus.ONLINE and not message.retain:
                update.saw(at)
        devices = index.telemetry(message.broker_id, message.topic)
        if not devices:
            continue
        values = flatten_payload(message.payload, message.topic)
        for device in devices:
            update = updates[device.pk]
            for key, value in values.items():
                previous = update.values.get(key)
                if previous is None or at >= previous[1]:
                    update.values[key] = (value, at)
                update.decimals[key] = max(
                    update.decimals.get(key, 0), decimals_of(value)
                )
            if message.retain:
                continue
            update.saw(at)
            if not device.availability_topic:
                # Without an availability topic, talking is the only sign of life.
                update.status, update.status_at = DeviceStatus.ONLINE, at
            for key, value in values.items():
                points.append((device.pk, key, at, value))
                update.readings.append((key, at, value))
    return points, updates


def _without_stored(points: list[Point]) -> list[Point]:
    """Drop points whose device already has points at that time: the subscription
    action may hand over a message ingest has stored already."""
    if not points:
        return points
    stored = set(
        TelemetryPoint.objects.filter(
            device_id__in={p[0] for p in points}, ts__in={p[2] for p in points}
        ).values_list("device_id", "ts")
    )
    return [p for p in points if (p[0], p[2]) not in stored]


def _insert_points(points: list[Point]) -> None:
    """Insert in bulk without model instances: COPY on PostgreSQL, executemany
    elsewhere (several times faster than bulk_create for thousands of rows)."""
    if not points:
        return
    table = TelemetryPoint._meta.db_table
    columns = "device_id, key, ts, value"
    if connection.vendor == "postgresql":
        sql = f"COPY {table} ({columns}) FROM STDIN"
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            for row in points:
                copy.write_row(row)
        return
    adapt = connection.ops.adapt_datetimefield_value
    sql = f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s)"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.executemany(
            sql, [(pk, key, adapt(ts), value) for pk, key, ts, value in points]
        )


def _write_devices(updates: dict[int, DeviceUpdate]) -> None:
    """One UPDATE per device, rows locked in id order so concurrent writers (the
    action runner, another runtime) neither lose keys nor deadlock."""
    rows = (
        Device.objects.select_for_update()
        .filter(pk__in=updates)
        .order_by("pk")
        .values_list("pk", "last_values", "last_seen_at", "stale_after_s", "status")
    )
    for pk, last_values, last_seen_at, stale_after_s, status in rows:
        update = updates[pk]
        fields: dict[str, Any] = {}
        if update.values:
            merged = dict(last_values or {})
            for key, (value, at) in update.values.items():
                stamp = at.isoformat()
                previous = merged.get(key)
                # The key's precision only grows: its numbers keep one width.
                decimals = update.decimals.get(key, 0)
                if isinstance(previous, dict):
                    before = previous.get("decimals")
                    if isinstance(before, int) and not isinstance(before, bool):
                        decimals = max(decimals, before)
                    # An older message handed over late must not overwrite a
                    # newer one (its decimals still count).
                    if str(previous.get("ts", "")) > stamp:
                        merged[key] = {**previous, "decimals": decimals}
                        continue
                merged[key] = {"value": value, "ts": stamp, "decimals": decimals}
            fields["last_values"] = merged
        if update.seen_at and (last_seen_at is None or update.seen_at > last_seen_at):
            fields["last_seen_at"] = update.seen_at
            fields["stale"] = False
            fields["stale_at"] = (
                update.seen_at + datetime.timedelta(seconds=stale_after_s)
                if stale_after_s
                else None
            )
        if update.status and update.status != status:
            fields["status"] = update.status
            fields["status_changed_at"] = update.status_at
        if fields:
            Device.objects.filter(pk=pk).update(**fields)


def _apply(batch: list[ReceivedMessage], *, skip_stored: bool) -> IngestResult:
    result = IngestResult()
    devices = devices_of_brokers({m.broker_id for m in batch})
    if not devices:
        return result
    index = DeviceIndex(devices)
    points, updates = _collect(batch, index)
    if not updates:
        return result
    if skip_stored:
        points = _without_stored(points)
    _insert_points(points)
    _write_devices(updates)
    readings = {pk: u.readings for pk, u in updates.items() if u.readings}
    if readings:
        evaluate_rules(index.devices, readings)
    result.points = len(points)
    result.devices = set(updates)
    return result


def ingest_batch(batch: list[ReceivedMessage]) -> None:
    """Telemetry, availability and alert rules for one ingest batch, inside the
    caller's transaction (brokers.ingest runs it before committing)."""
    if batch:
        _apply(batch, skip_stored=False)


def telemetry_from_message(
    *, broker_id: int, topic: str, payload: bytes, received_at: datetime.datetime
) -> int:
    """One message handed over by a `telemetry` subscription action; returns the
    number of points stored (0 when ingest stored them already)."""
    from mqttadmin.pipeline import ReceivedMessage

    message = ReceivedMessage(
        broker_id=broker_id,
        topic=topic,
        payload=payload,
        qos=0,
        retain=False,
        received_at=received_at,
    )
    with transaction.atomic():
        return _apply([message], skip_stored=True).points
