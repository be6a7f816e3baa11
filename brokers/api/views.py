"""Brokers API: connections (CRUD, status, control, test, publish), subscriptions
and publish templates.

Objects outside the user's products are 404; viewers read, operators write. Every
change goes through brokers.services, which validates, audits and nudges the runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework import status as http
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from brokers import services
from brokers.api.serializers import (
    BrokerConnectionOverridesSerializer,
    BrokerConnectionSerializer,
    BrokerControlResultSerializer,
    BrokerControlSerializer,
    BrokerSerializer,
    BrokerStatusSerializer,
    ConnectionTestResultSerializer,
    PublishBatchSerializer,
    PublishMessageSerializer,
    PublishResultSerializer,
    PublishTemplateSerializer,
    SubscriptionSerializer,
    SubscriptionTestSerializer,
    publish_request,
)
from brokers.client import PublishError
from brokers.filtersets import (
    BrokerFilterSet,
    PublishTemplateFilterSet,
    SubscriptionFilterSet,
)
from brokers.models import Broker, PublishTemplate, Subscription
from brokers.throttles import ConnectionTestRateThrottle
from mqttadmin.api.base import ProductScopedModelViewSet
from mqttadmin.models import Product
from mqttadmin.roles import Role

logger = logging.getLogger(__name__)


class BrokerUnreachable(APIException):
    status_code = http.HTTP_502_BAD_GATEWAY
    default_detail = "The broker could not be reached."
    default_code = "broker_unreachable"


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


def flatten_errors(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested errors as `{"messages[1].properties.content_type": [...]}`,
    the shape the publish service uses for batches."""
    if isinstance(errors, Mapping):
        flat: dict[str, list[str]] = {}
        for key, value in errors.items():
            if isinstance(key, int):  # a list item's errors
                name = f"{prefix}[{key}]"
            elif key == api_settings.NON_FIELD_ERRORS_KEY:  # about the whole value
                name = prefix
            else:
                name = f"{prefix}.{key}" if prefix else key
            for field, messages in flatten_errors(value, name).items():
                flat.setdefault(field, []).extend(messages)
        return flat
    if isinstance(errors, list) and any(isinstance(e, Mapping) for e in errors):
        flat = {}
        for index, value in enumerate(errors):
            flat.update(flatten_errors(value, f"{prefix}[{index}]"))
        return flat
    messages = errors if isinstance(errors, list) else [errors]
    return {prefix or "detail": [str(m) for m in messages]}


PUBLISH_REQUEST = PolymorphicProxySerializer(
    component_name="PublishRequest",
    serializers=[PublishMessageSerializer, PublishBatchSerializer],
    resource_type_field_name=None,
)


class BrokerViewSet(ProductScopedModelViewSet):
    """Broker connections of the user's products (filter with ?product=)."""

    serializer_class = BrokerSerializer
    filterset_class = BrokerFilterSet
    parent_field = "product"
    required_roles = {
        "status": Role.VIEWER,
        "control": Role.OPERATOR,
        "publish": Role.OPERATOR,
        "test_connection": Role.OPERATOR,
    }

    def get_queryset(self) -> QuerySet[Broker]:
        return (
            Broker.objects.for_user(self.request.user)
            .select_related("product")
            .order_by("product__name", "name")
        )

    def service_create(self, fields: dict[str, Any]) -> Broker:
        return services.broker_create(actor=self.request.user, **fields)

    def service_update(self, instance: Broker, fields: dict[str, Any]) -> Broker:
        return services.broker_update(
            actor=self.request.user, broker=instance, **fields
        )

    def service_delete(self, instance: Broker) -> None:
        services.broker_delete(actor=self.request.user, broker=instance)

    @extend_schema(responses=BrokerStatusSerializer)
    @action(detail=True, methods=["get"])
    def status(self, request: Request, pk: str) -> Response:
        """The live state of the connection, as the runtime last wrote it."""
        broker_status = services.broker_status(self.get_object())
        return Response(BrokerStatusSerializer(broker_status).data)

    @extend_schema(
        request=BrokerControlSerializer,
        responses={202: BrokerControlResultSerializer},
    )
    @action(detail=True, methods=["post"])
    def control(self, request: Request, pk: str) -> Response:
        """connect / disconnect (which also set `enabled`) or reconnect; the runtime
        acts on it within a second or so."""
        broker = self.get_object()
        payload = BrokerControlSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        action_name = payload.validated_data["action"]
        broker = services.broker_control(
            actor=request.user, broker=broker, action=action_name
        )
        return Response(
            {"action": action_name, "enabled": broker.enabled},
            status=http.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        request=PUBLISH_REQUEST,
        responses={
            200: PublishResultSerializer,
            400: OpenApiResponse(description="A field breaks a rule; nothing sent."),
            502: OpenApiResponse(
                DetailSerializer, description="The broker could not be reached."
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, pk: str) -> Response:
        """Publish one message, or `{"messages": [...]}`: all are checked before
        any is sent."""
        broker = self.get_object()
        data = request.data
        batch = isinstance(data, Mapping) and "messages" in data
        if batch and "topic" in data:
            raise ValidationError(
                {"messages": [_("Send one message or messages, not both.")]}
            )
        payload: PublishBatchSerializer | PublishMessageSerializer = (
            PublishBatchSerializer(data=data)
            if batch
            else PublishMessageSerializer(data=data)
        )
        if not payload.is_valid():
            raise ValidationError(flatten_errors(payload.errors))
        messages = (
            payload.validated_data["messages"] if batch else [payload.validated_data]
        )
        try:
            published = services.broker_publish(
                actor=request.user,
                broker=broker,
                requests=[publish_request(message) for message in messages],
                batch=batch,
            )
        except PublishError as exc:
            logger.info("publishing to broker %s failed: %s", broker.pk, exc)
            raise BrokerUnreachable(
                _("Publishing failed: %(reason)s") % {"reason": exc}
            ) from None
        return Response({"published": published})

    @extend_schema(
        request=BrokerConnectionSerializer,
        responses={200: ConnectionTestResultSerializer},
        operation_id="v1_brokers_test_settings",
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="test",
        url_name="test",
        throttle_classes=[
            *api_settings.DEFAULT_THROTTLE_CLASSES,
            ConnectionTestRateThrottle,
        ],
    )
    def test_settings(self, request: Request) -> Response:
        """Try unsaved connection settings once (operators of any product)."""
        if not Product.objects.for_user(request.user, Role.OPERATOR).exists():
            raise PermissionDenied(_("Testing connections needs the operator role."))
        payload = BrokerConnectionSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        payload.is_valid(raise_exception=True)
        result = services.broker_test_connection(payload.connection_settings())
        return Response(result.as_dict())

    @extend_schema(
        request=BrokerConnectionOverridesSerializer,
        responses={200: ConnectionTestResultSerializer},
        operation_id="v1_brokers_test_saved",
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="test",
        url_name="test-saved",
        throttle_classes=[
            *api_settings.DEFAULT_THROTTLE_CLASSES,
            ConnectionTestRateThrottle,
        ],
    )
    def test_connection(self, request: Request, pk: str) -> Response:
        """Try the saved settings once; fields in the body override saved ones."""
        broker = self.get_object()
        payload = BrokerConnectionOverridesSerializer(
            data=request.data,
            context={**self.get_serializer_context(), "broker": broker},
        )
        payload.is_valid(raise_exception=True)
        result = services.broker_test_connection(
            payload.connection_settings(),
            broker=broker,
            supplied=[n for n in Broker.SECRET_FIELDS if n in payload.validated_data],
        )
        return Response(result.as_dict())


class SubscriptionViewSet(ProductScopedModelViewSet):
    """Topic filters kept subscribed on the user's brokers (filter with ?broker=)."""

    serializer_class = SubscriptionSerializer
    filterset_class = SubscriptionFilterSet
    parent_field = "broker"

    def get_queryset(self) -> QuerySet[Subscription]:
        return (
            Subscription.objects.for_user(self.request.user)
            .select_related("broker__product")
            .order_by("broker__name", "name")
        )

    def service_create(self, fields: dict[str, Any]) -> Subscription:
        return services.subscription_create(actor=self.request.user, **fields)

    def service_update(
        self, instance: Subscription, fields: dict[str, Any]
    ) -> Subscription:
        return services.subscription_update(
            actor=self.request.user, subscription=instance, **fields
        )

    def service_delete(self, instance: Subscription) -> None:
        services.subscription_delete(actor=self.request.user, subscription=instance)

    @extend_schema(
        request=SubscriptionTestSerializer,
        responses=inline_serializer(
            "SubscriptionDryRun",
            {
                "matches": serializers.BooleanField(),
                "actions": serializers.ListField(child=serializers.DictField()),
            },
        ),
    )
    @action(detail=True, methods=["post"], url_path="test", url_name="test")
    def dry_run(self, request: Request, pk: str) -> Response:
        """Render every action for a sample message and say what it would do,
        without doing it."""
        subscription = self.get_object()
        sample = SubscriptionTestSerializer(data=request.data)
        sample.is_valid(raise_exception=True)
        return Response(
            services.subscription_dry_run(
                subscription=subscription,
                topic=sample.validated_data["topic"],
                payload=sample.payload_bytes(),
            )
        )


class PublishTemplateViewSet(ProductScopedModelViewSet):
    """Saved messages per broker (filter with ?broker=)."""

    serializer_class = PublishTemplateSerializer
    filterset_class = PublishTemplateFilterSet
    parent_field = "broker"

    def get_queryset(self) -> QuerySet[PublishTemplate]:
        return (
            PublishTemplate.objects.for_user(self.request.user)
            .select_related("broker__product")
            .order_by("broker__name", "name")
        )

    def service_create(self, fields: dict[str, Any]) -> PublishTemplate:
        return services.publish_template_save(actor=self.request.user, **fields)

    def service_update(
        self, instance: PublishTemplate, fields: dict[str, Any]
    ) -> PublishTemplate:
        return services.publish_template_save(
            actor=self.request.user, broker=instance.broker, template=instance, **fields
        )

    def service_delete(self, instance: PublishTemplate) -> None:
        services.publish_template_delete(actor=self.request.user, template=instance)
