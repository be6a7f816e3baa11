"""Alerts raised by subscription actions, device rules, broker health and refused
logins: one model, written through alerts.services."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from mqttadmin.models import Product, ProductScopedQuerySet


class Severity(models.TextChoices):
    INFO = "info", _("Info")
    WARNING = "warning", _("Warning")
    CRITICAL = "critical", _("Critical")


class AlertState(models.TextChoices):
    OPEN = "open", _("Open")
    RESOLVED = "resolved", _("Resolved")


def alert_key(kind: str, *parts: object) -> str:
    """An alert's `rule_key`: its kind, then what names the rule within it,
    colon-separated: `rule:7`, `broker:3:disconnected`, `broker:3:refused-logins`,
    `subscription:4:1` (action 1 of subscription 4)."""
    return ":".join((kind, *(str(part) for part in parts)))


def kind_of(key: str) -> str:
    """The kind of a `rule_key` (`rule`, `broker`, `subscription`)."""
    return key.partition(":")[0]


class AlertQuerySet(ProductScopedQuerySet):
    product_path = "product"


class Alert(models.Model):
    """A condition that crossed its threshold; resolved when it comes back.

    `rule_key` names the rule that raised it, as `alerts.services.alert_key` spells
    it (e.g. `subscription:4:1` for action 1 of subscription 4); there is at most
    one open alert per rule and subject.
    """

    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="alerts"
    )
    rule_key = models.CharField(max_length=120)
    subject = models.CharField(
        max_length=500, help_text=_("The topic, device or broker the alert is about.")
    )
    severity = models.CharField(
        max_length=10, choices=Severity.choices, default=Severity.WARNING
    )
    state = models.CharField(
        max_length=10, choices=AlertState.choices, default=AlertState.OPEN
    )
    message = models.TextField(blank=True)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    opened_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    # Not a column: the subject's page, set by alerts.selectors.with_subject_links.
    subject_url: str = ""

    objects = AlertQuerySet.as_manager()

    class Meta:
        # The table the dashboard app created: the model moved, its rows did not.
        db_table = "dashboard_alert"
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule_key", "subject"],
                condition=Q(state="open"),
                name="alert_one_open_per_rule_and_subject",
            )
        ]
        indexes = [
            models.Index(
                fields=["product", "state", "-opened_at"],
                name="dashboard_a_product_6b9816_idx",
            )
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.subject}: {self.message[:60]}"
