"""Alerts raised by device rules and by broker connections that stay down.

Rule alerts carry `rule_key = "rule:<rule id>"` and the device id as subject; the
database allows one open alert per (rule_key, subject), so two writers racing to
open the same alert end with one. Broker alerts carry
`rule_key = "broker:<broker id>:disconnected"`.

Notifications (e-mail, webhook) never run inside the ingest transaction: they are
enqueued once it commits (devices.tasks.enqueue_notification).
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from brokers.choices import ConnectionState
from brokers.models import Broker
from dashboard.models import Alert, AlertState, Severity
from devices.models import AlertRule

if TYPE_CHECKING:
    from devices.telemetry import DeviceRef

logger = logging.getLogger(__name__)

# How long an enabled broker may stay disconnected before it raises an alert.
# One global setting (seconds); DEVICES_BROKER_DOWN_ALERT_S overrides the default.
DEFAULT_BROKER_DOWN_ALERT_S = 300
BROKER_RULE_PREFIX = "broker:"


def broker_rule_key(broker_id: int) -> str:
    return f"{BROKER_RULE_PREFIX}{broker_id}:disconnected"


def _format(value: float) -> str:
    return f"{value:g}"


def _rule_message(rule: AlertRule, device: DeviceRef, value: float) -> str:
    return _("%(device)s: %(key)s is %(value)s (%(op)s %(threshold)s)") % {
        "device": device.name,
        "key": rule.key,
        "value": _format(value),
        "op": rule.op,
        "threshold": _format(rule.threshold),
    }


def _open(
    rule: AlertRule, device: DeviceRef, value: float, at: datetime.datetime
) -> Alert | None:
    """Open the alert; None when another writer opened it first."""
    try:
        with transaction.atomic():
            return Alert.objects.create(
                product_id=device.product_id,
                rule_key=rule.rule_key,
                subject=device.device_id,
                severity=rule.severity,
                message=_rule_message(rule, device, value),
                value=value,
                threshold=rule.threshold,
            )
    except IntegrityError:
        return None


def _resolve(alert: Alert, value: float | None, at: datetime.datetime) -> None:
    alert.state = AlertState.RESOLVED
    alert.resolved_at = at
    fields = ["state", "resolved_at"]
    if value is not None:
        alert.value = value
        fields.append("value")
    alert.save(update_fields=fields)


def evaluate_rules(
    devices: Mapping[int, DeviceRef],
    readings: Mapping[int, list[tuple[str, datetime.datetime, float]]],
) -> None:
    """Open or resolve rule alerts for new readings, in the order they arrived.

    Two queries per batch (the rules for the keys that changed, their open
    alerts), whatever the number of readings.
    """
    product_ids = {devices[pk].product_id for pk in readings}
    keys = {key for series in readings.values() for key, _at, _v in series}
    rules = list(
        AlertRule.objects.filter(product_id__in=product_ids, key__in=keys, enabled=True)
    )
    if not rules:
        return
    by_key: dict[tuple[int, str], list[AlertRule]] = defaultdict(list)
    for rule in rules:
        by_key[(rule.product_id, rule.key)].append(rule)
    subjects = {devices[pk].device_id for pk in readings}
    open_alerts = {
        (alert.rule_key, alert.subject): alert
        for alert in Alert.objects.filter(
            state=AlertState.OPEN,
            rule_key__in=[rule.rule_key for rule in rules],
            subject__in=subjects,
        )
    }
    for device_pk, series in readings.items():
        device = devices[device_pk]
        for key, at, value in series:
            for rule in by_key.get((device.product_id, key), ()):
                if rule.device_id not in (None, device_pk):
                    continue
                slot = (rule.rule_key, device.device_id)
                current = open_alerts.get(slot)
                if rule.crossed(value):
                    if current is None:
                        alert = _open(rule, device, value, at)
                        if alert is not None:
                            open_alerts[slot] = alert
                            _notify(rule, alert, "opened")
                elif current is not None:
                    _resolve(current, value, at)
                    del open_alerts[slot]
                    _notify(rule, current, "resolved")


def _notify(rule: AlertRule, alert: Alert, event: str) -> None:
    if rule.notify_email or rule.notify_webhook:
        from devices.tasks import enqueue_notification

        enqueue_notification(alert.pk, event)


def resolve_rule_alerts(rule: AlertRule) -> int:
    """Resolve what a rule left open (it was deleted or disabled)."""
    return Alert.objects.filter(rule_key=rule.rule_key, state=AlertState.OPEN).update(
        state=AlertState.RESOLVED, resolved_at=timezone.now()
    )


def resolve_device_alerts(product_id: int, device_id: str) -> int:
    """Resolve the rule alerts open about a device id (the device is deleted or
    renamed: its subject would never be judged again)."""
    return Alert.objects.filter(
        product_id=product_id,
        subject=device_id,
        state=AlertState.OPEN,
        rule_key__startswith="rule:",
    ).update(state=AlertState.RESOLVED, resolved_at=timezone.now())


# --- Broker connections -------------------------------------------------------


def broker_down_after() -> datetime.timedelta:
    seconds = getattr(
        settings, "DEVICES_BROKER_DOWN_ALERT_S", DEFAULT_BROKER_DOWN_ALERT_S
    )
    return datetime.timedelta(seconds=float(seconds))


def _down_since(broker: Broker) -> datetime.datetime | None:
    """When an enabled broker's connection went down; None while it is up (or
    disabled: a broker switched off on purpose is not an incident)."""
    if not broker.enabled:
        return None
    status = getattr(broker, "status", None)
    if status is not None and status.state == ConnectionState.CONNECTED:
        return None
    since = status.last_disconnected_at if status is not None else None
    # Never connected since it was created: down since then.
    return since or broker.created_at


def check_broker_connections(
    now: datetime.datetime | None = None,
) -> dict[str, int]:
    """Open an alert for each enabled broker down longer than the set time, and
    resolve the alerts of brokers that came back, were disabled or deleted."""
    now = now or timezone.now()
    after = broker_down_after()
    open_alerts = {
        alert.rule_key: alert
        for alert in Alert.objects.filter(
            state=AlertState.OPEN, rule_key__startswith=BROKER_RULE_PREFIX
        )
    }
    opened = resolved = 0
    seen: set[str] = set()
    for broker in Broker.objects.select_related("status"):
        key = broker_rule_key(broker.pk)
        seen.add(key)
        since = _down_since(broker)
        current = open_alerts.get(key)
        if since is not None and now - since >= after:
            if current is None and _open_broker_alert(broker, since):
                opened += 1
        elif current is not None:
            _resolve(current, None, now)
            resolved += 1
    for key, alert in open_alerts.items():
        if key not in seen:  # the broker is gone
            _resolve(alert, None, now)
            resolved += 1
    return {"opened": opened, "resolved": resolved}


def _open_broker_alert(broker: Broker, since: datetime.datetime) -> bool:
    status = getattr(broker, "status", None)
    error = status.connection_error if status is not None else ""
    message = _("Broker %(broker)s has been disconnected since %(since)s.") % {
        "broker": broker.name,
        "since": timezone.localtime(since).strftime("%Y-%m-%d %H:%M:%S"),
    }
    if error:
        message = f"{message} {error}"
    try:
        with transaction.atomic():
            Alert.objects.create(
                product_id=broker.product_id,
                rule_key=broker_rule_key(broker.pk),
                subject=broker.name,
                severity=Severity.CRITICAL,
                message=message,
            )
    except IntegrityError:
        return False
    return True
