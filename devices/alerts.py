"""Alerts raised by device rules and by broker connections that stay down.

Rule alerts carry `rule_key = alert_key("rule", <rule id>)` and the device id as
subject; the database allows one open alert per (rule_key, subject), so two
writers racing to open the same alert end with one. Broker alerts carry
`alert_key("broker", <broker id>, "disconnected")`.

Alerts are written through alerts.services; a rule's e-mails and webhook are its
notify targets (`rule_alert_targets`, registered in DevicesConfig.ready()), sent
once the ingest transaction commits.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Protocol

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from alerts.models import Alert, AlertState, Severity
from alerts.services import (
    NotifyTargets,
    alert_key,
    alert_open,
    alert_resolve,
    alerts_resolve,
)
from brokers.choices import ConnectionState
from brokers.models import Broker
from devices.models import AlertRule, Device, split_emails
from mqttadmin.lib.units import format_instant_utc

logger = logging.getLogger(__name__)

# How long an enabled broker may stay disconnected before it raises an alert.
# One global setting (seconds); DEVICES_BROKER_DOWN_ALERT_S overrides the default.
DEFAULT_BROKER_DOWN_ALERT_S = 300
RULE_KIND = "rule"
BROKER_KIND = "broker"
BROKER_RULE_PREFIX = alert_key(BROKER_KIND, "")
DISCONNECTED_SUFFIX = ":disconnected"


class RuleDevice(Protocol):
    """What rules need of a device (devices.telemetry.DeviceRef has it; naming
    that module here would make an import cycle, as it calls evaluate_rules)."""

    @property
    def product_id(self) -> int: ...
    @property
    def device_id(self) -> str: ...
    @property
    def name(self) -> str: ...


def alert_subject_links(alerts: list[Alert]) -> dict[int, str]:
    """Rule alerts link to their device's page (one query for the lot)."""
    wanted = {(alert.product_id, alert.subject) for alert in alerts}
    devices = Device.objects.filter(
        product_id__in={product_id for product_id, _subject in wanted},
        device_id__in={subject for _product_id, subject in wanted},
    ).values_list("product_id", "device_id", "pk")
    pages = {(product_id, device_id): pk for product_id, device_id, pk in devices}
    return {
        alert.pk: reverse("devices:detail", args=[pk])
        for alert in alerts
        if (pk := pages.get((alert.product_id, alert.subject))) is not None
    }


def broker_alert_subject_links(alerts: list[Alert]) -> dict[int, str]:
    """A broker's alerts link to its page (the id is in the rule key)."""
    links = {}
    for alert in alerts:
        broker_id = alert.rule_key.split(":")[1]
        if broker_id.isdigit():
            links[alert.pk] = reverse("brokers:detail", args=[int(broker_id)])
    return links


def broker_rule_key(broker_id: int) -> str:
    return alert_key(BROKER_KIND, broker_id, "disconnected")


def rule_targets(rule: AlertRule) -> NotifyTargets:
    """Who a rule tells about its alerts."""
    return NotifyTargets(
        emails=tuple(split_emails(rule.notify_email)), webhook=rule.notify_webhook
    )


def rule_alert_targets(alert: Alert) -> NotifyTargets | None:
    """The notify targets of a rule alert, as its rule says now (None when the
    rule is gone)."""
    kind, _sep, pk = alert.rule_key.partition(":")
    if kind != RULE_KIND or not pk.isdigit():
        return None
    rule = AlertRule.objects.filter(pk=int(pk)).first()
    return rule_targets(rule) if rule is not None else None


def _format(value: float) -> str:
    return f"{value:g}"


def _rule_message(rule: AlertRule, device: RuleDevice, value: float) -> str:
    return _("%(device)s: %(key)s is %(value)s (%(op)s %(threshold)s)") % {
        "device": device.name,
        "key": rule.key,
        "value": _format(value),
        "op": rule.op,
        "threshold": _format(rule.threshold),
    }


def _open(
    rule: AlertRule, device: RuleDevice, value: float, at: datetime.datetime
) -> Alert | None:
    """Open the rule's alert about the device; None when another writer opened
    it first."""
    return alert_open(
        product_id=device.product_id,
        key=rule.rule_key,
        subject=device.device_id,
        severity=rule.severity,
        message=_rule_message(rule, device, value),
        value=value,
        threshold=rule.threshold,
        notify=rule_targets(rule),
    )


def evaluate_rules(
    devices: Mapping[int, RuleDevice],
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
                elif current is not None:
                    alert_resolve(
                        current, value=value, at=at, notify=rule_targets(rule)
                    )
                    del open_alerts[slot]


def resolve_rule_alerts(rule: AlertRule) -> int:
    """Resolve what a rule left open (it was deleted or disabled)."""
    return alerts_resolve(key=rule.rule_key)


def resolve_device_alerts(product_id: int, device_id: str) -> int:
    """Resolve the rule alerts open about a device id (the device is deleted or
    renamed: its subject would never be judged again)."""
    return alerts_resolve(
        product_id=product_id, subject=device_id, key_prefix=alert_key(RULE_KIND, "")
    )


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
            state=AlertState.OPEN,
            # Not the broker's other alerts (refused logins): only these.
            rule_key__startswith=BROKER_RULE_PREFIX,
            rule_key__endswith=DISCONNECTED_SUFFIX,
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
            alert_resolve(current, at=now)
            resolved += 1
    for key, alert in open_alerts.items():
        if key not in seen:  # the broker is gone
            alert_resolve(alert, at=now)
            resolved += 1
    return {"opened": opened, "resolved": resolved}


def _open_broker_alert(broker: Broker, since: datetime.datetime) -> bool:
    status = getattr(broker, "status", None)
    error = status.connection_error if status is not None else ""
    message = _("Broker %(broker)s has been disconnected since %(since)s.") % {
        "broker": broker.name,
        # Stored text read by users in any zone: written in UTC, and says so.
        "since": format_instant_utc(since),
    }
    if error:
        message = f"{message} {error}"
    alert = alert_open(
        product_id=broker.product_id,
        key=broker_rule_key(broker.pk),
        subject=broker.name,
        severity=Severity.CRITICAL,
        message=message,
    )
    return alert is not None
