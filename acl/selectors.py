"""Reads of the acl app for pages and the API."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from acl.models import MqttRole, MqttRule, MqttUser
from brokers.models import Broker


def users_of(broker: Broker) -> QuerySet[MqttUser]:
    """The broker's MQTT users with their roles, by username."""
    return (
        MqttUser.objects.filter(broker=broker)
        .prefetch_related("roles")
        .order_by("username")
    )


def roles_of(broker: Broker) -> QuerySet[MqttRole]:
    """The broker's roles with their rules (highest priority first) and users."""
    return (
        MqttRole.objects.filter(broker=broker)
        .prefetch_related(
            Prefetch("rules", queryset=MqttRule.objects.order_by("-priority", "id")),
            "users",
        )
        .order_by("name")
    )
