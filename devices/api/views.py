"""Devices API: CRUD, telemetry series, commands, CSV import, alert rules.

Objects outside the user's products are 404; viewers read, operators write. Every
change goes through devices.services (audited; managed subscriptions kept in step).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    OpenApiTypes,
    extend_schema,
)
from rest_framework import status as http
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.parsers import BaseParser, FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from brokers.client import PublishError
from brokers.models import Broker
from devices import csv_import, selectors, services
from devices.api.serializers import (
    AlertRuleSerializer,
    CommandResultSerializer,
    CommandSerializer,
    DeviceSerializer,
    ImportFailureSerializer,
    ImportResultSerializer,
    ImportUploadSerializer,
    TelemetrySerializer,
)
from devices.filtersets import AlertRuleFilterSet, DeviceFilterSet
from devices.models import AlertRule, Device
from mqttadmin.api.base import ProductScopedModelViewSet
from mqttadmin.models import Product
from mqttadmin.roles import Role

logger = logging.getLogger(__name__)


class BrokerUnreachable(APIException):
    status_code = http.HTTP_502_BAD_GATEWAY
    default_detail = "The broker could not be reached."
    default_code = "broker_unreachable"


class CsvTextParser(BaseParser):
    """A text/csv request body, as text."""

    media_type = "text/csv"

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:  # the CSV text; DRF's stubs expect parsers to return a mapping
        return csv_import.decode_csv(csv_import.read_capped(stream))


def _import_failure(exc: csv_import.ImportFailed) -> Response:
    errors = exc.errors[: csv_import.MAX_REPORTED_ERRORS]
    return Response(
        {
            "imported": 0,
            "errors": [error.as_dict() for error in errors],
            "more_errors": max(0, len(exc.errors) - len(errors)),
        },
        status=http.HTTP_400_BAD_REQUEST,
    )


def _number_param(request: Request, name: str) -> int:
    raw = request.query_params.get(name)
    if raw is None or not raw.isdigit():
        raise ValidationError({name: [_("Give the %s id as ?%s=.") % (name, name)]})
    return int(raw)


class DeviceViewSet(ProductScopedModelViewSet):
    """Devices of the user's products (filter with ?product=&broker=&status=, status
    being online, offline, unknown or stale)."""

    serializer_class = DeviceSerializer
    filterset_class = DeviceFilterSet
    parent_field = "product"
    required_roles = {
        "telemetry": Role.VIEWER,
        "command": Role.OPERATOR,
        "import_csv": Role.OPERATOR,
    }

    def get_queryset(self) -> QuerySet[Device]:
        return (
            Device.objects.for_user(self.request.user)
            .select_related("product", "broker")
            .order_by("product__name", "name", "device_id")
        )

    def service_create(self, fields: dict[str, Any]) -> Device:
        return services.device_create(actor=self.request.user, **fields)

    def service_update(self, instance: Device, fields: dict[str, Any]) -> Device:
        return services.device_update(
            actor=self.request.user, device=instance, **fields
        )

    def service_delete(self, instance: Device) -> None:
        services.device_delete(actor=self.request.user, device=instance)

    @extend_schema(
        parameters=[
            OpenApiParameter("key", str, description="One key (default: all)."),
            OpenApiParameter(
                "since", OpenApiTypes.DATETIME, description="Default: until - 24 h."
            ),
            OpenApiParameter(
                "until", OpenApiTypes.DATETIME, description="Default: now."
            ),
            OpenApiParameter(
                "bucket",
                str,
                description="Average per bucket: 30s, 1m, 15m, 1h, 1d. Default: raw "
                "points (at most 10,000).",
            ),
        ],
        responses=TelemetrySerializer,
    )
    @action(detail=True, methods=["get"])
    def telemetry(self, request: Request, pk: str) -> Response:
        """Points of the device's keys over a time range, raw or averaged per
        bucket (then with min, max and count)."""
        device = self.get_object()
        try:
            query = selectors.SeriesQuery.from_params(request.query_params)
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from None
        series = selectors.telemetry_series(device, query)
        data = {
            "device": device.pk,
            "key": query.key,
            "since": query.since,
            "until": query.until,
            "bucket": query.bucket,
            **series,
        }
        return Response(TelemetrySerializer(data).data)

    @extend_schema(
        request=CommandSerializer,
        responses={
            200: CommandResultSerializer,
            502: OpenApiResponse(description="The broker could not be reached."),
        },
    )
    @action(detail=True, methods=["post"])
    def command(self, request: Request, pk: str) -> Response:
        """Publish to the device's command topic through its own broker."""
        device = self.get_object()
        payload = CommandSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            published = services.device_command(
                actor=request.user,
                device=device,
                payload=payload.validated_data["payload"],
                qos=payload.validated_data["qos"],
            )
        except PublishError as exc:
            logger.info("command to device %s failed: %s", device.pk, exc)
            raise BrokerUnreachable(
                _("Publishing failed: %(reason)s") % {"reason": exc}
            ) from None
        return Response({"published": published, "topic": device.command_topic})

    @extend_schema(
        parameters=[
            OpenApiParameter("product", int, required=True),
            OpenApiParameter("broker", int, required=True),
        ],
        request={
            "text/csv": OpenApiTypes.STR,
            "multipart/form-data": ImportUploadSerializer,
        },
        responses={201: ImportResultSerializer, 400: ImportFailureSerializer},
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        url_name="import",
        parser_classes=[CsvTextParser, MultiPartParser, FormParser],
    )
    def import_csv(self, request: Request) -> Response:
        """Create devices from CSV (device_id,name,type,topic[,availability_topic])
        sent as a text/csv body or a multipart `file`. Every row is checked first:
        with any error nothing is imported and each error names its line."""
        product = self.get_scoped_object(Product, pk=_number_param(request, "product"))
        broker = get_object_or_404(
            Broker.objects.filter(product=product), pk=_number_param(request, "broker")
        )
        try:
            text = self._csv_text(request)
            devices = csv_import.import_csv(
                actor=request.user, product=product, broker=broker, text=text
            )
        except csv_import.ImportFailed as exc:
            return _import_failure(exc)
        return Response(
            {
                "imported": len(devices),
                "devices": [{"id": d.pk, "device_id": d.device_id} for d in devices],
            },
            status=http.HTTP_201_CREATED,
        )

    @staticmethod
    def _csv_text(request: Request) -> str:
        if isinstance(request.data, str):
            return request.data
        if request.content_type.startswith(CsvTextParser.media_type):
            return ""  # an empty body is not parsed at all
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationError(
                {"file": [_("Send a text/csv body or a multipart file named file.")]}
            )
        return csv_import.decode_csv(csv_import.read_capped(upload))


class AlertRuleViewSet(ProductScopedModelViewSet):
    """Threshold rules of the user's products (filter with ?product=&device=)."""

    serializer_class = AlertRuleSerializer
    filterset_class = AlertRuleFilterSet
    parent_field = "product"

    def get_queryset(self) -> QuerySet[AlertRule]:
        return selectors.alert_rules_for(self.request.user).order_by(
            "product__name", "key", "id"
        )

    def service_create(self, fields: dict[str, Any]) -> AlertRule:
        # The rule's product is the object of a create: the same role check.
        self.check_object_permissions(self.request, fields["product"])
        return services.alert_rule_create(actor=self.request.user, **fields)

    def service_update(self, instance: AlertRule, fields: dict[str, Any]) -> AlertRule:
        return services.alert_rule_update(
            actor=self.request.user, rule=instance, **fields
        )

    def service_delete(self, instance: AlertRule) -> None:
        services.alert_rule_delete(actor=self.request.user, rule=instance)
