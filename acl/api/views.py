"""The acl API under /api/v1/brokers/{id}/: MQTT users and roles, sync, export,
management settings and lifecycle.

A broker outside the user's products is a 404. Members read users and roles;
product admins (and superusers) read the management settings (they name files and
commands on the portal's host), make every change, export (it shows password
hashes), sync and reload. Each change is applied to the broker
at once and the answer carries `{"sync": {"state", "error"}}`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from acl import services
from acl.api.serializers import (
    LifecycleOutcomeSerializer,
    LifecycleRequestSerializer,
    ManagedBrokerSerializer,
    MqttRoleSerializer,
    MqttUserSerializer,
    SyncReportSerializer,
    SyncRequestSerializer,
    SyncStateSerializer,
)
from acl.lifecycle import LifecycleUnavailable
from acl.models import MqttRole, MqttUser
from brokers.api.views import flatten_errors
from brokers.models import Broker
from mqttadmin.api.base import ProductScoped
from mqttadmin.roles import Role


class BrokerScoped(ProductScoped):
    """Views under /brokers/{broker_pk}/: the broker is found (404 outside the
    user's products) and the role checked on it before anything else runs.
    Members read; every change needs the admin role."""

    write_role = Role.ADMIN
    role_denied_detail = {"*": _("This needs the %(role)s role in %(product)s.")}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.broker  # noqa: B018 - the check happens on lookup

    @cached_property
    def broker(self) -> Broker:
        return self.get_scoped_object(
            Broker.objects.select_related("product"), pk=self.kwargs["broker_pk"]
        )


def _valid(serializer: serializers.BaseSerializer) -> dict[str, Any]:
    """Validated data, or a 400 whose keys name the field (`rules[1].topic`)."""
    if not serializer.is_valid():
        raise ValidationError(flatten_errors(serializer.errors))
    return dict(serializer.validated_data)


def _with_sync(data: Any, result: services.SyncResult) -> dict[str, Any]:
    return {**data, "sync": result.as_dict()}


SYNC_ONLY = inline_serializer("AclSyncState", {"sync": SyncStateSerializer()})


class MqttUserViewSet(
    BrokerScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """MQTT users of a managed broker."""

    serializer_class = MqttUserSerializer
    lookup_value_converter = "int"
    queryset = MqttUser.objects.none()

    def get_queryset(self) -> QuerySet[MqttUser]:
        return (
            MqttUser.objects.filter(broker=self.broker)
            .prefetch_related("roles")
            .order_by("username")
        )

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if "broker_pk" in self.kwargs:
            context["broker"] = self.broker
        return context

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _valid(self.get_serializer(data=request.data))
        user, result = services.mqtt_user_create(
            actor=request.user, broker=self.broker, **data
        )
        body = _with_sync(self.get_serializer(user).data, result)
        return Response(body, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        user = self.get_object()
        # PUT changes what it names too: the password is write-only and must not
        # have to be sent again, so both methods are partial.
        data = _valid(self.get_serializer(user, data=request.data, partial=True))
        password = data.pop("password", None)
        user, result = services.mqtt_user_update(
            actor=request.user, user=user, password=password, **data
        )
        return Response(_with_sync(self.get_serializer(user).data, result))

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    @extend_schema(responses={200: SYNC_ONLY})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        result = services.mqtt_user_delete(actor=request.user, user=self.get_object())
        return Response({"sync": result.as_dict()})


class MqttRoleViewSet(
    BrokerScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Roles (named ACL rule sets) of a managed broker."""

    serializer_class = MqttRoleSerializer
    lookup_value_converter = "int"
    queryset = MqttRole.objects.none()

    def get_queryset(self) -> QuerySet[MqttRole]:
        return (
            MqttRole.objects.filter(broker=self.broker)
            .prefetch_related("rules", "users")
            .order_by("name")
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _valid(self.get_serializer(data=request.data))
        role, result = services.mqtt_role_create(
            actor=request.user,
            broker=self.broker,
            name=data["name"],
            rules=[dict(rule) for rule in data.get("rules", [])],
        )
        body = _with_sync(self.get_serializer(role).data, result)
        return Response(body, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        role = self.get_object()
        # Like users: PUT changes what it names (sending `rules` replaces them all).
        data = _valid(self.get_serializer(role, data=request.data, partial=True))
        rules = data.get("rules")
        role, result = services.mqtt_role_update(
            actor=request.user,
            role=role,
            name=data.get("name"),
            rules=[dict(rule) for rule in rules] if rules is not None else None,
        )
        role = self.get_queryset().get(pk=role.pk)
        return Response(_with_sync(self.get_serializer(role).data, result))

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    @extend_schema(responses={200: SYNC_ONLY})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        result = services.mqtt_role_delete(actor=request.user, role=self.get_object())
        return Response({"sync": result.as_dict()})


class AclSyncView(BrokerScoped, APIView):
    """Re-apply every user and role; report the drift found on the broker first.
    `{"prune": true}` also deletes Dynamic Security clients and roles unknown here."""

    @extend_schema(request=SyncRequestSerializer, responses=SyncReportSerializer)
    def post(self, request: Request, broker_pk: int) -> Response:
        data = _valid(SyncRequestSerializer(data=request.data))
        report = services.acl_sync(
            actor=request.user, broker=self.broker, prune=data["prune"]
        )
        return Response(report.as_dict())


class AclExportView(BrokerScoped, APIView):
    """What the broker gets: the files, or the Dynamic Security commands (passwords
    as hashes). Admins only: hashes are secrets too."""

    required_roles = {"get": Role.ADMIN}

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, broker_pk: int) -> Response:
        return Response(services.acl_export(self.broker))


class ManagementView(BrokerScoped, APIView):
    """How the broker is managed (none, dynsec or files) and reloaded. Admins only,
    reads too: the settings name files and commands on the portal's host."""

    required_roles = {"get": Role.ADMIN}

    @extend_schema(responses=ManagedBrokerSerializer)
    def get(self, request: Request, broker_pk: int) -> Response:
        return Response(ManagedBrokerSerializer(services.managed_of(self.broker)).data)

    @extend_schema(request=ManagedBrokerSerializer, responses=ManagedBrokerSerializer)
    def put(self, request: Request, broker_pk: int) -> Response:
        current = services.managed_of(self.broker)
        data = _valid(ManagedBrokerSerializer(current, data=request.data, partial=True))
        managed = services.management_update(
            actor=request.user, broker=self.broker, **data
        )
        return Response(ManagedBrokerSerializer(managed).data)

    @extend_schema(request=ManagedBrokerSerializer, responses=ManagedBrokerSerializer)
    def patch(self, request: Request, broker_pk: int) -> Response:
        return self.put(request, broker_pk)


class LifecycleView(BrokerScoped, APIView):
    """Reload or restart the broker with its configured method (audited)."""

    @extend_schema(
        request=LifecycleRequestSerializer,
        responses={
            200: LifecycleOutcomeSerializer,
            409: OpenApiResponse(description="No method is configured."),
            502: OpenApiResponse(
                LifecycleOutcomeSerializer, description="The method failed."
            ),
        },
    )
    def post(self, request: Request, broker_pk: int) -> Response:
        data = _valid(LifecycleRequestSerializer(data=request.data))
        try:
            outcome = services.broker_lifecycle(
                actor=request.user, broker=self.broker, action=data["action"]
            )
        except LifecycleUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        code = status.HTTP_200_OK if outcome.ok else status.HTTP_502_BAD_GATEWAY
        return Response(outcome.as_dict(), status=code)
