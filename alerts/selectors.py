"""Reads of alerts, scoped to the user's products."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from alerts.models import Alert, AlertState


def alerts_for(
    user: Any,
    *,
    product: int | None = None,
    state: str | None = None,
    severity: str | None = None,
) -> QuerySet[Alert]:
    """Alerts of the user's products, newest first, optionally filtered."""
    alerts = Alert.objects.for_user(user).select_related("product", "acknowledged_by")
    if product is not None:
        alerts = alerts.filter(product_id=product)
    if state in AlertState.values:
        alerts = alerts.filter(state=state)
    if severity:
        alerts = alerts.filter(severity=severity)
    return alerts.order_by("-opened_at", "-id")
