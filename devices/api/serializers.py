"""Serializers of the devices API: devices, telemetry, commands, imports and rules.

Field rules live on the models (validators, clean()); the services check again.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from brokers.api.serializers import ProductScopedRelatedField, qos_field
from brokers.models import Broker
from devices.models import AlertRule, Device
from mqttadmin.models import Product


class DeviceSerializer(serializers.ModelSerializer):
    """A device. `product` is set on create; empty telemetry/command topics take
    the defaults <topic>/# and <topic>/cmd."""

    product = ProductScopedRelatedField(queryset=Product.objects.all())
    broker = ProductScopedRelatedField(queryset=Broker.objects.all())
    stale = serializers.BooleanField(source="is_stale", read_only=True)

    class Meta:
        model = Device
        fields = [
            "id",
            "product",
            "broker",
            "device_id",
            "name",
            "type",
            "topic",
            "telemetry_topic",
            "availability_topic",
            "payload_online",
            "payload_offline",
            "command_topic",
            "stale_after_s",
            "telemetry_retention_days",
            "status",
            "stale",
            "status_changed_at",
            "last_seen_at",
            "last_values",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "status",
            "status_changed_at",
            "last_seen_at",
            "last_values",
            "created_at",
            "updated_at",
        ]
        # (product, device_id) is checked in validate() to name `device_id`.
        validators: list[Any] = []

    def validate_product(self, product: Product) -> Product:
        if self.instance is not None and product != self.instance.product:
            raise serializers.ValidationError(
                _("A device stays in its product; create a new one instead.")
            )
        return product

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: Device | None = self.instance
        product = attrs.get("product") or (instance.product if instance else None)
        broker = attrs.get("broker") or (instance.broker if instance else None)
        if product is not None and broker is not None and broker.product != product:
            raise serializers.ValidationError(
                {"broker": _("The broker belongs to another product.")}
            )
        device_id = attrs.get("device_id", instance.device_id if instance else "")
        duplicates = Device.objects.filter(product=product, device_id=device_id)
        if instance is not None:
            duplicates = duplicates.exclude(pk=instance.pk)
        if duplicates.exists():
            raise serializers.ValidationError(
                {"device_id": _("A device with this id exists in the product.")}
            )
        return attrs


@extend_schema_field(
    {
        "oneOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}],
        "description": "Text is sent as it is; an object or array as JSON.",
    }
)
class CommandPayloadField(serializers.JSONField):
    pass


class CommandSerializer(serializers.Serializer):
    payload = CommandPayloadField()
    qos = qos_field(default=0)

    def validate_payload(self, value: Any) -> Any:
        if not isinstance(value, str | dict | list):
            raise serializers.ValidationError(
                _("The payload is text, an object or an array.")
            )
        return value


class CommandResultSerializer(serializers.Serializer):
    published = serializers.IntegerField()
    topic = serializers.CharField()


class TelemetryPointSerializer(serializers.Serializer):
    key = serializers.CharField()
    ts = serializers.DateTimeField()
    value = serializers.FloatField()
    min = serializers.FloatField(required=False)
    max = serializers.FloatField(required=False)
    count = serializers.IntegerField(required=False)


class TelemetrySerializer(serializers.Serializer):
    device = serializers.IntegerField()
    key = serializers.CharField(allow_null=True)
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    bucket = serializers.IntegerField(
        allow_null=True, help_text="Bucket size in seconds; null for raw points."
    )
    truncated = serializers.BooleanField()
    points = TelemetryPointSerializer(many=True)


class ImportErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    device_id = serializers.CharField()
    field = serializers.CharField()
    reason = serializers.CharField()


class ImportResultSerializer(serializers.Serializer):
    imported = serializers.IntegerField()
    devices = serializers.ListField(child=serializers.DictField())


class ImportFailureSerializer(serializers.Serializer):
    imported = serializers.IntegerField()
    # DRF's metaclass moves declared fields into _declared_fields: this field does
    # not shadow Serializer.errors, which mypy cannot see.
    errors = ImportErrorSerializer(many=True)  # type: ignore[assignment]


@extend_schema_field(OpenApiTypes.BINARY)
class CsvUploadField(serializers.FileField):
    pass


class ImportUploadSerializer(serializers.Serializer):
    """The multipart form of an import (a text/csv body works as well)."""

    file = CsvUploadField()


class AlertRuleSerializer(serializers.ModelSerializer):
    """A threshold on one key. Without a device it applies to every device of the
    product; with one, `product` may be left out."""

    product = ProductScopedRelatedField(queryset=Product.objects.all(), required=False)
    device = ProductScopedRelatedField(
        queryset=Device.objects.all(), required=False, allow_null=True
    )

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "product",
            "device",
            "key",
            "op",
            "threshold",
            "severity",
            "notify_email",
            "notify_webhook",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: AlertRule | None = self.instance
        device = attrs.get("device", instance.device if instance else None)
        product = attrs.get("product") or (
            instance.product if instance else device.product if device else None
        )
        if product is None:
            raise serializers.ValidationError(
                {"product": _("Name the product, or a device.")}
            )
        if instance is not None and product != instance.product:
            raise serializers.ValidationError(
                {"product": _("A rule stays in its product.")}
            )
        if device is not None and device.product != product:
            raise serializers.ValidationError(
                {"device": _("The device belongs to another product.")}
            )
        attrs["product"] = product
        return attrs
