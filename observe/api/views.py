"""A broker's $SYS statistics and connected clients (API).

Members of the broker's product read both; disabling a client's MQTT user needs
the admin role (as every MQTT user change does).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from brokers.models import Broker
from mqttadmin.api.base import ProductScopedAPIView
from mqttadmin.roles import Role
from observe import client_log, sys_stats


class ClientSerializer(serializers.Serializer):
    client_id = serializers.CharField()
    address = serializers.CharField()
    username = serializers.CharField(allow_null=True)
    protocol = serializers.CharField()
    clean_session = serializers.BooleanField(allow_null=True)
    keepalive = serializers.IntegerField(allow_null=True)
    connected_at = serializers.DateTimeField()


class ClientEventSerializer(serializers.Serializer):
    client_id = serializers.CharField(allow_null=True)
    address = serializers.CharField(allow_null=True)
    username = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    at = serializers.DateTimeField()


class StatsView(ProductScopedAPIView):
    """The broker's latest $SYS values and a time series for charts; without data,
    `reason` and `hint` say why."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, pk: int) -> Response:
        broker = self.get_scoped_object(Broker, pk=pk)
        return Response(sys_stats.stats_of(broker))


class ClientsView(ProductScopedAPIView):
    """Clients connected to the broker (from its log), recent disconnects and
    refused logins; `hint` says what the broker's configuration lacks."""

    @extend_schema(
        responses=inline_serializer(
            "BrokerClients",
            {
                "connected": ClientSerializer(many=True),
                "recent_disconnects": ClientEventSerializer(many=True),
                "refused": ClientEventSerializer(many=True),
                "log_available": serializers.BooleanField(),
                "collecting": serializers.BooleanField(),
                "since": serializers.DateTimeField(allow_null=True),
                "hint": serializers.CharField(),
            },
        )
    )
    def get(self, request: Request, pk: int) -> Response:
        broker = self.get_scoped_object(Broker, pk=pk)
        return Response(client_log.clients_of(broker))


class ClientDisableView(ProductScopedAPIView):
    """Disable the MQTT user of a connected client (Dynamic Security brokers: the
    plugin disconnects it)."""

    write_role = Role.ADMIN

    @extend_schema(
        request=inline_serializer(
            "ClientDisableRequest", {"client_id": serializers.CharField()}
        ),
        responses=OpenApiTypes.OBJECT,
    )
    def post(self, request: Request, pk: int) -> Response:
        broker = self.get_scoped_object(Broker, pk=pk)
        client_id = (
            request.data.get("client_id") if hasattr(request.data, "get") else None
        )
        if not isinstance(client_id, str) or not client_id:
            raise ApiValidationError({"client_id": ["A client id (text) is required."]})
        try:
            user, result = client_log.connected_client_disable(
                actor=request.user, broker=broker, client_id=client_id
            )
        except ValidationError as exc:
            raise ApiValidationError(exc.message_dict) from None
        body: dict[str, Any] = {
            "client_id": client_id,
            "username": user.username,
            "enabled": user.enabled,
            "sync": result.as_dict(),
        }
        return Response(body)
