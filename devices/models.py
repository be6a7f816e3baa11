"""Devices registered against brokers, their telemetry, alert rules and CSV imports."""

from __future__ import annotations

import datetime
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.core.validators import validate_email as django_validate_email
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

from alerts.models import Severity, alert_key
from brokers.models import Broker, Subscription
from devices.choices import OPERATORS, DeviceStatus, ImportState, RuleOperator
from mqttadmin.lib import outbound
from mqttadmin.lib.topics import (
    SHARE_PREFIX,
    is_control_topic,
    validate_topic_filter,
    validate_topic_name,
)
from mqttadmin.lib.units import decimals_of
from mqttadmin.models import Product, ProductScopedQuerySet

DEFAULT_STALE_AFTER_S = 300
MAX_KEY_LENGTH = 200


def validate_device_id(value: str) -> None:
    """Device ids name subscriptions and alerts: printable, no spaces or wildcards."""
    if not value or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValidationError(
            _("A device id is printable text without spaces."), code="device_id"
        )
    if any(ch in value for ch in "+#"):
        raise ValidationError(
            _("A device id must not contain the MQTT wildcards + or #."),
            code="device_id",
        )


def validate_device_filter(value: str) -> None:
    validate_topic_filter(value)
    if value.startswith(SHARE_PREFIX):
        raise ValidationError(
            _("A device's telemetry topic takes no $share prefix."), code="share"
        )


def validate_email_list(value: str) -> None:
    for address in split_emails(value):
        django_validate_email(address)


def split_emails(value: str) -> list[str]:
    """`a@x, b@y` (commas, semicolons or spaces) as a list of addresses."""
    return [
        part for part in value.replace(";", ",").replace(" ", ",").split(",") if part
    ]


class DeviceQuerySet(ProductScopedQuerySet):
    product_path = "product"

    def stale(self, now: datetime.datetime | None = None) -> DeviceQuerySet:
        """Devices silent longer than their stale_after_s, marked or not yet."""
        now = now or timezone.now()
        return self.filter(Q(stale=True) | Q(stale_at__lte=now))


class Device(models.Model):
    """An IoT device that talks through one broker of its product.

    Messages on `telemetry_topic` become time series (numbers only, see
    devices.telemetry); `availability_topic` carries online/offline (typically a
    retained message plus the client's last will). The device services keep one
    managed Subscription per topic on the broker, so the runtime receives them.
    """

    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="devices"
    )
    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="devices")
    device_id = models.CharField(
        _l("device id"), max_length=100, validators=[validate_device_id]
    )
    name = models.CharField(_l("name"), max_length=120)
    type = models.CharField(_l("type"), max_length=60, blank=True)
    topic = models.CharField(
        _l("base topic"),
        max_length=500,
        validators=[validate_topic_name],
        help_text=_l("e.g. plant/d1"),
    )
    telemetry_topic = models.CharField(
        _l("telemetry topic filter"),
        max_length=520,
        blank=True,
        validators=[validate_device_filter],
        help_text=_l("Left empty: <base topic>/#"),
    )
    availability_topic = models.CharField(
        _l("availability topic"),
        max_length=500,
        blank=True,
        validators=[validate_topic_name],
        help_text=_l("Where the device says online/offline (its last will goes here)."),
    )
    payload_online = models.CharField(
        _l("online payload"), max_length=100, default="online"
    )
    payload_offline = models.CharField(
        _l("offline payload"), max_length=100, default="offline"
    )
    command_topic = models.CharField(
        _l("command topic"),
        max_length=500,
        blank=True,
        validators=[validate_topic_name],
        help_text=_l("Left empty: <base topic>/cmd"),
    )
    stale_after_s = models.PositiveIntegerField(
        _l("stale after (s)"),
        default=DEFAULT_STALE_AFTER_S,
        validators=[MaxValueValidator(365 * 86400)],
        help_text=_l("Silent this long, the device shows as stale. 0: never."),
    )
    telemetry_retention_days = models.PositiveIntegerField(
        _l("keep telemetry for (days)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text=_l("Left empty: as long as the broker keeps message history."),
    )
    status = models.CharField(
        _l("status"),
        max_length=8,
        choices=DeviceStatus.choices,
        default=DeviceStatus.UNKNOWN,
        editable=False,
    )
    status_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    # last_seen_at + stale_after_s, kept by ingest so "stale" is a plain filter.
    stale_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set by the periodic health check, cleared by the next message.
    stale = models.BooleanField(default=False, editable=False)
    # {"temperature": {"value": 21.5, "ts": "2026-01-31T12:00:00+00:00"}, ...}
    last_values = models.JSONField(default=dict, blank=True, editable=False)
    telemetry_subscription = models.ForeignKey(
        Subscription,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    availability_subscription = models.ForeignKey(
        Subscription,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["product", "name", "device_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "device_id"], name="device_unique_id_per_product"
            )
        ]
        indexes = [models.Index(fields=["product", "status"], name="device_status")]

    def __str__(self) -> str:
        return f"{self.name} ({self.device_id})"

    def clean(self) -> None:
        if (
            self.broker_id
            and self.product_id
            and self.broker.product_id != self.product_id
        ):
            raise ValidationError(
                {"broker": _("The broker belongs to another product.")}
            )
        self._check_reserved_topics()

    def _check_reserved_topics(self) -> None:
        """Devices never live under the broker's own `$` topics: commands are
        published with the portal connection's credentials (on a Dynamic Security
        broker maybe its admin's), and `$CONTROL` is the broker's control API."""
        errors: dict[str, str] = {}
        if self.command_topic.startswith("$"):
            errors["command_topic"] = _(
                "A command topic must not start with $: those topics belong to the "
                "broker ($CONTROL is its control API)."
            )
        for name in ("topic", "telemetry_topic", "availability_topic"):
            if is_control_topic(getattr(self, name)):
                errors[name] = _(
                    "Topics under $CONTROL/ are the broker's control API, not a "
                    "device's."
                )
        if errors:
            raise ValidationError(errors)

    def apply_topic_defaults(self, previous_topic: str | None = None) -> None:
        """Fill empty telemetry/command topics from the base topic; ones that were
        the old base topic's defaults follow a changed base topic."""
        if not self.topic:
            return
        for field, suffix in (("telemetry_topic", "/#"), ("command_topic", "/cmd")):
            value = getattr(self, field)
            if not value or (previous_topic and value == previous_topic + suffix):
                setattr(self, field, self.topic + suffix)

    def is_stale_at(self, now: datetime.datetime) -> bool:
        return self.stale or (self.stale_at is not None and self.stale_at <= now)

    @property
    def is_stale(self) -> bool:
        return self.is_stale_at(timezone.now())

    @property
    def display_status(self) -> str:
        """online / offline / unknown, or stale when silent too long."""
        return "stale" if self.is_stale else self.status

    @property
    def value_items(self) -> list[tuple[str, Any]]:
        """(key, value) of the latest values, sorted by key."""
        return [
            (key, entry.get("value") if isinstance(entry, dict) else entry)
            for key, entry in sorted(self.last_values.items())
        ]

    def decimals_for(self, key: str, value: Any = None) -> int:
        """How many decimals `key` shows everywhere: the most its values have
        needed (kept with the latest value on ingest), so one key reads 21.00,
        21.50, 21.25 on tiles, charts and raw rows alike; a key not seen yet
        shows `value` as it is."""
        entry = self.last_values.get(key)
        if isinstance(entry, dict):
            known = entry.get("decimals")
            if isinstance(known, int) and not isinstance(known, bool):
                return max(known, decimals_of(value) if value is not None else 0)
            value = entry.get("value") if value is None else value
        return decimals_of(value) if value is not None else 0


class TelemetryPointQuerySet(ProductScopedQuerySet):
    product_path = "device__product"


class TelemetryPoint(models.Model):
    """One numeric value of one key of a device at one time."""

    id = models.BigAutoField(primary_key=True)
    device = models.ForeignKey(
        Device, on_delete=models.CASCADE, related_name="telemetry"
    )
    key = models.CharField(max_length=MAX_KEY_LENGTH)
    ts = models.DateTimeField()
    value = models.FloatField()

    objects = TelemetryPointQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(
                fields=["device", "key", "ts"], name="telemetry_device_key_ts"
            ),
            # Retention deletes by device and age.
            models.Index(fields=["device", "ts"], name="telemetry_device_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.device_id} {self.key}={self.value} @ {self.ts:%Y-%m-%d %H:%M:%S}"


class AlertRuleQuerySet(ProductScopedQuerySet):
    product_path = "product"


class AlertRule(models.Model):
    """Opens an alert when a device's value of `key` crosses the threshold and
    resolves it when the value comes back; without a device it watches every
    device of the product."""

    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="alert_rules"
    )
    device = models.ForeignKey(
        Device,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alert_rules",
        help_text=_l("Left empty: every device of the product."),
    )
    key = models.CharField(
        _l("key"), max_length=MAX_KEY_LENGTH, help_text=_l("e.g. temperature, env.hum")
    )
    op = models.CharField(
        _l("operator"), max_length=2, choices=RuleOperator.choices, default=">"
    )
    threshold = models.FloatField(_l("threshold"))
    severity = models.CharField(
        _l("severity"),
        max_length=10,
        choices=Severity.choices,
        default=Severity.WARNING,
    )
    notify_email = models.CharField(
        _l("notify e-mail"),
        max_length=500,
        blank=True,
        validators=[validate_email_list],
        help_text=_l("Addresses separated by commas."),
    )
    notify_webhook = models.URLField(
        _l("notify webhook"),
        max_length=1000,
        blank=True,
        help_text=_l("POSTed a JSON body when the alert opens and resolves."),
    )
    enabled = models.BooleanField(_l("enabled"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AlertRuleQuerySet.as_manager()

    class Meta:
        ordering = ["product", "key", "id"]
        indexes = [models.Index(fields=["product", "key"], name="alert_rule_key")]

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.threshold:g}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.device_id and self.product_id:
            device = self.device
            if device is not None and device.product_id != self.product_id:
                errors["device"] = _("The device belongs to another product.")
        if self.threshold is not None and not math.isfinite(self.threshold):
            errors["threshold"] = _("The threshold is a finite number.")
        if self.notify_webhook and (blocked := outbound.url_error(self.notify_webhook)):
            # Literal internal addresses early; the send checks every address.
            errors["notify_webhook"] = blocked
        if errors:
            raise ValidationError(errors)

    @property
    def rule_key(self) -> str:
        """What its alerts carry in Alert.rule_key."""
        return alert_key("rule", self.pk)

    def crossed(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.threshold)


class DeviceImportQuerySet(ProductScopedQuerySet):
    product_path = "product"


class DeviceImport(models.Model):
    """A CSV import started from the page: validated and then created in the
    background, so the page can show how far it got."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    filename = models.CharField(max_length=255, blank=True)
    state = models.CharField(
        max_length=8, choices=ImportState.choices, default=ImportState.PENDING
    )
    text = models.TextField(blank=True)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    # [{"line": 3, "device_id": "d1", "field": "topic", "reason": "..."}]
    errors = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = DeviceImportQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"import {self.pk} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state in (ImportState.DONE, ImportState.FAILED)

    @property
    def percent(self) -> int:
        if not self.total:
            return 100 if self.finished else 0
        return min(100, round(100 * self.processed / self.total))
