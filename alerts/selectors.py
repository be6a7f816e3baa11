"""Reads of alerts, scoped to the user's products."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from django.db.models import QuerySet

from alerts.models import Alert, AlertState, kind_of


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


# An alert's subject is a string (a device id, a broker's name, a topic); the app
# that raised alerts of a kind knows what page it names. It registers a resolver
# here (from its AppConfig.ready()), as it registers its notify targets: the
# alerts app names no app above it.
SubjectLinks = Callable[[list[Alert]], dict[int, str]]
_subject_links: dict[str, SubjectLinks] = {}


def register_subject_links(kind: str, resolver: SubjectLinks) -> None:
    """`resolver(alerts)` answers {alert pk: URL} for alerts of `kind`, in one
    query for the lot (a page of alerts must not cost a query per row)."""
    _subject_links[kind] = resolver


def with_subject_links(alerts: Iterable[Alert]) -> list[Alert]:
    """The alerts, each with `subject_url` (the page of its subject, or "")."""
    listed = list(alerts)
    by_kind: dict[str, list[Alert]] = defaultdict(list)
    for alert in listed:
        by_kind[kind_of(alert.rule_key)].append(alert)
    urls: dict[int, str] = {}
    for kind, group in by_kind.items():
        resolver = _subject_links.get(kind)
        if resolver is not None:
            urls.update(resolver(group))
    for alert in listed:
        alert.subject_url = urls.get(alert.pk, "")
    return listed
