"""Writes on devices, alert rules and alerts; commands, health and retention.

Every change is audited. A device's topics are kept subscribed on its broker through
managed Subscription rows (one for telemetry, one for availability), created,
changed and deleted here with the brokers services, which nudge the runtime.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from brokers import services as broker_services
from brokers.choices import PayloadEncoding
from brokers.models import Subscription
from devices.alerts import resolve_device_alerts, resolve_rule_alerts
from devices.models import AlertRule, Device, TelemetryPoint
from mqttadmin.audit import audit_record, diff, snapshot
from mqttadmin.models import Product

logger = logging.getLogger(__name__)

DEVICE_FIELDS = (
    "device_id",
    "name",
    "type",
    "broker",
    "topic",
    "telemetry_topic",
    "availability_topic",
    "payload_online",
    "payload_offline",
    "command_topic",
    "stale_after_s",
    "telemetry_retention_days",
)
RULE_FIELDS = (
    "device",
    "key",
    "op",
    "threshold",
    "severity",
    "notify_email",
    "notify_webhook",
    "enabled",
)
PRUNE_CHUNK = 10_000
TELEMETRY_QOS = 0  # high rate: a lost sample beats a duplicated one
AVAILABILITY_QOS = 1  # rare and important (the last will): at least once


def _check_fields(fields: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = set(fields) - set(allowed)
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")


# --- Managed subscriptions ----------------------------------------------------


def managed_subscriptions(device: Device) -> dict[str, dict[str, Any] | None]:
    """The Subscription each managed link should point at (None: no subscription)."""
    described = _("Kept in step with device %s; change the device instead.") % (
        device.device_id
    )
    specs: dict[str, dict[str, Any] | None] = {
        "telemetry_subscription": {
            "name": f"device {device.device_id} telemetry",
            "topic_filter": device.telemetry_topic,
            "qos": TELEMETRY_QOS,
            "store_messages": True,
            "description": described,
        },
        "availability_subscription": None,
    }
    if device.availability_topic:
        specs["availability_subscription"] = {
            "name": f"device {device.device_id} availability",
            "topic_filter": device.availability_topic,
            "qos": AVAILABILITY_QOS,
            "store_messages": True,
            "description": described,
        }
    return specs


def device_sync_subscriptions(*, actor: Any, device: Device) -> Device:
    """Create, change or delete the device's managed subscriptions to match it.

    A link cleared because someone deleted the subscription is recreated; a
    subscription of the right name already on the broker is taken over.
    """
    changed: list[str] = []
    for attr, spec in managed_subscriptions(device).items():
        current: Subscription | None = getattr(device, attr)
        if current is not None and (
            spec is None or current.broker_id != device.broker_id
        ):
            broker_services.subscription_delete(actor=actor, subscription=current)
            current = None
        if spec is not None:
            if current is None:
                current = Subscription.objects.filter(
                    broker=device.broker, name=spec["name"]
                ).first()
            if current is None:
                current = broker_services.subscription_create(
                    actor=actor, broker=device.broker, **spec
                )
            else:
                stale = {k: v for k, v in spec.items() if getattr(current, k) != v}
                if stale:
                    current = broker_services.subscription_update(
                        actor=actor, subscription=current, **stale
                    )
        if getattr(device, f"{attr}_id") != (current.pk if current else None):
            setattr(device, attr, current)
            changed.append(attr)
    if changed:
        device.save(update_fields=[*changed, "updated_at"])
    return device


# --- Devices ------------------------------------------------------------------


def _save_device(device: Device, previous_topic: str | None = None) -> None:
    device.apply_topic_defaults(previous_topic)
    device.full_clean()
    device.save()


@transaction.atomic
def device_create(*, actor: Any, product: Product, **fields: Any) -> Device:
    """Register a device; its broker subscribes to its topics within a second."""
    _check_fields(fields, DEVICE_FIELDS)
    device = Device(product=product, **fields)
    _save_device(device)
    audit_record(
        actor=actor,
        action="device.create",
        target=device,
        changes=diff({}, snapshot(device, DEVICE_FIELDS)),
    )
    return device_sync_subscriptions(actor=actor, device=device)


@transaction.atomic
def device_update(*, actor: Any, device: Device, **fields: Any) -> Device:
    """Change a device; its managed subscriptions follow (topics, broker)."""
    _check_fields(fields, DEVICE_FIELDS)
    before = snapshot(device, DEVICE_FIELDS)
    previous_topic = device.topic
    for name, value in fields.items():
        setattr(device, name, value)
    _save_device(device, previous_topic)
    changes = diff(before, snapshot(device, DEVICE_FIELDS))
    if changes:
        audit_record(
            actor=actor, action="device.update", target=device, changes=changes
        )
        if "stale_after_s" in changes:
            _refresh_stale_at(device)
        if "device_id" in changes:
            resolve_device_alerts(device.product_id, changes["device_id"][0])
    return device_sync_subscriptions(actor=actor, device=device)


def _refresh_stale_at(device: Device) -> None:
    stale_at = (
        device.last_seen_at + datetime.timedelta(seconds=device.stale_after_s)
        if device.last_seen_at and device.stale_after_s
        else None
    )
    stale = device.stale and stale_at is not None and stale_at <= timezone.now()
    Device.objects.filter(pk=device.pk).update(stale_at=stale_at, stale=stale)
    device.stale_at, device.stale = stale_at, stale


@transaction.atomic
def device_delete(*, actor: Any, device: Device) -> None:
    """Delete a device, its telemetry, rules and managed subscriptions; its open
    alerts resolve."""
    audit_record(
        actor=actor,
        action="device.delete",
        target=device,
        changes={"device_id": [device.device_id, None]},
    )
    for attr in ("telemetry_subscription", "availability_subscription"):
        subscription = getattr(device, attr)
        if subscription is not None:
            broker_services.subscription_delete(actor=actor, subscription=subscription)
    resolve_device_alerts(device.product_id, device.device_id)
    device.delete()


def device_command(
    *, actor: Any, device: Device, payload: Any, qos: int = 0, retain: bool = False
) -> int:
    """Publish a command to the device's command topic through its own broker.

    A string is sent as it is; an object or list as JSON. Raises ValidationError
    for a bad payload or QoS and brokers.client.PublishError when the broker
    cannot be reached.
    """
    encoding = (
        PayloadEncoding.UTF8 if isinstance(payload, str) else PayloadEncoding.JSON
    )
    request = broker_services.PublishRequest(
        topic=device.command_topic,
        payload=payload,
        encoding=encoding,
        qos=qos,
        retain=retain,
    )
    published = broker_services.broker_publish(
        actor=actor, broker=device.broker, requests=[request]
    )
    audit_record(
        actor=actor,
        action="device.command",
        target=device,
        changes={"topic": [None, device.command_topic]},
    )
    return published


def devices_mark_stale(now: datetime.datetime | None = None) -> int:
    """Mark devices whose stale_after_s ran out without a message; the next
    message clears the mark. Returns how many were newly marked."""
    now = now or timezone.now()
    return Device.objects.filter(stale=False, stale_at__lte=now).update(stale=True)


# --- Telemetry retention --------------------------------------------------------


def telemetry_prune(now: datetime.datetime | None = None) -> dict[int, int]:
    """Delete points older than each device's retention; returns deletions per
    device. A device without its own retention keeps telemetry as long as its
    broker keeps message history (Broker.history_max_age_days)."""
    now = now or timezone.now()
    removed: dict[int, int] = {}
    devices = Device.objects.values_list(
        "pk", "telemetry_retention_days", "broker__history_max_age_days"
    )
    for pk, own_days, broker_days in devices:
        cutoff = now - datetime.timedelta(days=own_days or broker_days)
        count = 0
        while True:
            # In chunks, so a large prune never holds long locks against ingest.
            ids = list(
                TelemetryPoint.objects.filter(device_id=pk, ts__lt=cutoff)
                .order_by("ts")
                .values_list("id", flat=True)[:PRUNE_CHUNK]
            )
            if not ids:
                break
            deleted, _per_model = TelemetryPoint.objects.filter(id__in=ids).delete()
            count += deleted
        if count:
            removed[pk] = count
    return removed


# --- Alert rules --------------------------------------------------------------


def _save_rule(rule: AlertRule) -> None:
    rule.full_clean()
    rule.save()


@transaction.atomic
def alert_rule_create(*, actor: Any, product: Product, **fields: Any) -> AlertRule:
    """A threshold on a key, for one device or (device None) all of the product."""
    _check_fields(fields, RULE_FIELDS)
    rule = AlertRule(product=product, **fields)
    _save_rule(rule)
    audit_record(
        actor=actor,
        action="alert_rule.create",
        target=rule,
        changes=diff({}, snapshot(rule, RULE_FIELDS)),
    )
    return rule


@transaction.atomic
def alert_rule_update(*, actor: Any, rule: AlertRule, **fields: Any) -> AlertRule:
    """Change a rule; its open alerts resolve when it is disabled or now watches
    another key or device (the next value decides again)."""
    _check_fields(fields, RULE_FIELDS)
    before = snapshot(rule, RULE_FIELDS)
    for name, value in fields.items():
        setattr(rule, name, value)
    _save_rule(rule)
    changes = diff(before, snapshot(rule, RULE_FIELDS))
    if changes:
        audit_record(
            actor=actor, action="alert_rule.update", target=rule, changes=changes
        )
        if not rule.enabled or {"key", "device"} & set(changes):
            resolve_rule_alerts(rule)
    return rule


@transaction.atomic
def alert_rule_delete(*, actor: Any, rule: AlertRule) -> None:
    """Delete a rule and resolve the alerts it left open."""
    audit_record(
        actor=actor,
        action="alert_rule.delete",
        target=rule,
        changes={"key": [rule.key, None]},
    )
    resolve_rule_alerts(rule)
    rule.delete()
