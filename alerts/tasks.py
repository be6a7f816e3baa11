"""Celery entry points of the alerts app."""

from __future__ import annotations

from celery import shared_task

from alerts.services import alert_notify


@shared_task(
    # Named before alerts had an app of their own; queued messages keep working.
    name="devices.notify_alert",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def notify_alert(alert_id: int, event: str) -> dict[str, str]:
    """E-mail and webhook about an alert that opened or resolved."""
    return alert_notify(alert_id=alert_id, event=event)
