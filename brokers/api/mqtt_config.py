"""The product MQTT configuration API of seed 001, under /api/v1/products/{id}/.

For services that run their own MQTT listener and take their settings from the
portal instead of a static file. Broker passwords come out only to the product's
service accounts (role `service`, token only); everyone else sees "***".
"""

from __future__ import annotations

from typing import Any, cast

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from brokers import services
from brokers.api.serializers import BrokerStatusSerializer, SubscriptionSerializer
from brokers.client import ConnectionSettings
from brokers.models import ProductMqttConfig, ServiceStatusReport, Subscription
from brokers.mqtt_config import (
    broker_fields_from,
    config_of,
    mqtt_config_put,
    service_status_report,
)
from brokers.throttles import ConnectionTestRateThrottle
from mqttadmin.api.base import ProductScopedAPIView
from mqttadmin.models import Product
from mqttadmin.roles import Role

NOT_CONFIGURED = "MQTT not configured for this product"


def _object_body(request: Request) -> dict[str, Any]:
    """The JSON body as an object; anything else (a list, a string) is a 400."""
    if not isinstance(request.data, dict):
        raise ApiValidationError(
            {"non_field_errors": [_("The request body must be a JSON object.")]}
        )
    return request.data


def _is_service(request: Request, product: Product) -> bool:
    return (
        product.role_of(request.user) == Role.SERVICE and not request.user.is_superuser
    )


def _config_dict(config: ProductMqttConfig, reveal_password: bool) -> dict[str, Any]:
    broker = config.primary_broker
    assert broker is not None
    password = (
        broker.password if reveal_password else ("***" if broker.password else None)
    )
    return {
        "id": broker.pk,
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "use_tls": broker.use_tls,
            "verify_cert": not broker.tls_insecure,
            "username": broker.username,
            "password": password,
            "keep_alive": broker.keepalive,
            "clean_session": broker.clean_start,
            "client_id": broker.client_id,
            "protocol": broker.protocol,
        },
        "topics": {
            "prefix": config.topic_prefix,
            "pattern": config.topic_pattern,
            "use_shared": config.use_shared,
            "shared_group": config.shared_group,
            "qos": config.qos,
        },
    }


def _status_dict(config: ProductMqttConfig | None, product: Product) -> dict[str, Any]:
    runtime = None
    if config and config.primary_broker:
        runtime = BrokerStatusSerializer(
            services.broker_status(config.primary_broker)
        ).data
    report = ServiceStatusReport.objects.filter(product=product).first()
    service = None
    if report:
        service = {
            key: getattr(report, key)
            for key in (
                "connected",
                "last_connected_at",
                "last_disconnected_at",
                "messages_received",
                "subscribed_topics_count",
                "client_id",
                "broker_info",
                "connection_error",
                "reported_by",
                "reported_at",
            )
        }
    return {"runtime": runtime, "service": service}


def _configured(product: Product) -> ProductMqttConfig:
    config = config_of(product)
    if config is None or config.primary_broker is None:
        raise ApiValidationError({"detail": NOT_CONFIGURED})
    return config


class MqttConfigView(ProductScopedAPIView):
    """The primary broker, topic settings, subscriptions and status together."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, pk: int) -> Response:
        product = self.get_scoped_object(Product, pk=pk)
        config = config_of(product)
        if config is None or config.primary_broker is None:
            return Response(
                {
                    "product_id": product.pk,
                    "mqtt_config": None,
                    "message": NOT_CONFIGURED,
                }
            )
        subscriptions = Subscription.objects.filter(broker=config.primary_broker)
        return Response(
            {
                "product_id": product.pk,
                "mqtt_config": _config_dict(config, _is_service(request, product)),
                "subscriptions": SubscriptionSerializer(subscriptions, many=True).data,
                "status": _status_dict(config, product),
            }
        )

    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT)
    def put(self, request: Request, pk: int) -> Response:
        product = self.get_scoped_object(Product, pk=pk)
        body = _object_body(request)
        broker = body.get("broker", {})
        topics = body.get("topics", {})
        if not isinstance(broker, dict) or not isinstance(topics, dict):
            raise ApiValidationError({"broker": [_("broker and topics are objects.")]})
        config, requires_restart = mqtt_config_put(
            actor=request.user, product=product, broker=broker, topics=topics
        )
        return Response(
            {
                "status": "success",
                "message": "MQTT configuration updated successfully",
                "requires_restart": requires_restart,
                "mqtt_config": _config_dict(config, False),
            }
        )


class MqttConfigTestView(ProductScopedAPIView):
    """Test the saved settings, or settings in the body (seed 001's names).

    Operators only, within the per-user budget of connection tests."""

    throttle_classes = [
        # api_settings imports the dotted paths; the stubs type them as strings.
        *cast("list[type[BaseThrottle]]", api_settings.DEFAULT_THROTTLE_CLASSES),
        ConnectionTestRateThrottle,
    ]

    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, pk: int) -> Response:
        product = self.get_scoped_object(Product, pk=pk)
        config = config_of(product)
        body = request.data if isinstance(request.data, dict) else {}
        body = body.get("broker", body)
        try:
            overrides = broker_fields_from(
                {k: v for k, v in body.items() if k != "timeout"}
            )
        except ValidationError as exc:
            raise ApiValidationError(exc.message_dict) from None
        saved = config.primary_broker if config else None
        if saved is not None:
            settings = ConnectionSettings.from_broker(saved, **overrides)
        elif overrides.get("host"):
            settings = ConnectionSettings(**overrides)
        else:
            raise ApiValidationError(
                {"host": [_("Give a host, or configure MQTT first.")]}
            )
        try:
            result = services.broker_test_connection(
                settings,
                broker=saved,
                supplied=[k for k in overrides if k == "password"],
            )
        except ValidationError as exc:
            # Seed 001's names: the stored password is `broker.password` here.
            raise ApiValidationError(
                {f"broker.{k}": v for k, v in exc.message_dict.items()}
            ) from None
        # Seed 001's shape ("error" + "details"), plus the portal's own fields.
        failure = (
            f"Connection failed with code {result.reason_code}"
            if result.reason_code
            else result.reason
        )
        return Response(
            {
                "status": "success" if result.ok else "error",
                "connected": result.ok,
                "error": None if result.ok else failure,
                "details": result.reason,
                "reason_code": result.reason_code,
                "reason": result.reason,
                "latency_ms": result.latency_ms,
                "error_kind": result.error,
            }
        )


class MqttConfigSubscriptionsView(ProductScopedAPIView):
    @extend_schema(responses=SubscriptionSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        product = self.get_scoped_object(Product, pk=pk)
        config = _configured(product)
        subscriptions = Subscription.objects.filter(broker=config.primary_broker)
        return Response(SubscriptionSerializer(subscriptions, many=True).data)


class MqttConfigSubscriptionDetailView(ProductScopedAPIView):
    @extend_schema(request=SubscriptionSerializer, responses=SubscriptionSerializer)
    def put(self, request: Request, pk: int, sub_id: int) -> Response:
        product = self.get_scoped_object(Product, pk=pk)
        config = _configured(product)
        subscription = get_object_or_404(
            Subscription, pk=sub_id, broker=config.primary_broker
        )
        data = {**_object_body(request), "broker": subscription.broker_id}
        serializer = SubscriptionSerializer(
            subscription, data=data, partial=True, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        fields = {k: v for k, v in serializer.validated_data.items() if k != "broker"}
        subscription = services.subscription_update(
            actor=request.user, subscription=subscription, **fields
        )
        return Response(SubscriptionSerializer(subscription).data)


class MqttConfigReconnectView(ProductScopedAPIView):
    @extend_schema(request=None, responses={202: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        product = self.get_scoped_object(Product, pk=pk)
        broker = _configured(product).primary_broker
        assert broker is not None  # _configured refuses a config without one
        services.broker_control(actor=request.user, broker=broker, action="reconnect")
        return Response({"status": "accepted"}, status=status.HTTP_202_ACCEPTED)


class MqttConfigStatusView(ProductScopedAPIView):
    """The portal's own connection status and the one the service reports."""

    # Any member reaches the report; who may report is checked in `post`.
    required_roles = {"post": Role.VIEWER}

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, pk: int) -> Response:
        product = self.get_scoped_object(Product, pk=pk)
        return Response(
            {"product_id": product.pk, **_status_dict(config_of(product), product)}
        )

    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, pk: int) -> Response:
        product = self.get_scoped_object(Product, pk=pk)
        if not (
            _is_service(request, product) or product.allows(request.user, Role.OPERATOR)
        ):
            raise PermissionDenied(_("Reporting status needs a service account."))
        if not isinstance(request.data, dict):
            raise ApiValidationError({"detail": [_("The report is a JSON object.")]})
        service_status_report(actor=request.user, product=product, **request.data)
        return Response(
            {"product_id": product.pk, **_status_dict(config_of(product), product)},
            status=status.HTTP_201_CREATED,
        )
