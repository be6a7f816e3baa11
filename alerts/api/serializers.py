"""Serializers of the alerts API."""

from __future__ import annotations

from rest_framework import serializers

from alerts.models import Alert


class AlertSerializer(serializers.ModelSerializer):
    acknowledged_by = serializers.CharField(
        source="acknowledged_by.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Alert
        fields = [
            "id",
            "product",
            "rule_key",
            "subject",
            "severity",
            "state",
            "message",
            "value",
            "threshold",
            "opened_at",
            "resolved_at",
            "acknowledged_by",
            "acknowledged_at",
        ]
        read_only_fields = fields
