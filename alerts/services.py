"""Opening, resolving and acknowledging alerts, and telling people about them.

Every producer (device rules, broker connections, refused logins, subscription
actions) writes alerts through these functions, with a key from `alert_key`, so
there is one key format and one notification path.

Notification: a producer that has targets (e-mails, a webhook) passes them as
`notify`; the alert's id and event are then queued, once the transaction commits,
as the task `devices.notify_alert` (alerts.tasks). Task messages carry ids only (a
webhook URL can hold a token, and Redis is not a vault), so the task asks the
producer for the targets again through the resolver it registered for its key's
kind (`register_notify_targets`): what the rule says when the mail goes out.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from alerts.models import Alert, AlertState, Severity, alert_key, kind_of
from alerts.notify import NotifyError, webhook_post
from mqttadmin.audit import audit_record
from mqttadmin.background import enqueue_on_commit

logger = logging.getLogger(__name__)

__all__ = [
    "NotifyTargets",
    "alert_acknowledge",
    "alert_key",
    "alert_notify",
    "alert_open",
    "alert_resolve",
    "alerts_resolve",
    "register_notify_targets",
]

# The task's name from before the alerts app: queued messages stay deliverable.
NOTIFY_TASK = "devices.notify_alert"
OPENED = "opened"
RESOLVED = "resolved"


@dataclass(frozen=True)
class NotifyTargets:
    """Where news of an alert goes: e-mail addresses and one webhook URL."""

    emails: tuple[str, ...] = ()
    webhook: str = ""

    def __bool__(self) -> bool:
        return bool(self.emails or self.webhook)


TargetsResolver = Callable[[Alert], "NotifyTargets | None"]
_resolvers: dict[str, TargetsResolver] = {}


def register_notify_targets(kind: str, resolver: TargetsResolver) -> None:
    """Name who is told about alerts of a kind (called from AppConfig.ready())."""
    _resolvers[kind] = resolver


def notify_targets_of(alert: Alert) -> NotifyTargets | None:
    resolver = _resolvers.get(kind_of(alert.rule_key))
    return resolver(alert) if resolver is not None else None


def _notify_later(alert: Alert, event: str, notify: NotifyTargets | None) -> None:
    if notify:
        enqueue_on_commit(NOTIFY_TASK, alert.pk, event)


def alert_open(
    *,
    product_id: int,
    key: str,
    subject: str,
    message: str,
    severity: str = Severity.WARNING,
    value: float | None = None,
    threshold: float | None = None,
    notify: NotifyTargets | None = None,
) -> Alert | None:
    """Open an alert about `subject`; None when one is open already for this key
    and subject (the database allows one: two writers racing end with one)."""
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                product_id=product_id,
                rule_key=key,
                subject=subject,
                severity=severity,
                message=message,
                value=value,
                threshold=threshold,
            )
    except IntegrityError:
        return None
    _notify_later(alert, OPENED, notify)
    return alert


def alert_resolve(
    alert: Alert,
    *,
    value: float | None = None,
    at: datetime.datetime | None = None,
    notify: NotifyTargets | None = None,
) -> Alert:
    """Resolve an open alert (with the value that brought it back, if any)."""
    alert.state = AlertState.RESOLVED
    alert.resolved_at = at or timezone.now()
    fields = ["state", "resolved_at"]
    if value is not None:
        alert.value = value
        fields.append("value")
    alert.save(update_fields=fields)
    _notify_later(alert, RESOLVED, notify)
    return alert


def alerts_resolve(
    *,
    key: str | None = None,
    key_prefix: str | None = None,
    product_id: int | None = None,
    subject: str | None = None,
    value: float | None = None,
) -> int:
    """Resolve the open alerts that match, in one query, without notifying (their
    rule or subject went away). Returns how many."""
    alerts = Alert.objects.filter(state=AlertState.OPEN)
    if key is not None:
        alerts = alerts.filter(rule_key=key)
    if key_prefix is not None:
        alerts = alerts.filter(rule_key__startswith=key_prefix)
    if product_id is not None:
        alerts = alerts.filter(product_id=product_id)
    if subject is not None:
        alerts = alerts.filter(subject=subject)
    changes: dict[str, Any] = {
        "state": AlertState.RESOLVED,
        "resolved_at": timezone.now(),
    }
    if value is not None:
        changes["value"] = value
    return alerts.update(**changes)


@transaction.atomic
def alert_acknowledge(*, actor: Any, alert: Alert) -> Alert:
    """Record that a user has seen the alert (once; later calls change nothing)."""
    if alert.acknowledged_at is not None:
        return alert
    alert.acknowledged_by = actor
    alert.acknowledged_at = timezone.now()
    alert.save(update_fields=["acknowledged_by", "acknowledged_at"])
    audit_record(
        actor=actor,
        action="alert.acknowledge",
        target=alert,
        product=alert.product,
        changes={"acknowledged_at": [None, alert.acknowledged_at.isoformat()]},
    )
    return alert


def alert_payload(alert: Alert, event: str) -> dict[str, Any]:
    """What webhooks receive about an alert."""
    return {
        "event": event,
        "alert": {
            "id": alert.pk,
            "product": alert.product_id,
            "rule_key": alert.rule_key,
            "subject": alert.subject,
            "severity": alert.severity,
            "state": alert.state,
            "message": alert.message,
            "value": alert.value,
            "threshold": alert.threshold,
            "opened_at": alert.opened_at.isoformat() if alert.opened_at else None,
            "resolved_at": (
                alert.resolved_at.isoformat() if alert.resolved_at else None
            ),
        },
    }


def alert_notify(*, alert_id: int, event: str) -> dict[str, str]:
    """Send the e-mail and webhook about an alert that opened or resolved, to the
    targets its producer names now.

    Failures are logged and reported, never raised: the alert itself stands. The
    webhook carries `Idempotency-Key: alert-<id>-<event>`, so a task delivered
    twice can be recognised by the receiver.
    """
    alert = Alert.objects.filter(pk=alert_id).first()
    targets = notify_targets_of(alert) if alert is not None else None
    outcome: dict[str, str] = {}
    if alert is None or not targets:
        return outcome
    if targets.emails:
        subject = _("[%(severity)s] Alert %(event)s: %(message)s") % {
            "severity": alert.get_severity_display(),
            "event": _("opened") if event == OPENED else _("resolved"),
            "message": alert.message,
        }
        try:
            send_mail(
                subject[:200],
                f"{alert.message}\n\n{settings.SITE_URL}/alerts/",
                settings.DEFAULT_FROM_EMAIL,
                list(targets.emails),
            )
            outcome["email"] = "sent"
        except Exception as exc:
            logger.warning("alert %s: e-mail failed: %s", alert.pk, exc)
            outcome["email"] = f"failed: {exc}"
    if targets.webhook:
        body = json.dumps(alert_payload(alert, event))
        try:
            webhook_post(targets.webhook, body, f"alert-{alert.pk}-{event}")
            outcome["webhook"] = "sent"
        except NotifyError as exc:
            logger.warning("alert %s: webhook failed: %s", alert.pk, exc)
            outcome["webhook"] = f"failed: {exc}"
    return outcome
