"""Serializers of the brokers API: connections, status, subscriptions, publishing.

The rules live in one place: model field validators and `Broker.clean()`
(brokers.models) and the topic rules (mqttadmin.lib.topics). Serializers reuse them
to answer early with errors that name the field; services check again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Field, Model, QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField, empty

from brokers import services
from brokers.action_headers import mask_headers
from brokers.choices import ControlAction, PayloadEncoding
from brokers.client import ConnectionSettings
from brokers.models import (
    SESSION_EXPIRY_MAX,
    Broker,
    BrokerStatus,
    PublishTemplate,
    Subscription,
)
from mqttadmin.audit import SECRET_MASK
from mqttadmin.lib.topics import validate_topic_filter, validate_topic_name
from mqttadmin.models import Product, ProductScopedQuerySet
from mqttadmin.permissions import require_role
from mqttadmin.roles import Role

QOS_MESSAGE = _("QoS must be 0, 1 or 2.")
MAX_BATCH = 1000


# --- Fields -------------------------------------------------------------------


class ProductScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A parent object (product, broker) chosen by id.

    Ids outside the user's products "do not exist" (400 naming the field, as for
    any unknown id); a visible parent where the user's role is below `role` is a 403.
    """

    def __init__(self, *, role: Role = Role.OPERATOR, **kwargs: Any) -> None:
        self.role = role
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet:
        request = self.context.get("request")
        # Always one of our models' querysets (the stubs allow None for read-only).
        queryset = cast(ProductScopedQuerySet, super().get_queryset())
        if request is None:
            return queryset.none()
        return queryset.for_user(request.user)

    def to_internal_value(self, data: Any) -> Model:
        parent = super().to_internal_value(data)
        product = parent if isinstance(parent, Product) else parent.product
        # Django's PermissionDenied is not a validation error: it ends validation
        # at once and the exception handler answers 403.
        require_role(self.context["request"].user, product, self.role)
        return parent


@extend_schema_field(
    {
        "type": "string",
        "nullable": True,
        "description": 'Write-only secret: reads give "***" when set and null when '
        'not. Leave it out, or send "***" or null, to keep it; "" clears it.',
    }
)
class SecretField(serializers.CharField):
    """A secret that is written but never read back: "***" when set, null when not."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    # DRF renders None as null; the stubs give CharField's output as str only.
    def to_representation(self, value: Any) -> str | None:  # type: ignore[override]
        return SECRET_MASK if value else None

    def run_validation(self, data: Any = empty) -> Any:
        # Writing back what was read ("***" or null) keeps the stored secret.
        if data is None or data == SECRET_MASK:
            raise SkipField
        return super().run_validation(data)


ACTIONS_HELP = (
    "Actions run for every matching message, in order. A webhook lists its secret "
    'headers by name in "secret_headers" (left out on write: Authorization, Cookie '
    "and names containing key, token, secret or passw, plus any sent as "
    '"***"); actions saved before that list existed treat every header as secret. '
    'Reads show secret values as "***" and plain ones as stored. On write, a secret '
    'header whose value is "***" keeps its stored value, taken only from a saved '
    "action calling exactly the same URL (the same position first), so what was "
    "read can be written back unchanged; a changed URL drops it (refused: enter the "
    "value again). Any other value replaces it and a header left out is removed."
)


class ActionsField(serializers.JSONField):
    """Subscription actions, with webhook header values shown as "***"."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", ACTIONS_HELP)
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> Any:
        return super().to_representation(mask_headers(value))


class _TopicField(serializers.Field):
    """A string checked by one of the topic rules of mqttadmin.lib.topics."""

    rule: Any = None

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError(_("Not a string."))
        try:
            type(self).rule(data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return data

    def to_representation(self, value: Any) -> str:
        return str(value)


@extend_schema_field(OpenApiTypes.STR)
class TopicNameField(_TopicField):
    """A topic to publish to: 1-65,535 UTF-8 bytes, no NUL, no wildcards."""

    rule = staticmethod(validate_topic_name)


@extend_schema_field(OpenApiTypes.STR)
class TopicFilterField(_TopicField):
    """A topic filter (maybe `$share/<group>/<filter>`), by the MQTT rules."""

    rule = staticmethod(validate_topic_filter)


def qos_field(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=0,
        max_value=2,
        error_messages={"min_value": QOS_MESSAGE, "max_value": QOS_MESSAGE},
        **kwargs,
    )


@extend_schema_field(
    {
        "oneOf": [
            {"type": "object", "additionalProperties": {"type": "string"}},
            {
                "type": "array",
                "items": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 2,
                    "maxItems": 2,
                },
            },
        ],
        "description": "MQTT 5 user properties: an object, or a list of "
        "[name, value] pairs when a name repeats.",
    }
)
class UserPropertiesField(serializers.Field):
    """`{"name": "value"}` or `[["name", "value"], ...]` (names may repeat)."""

    default_error_messages = {
        "invalid": _(
            "User properties are an object of strings or a list of [name, value] pairs."
        )
    }

    def to_internal_value(self, data: Any) -> dict[str, str] | list[list[str]]:
        scalar = str | int | float | bool
        if isinstance(data, Mapping):
            if not all(isinstance(v, scalar) for v in data.values()):
                self.fail("invalid")
            return {str(k): str(v) for k, v in data.items()}
        if isinstance(data, list):
            pairs = []
            for pair in data:
                if (
                    not isinstance(pair, list | tuple)
                    or len(pair) != 2
                    or not all(isinstance(part, scalar) for part in pair)
                ):
                    self.fail("invalid")
                pairs.append([str(pair[0]), str(pair[1])])
            return pairs
        self.fail("invalid")
        raise AssertionError  # unreachable: fail() raises

    def to_representation(self, value: Any) -> Any:
        return value


# --- Brokers ------------------------------------------------------------------

BROKER_READ_FIELDS = ["id", "address", "created_at", "updated_at"]
# Text whose spaces matter is kept as given.
UNTRIMMED = {
    name: {"trim_whitespace": False}
    for name in ("ws_path", "ca_cert", "client_cert", "username", "client_id")
}


def _model_validators(model: type[Model], name: str) -> list[Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, Field)  # a concrete column, not a relation's reverse
    return list(field.validators)


class BrokerSerializer(serializers.ModelSerializer):
    """A broker connection. `product` is set on create and cannot change."""

    product = ProductScopedRelatedField(queryset=Product.objects.all())
    password = SecretField(max_length=4096)
    client_key = SecretField(validators=_model_validators(Broker, "client_key"))
    address = serializers.CharField(read_only=True)

    class Meta:
        model = Broker
        fields = [
            "id",
            "product",
            "name",
            "host",
            "port",
            "transport",
            "ws_path",
            "use_tls",
            "tls_insecure",
            "ca_cert",
            "client_cert",
            "client_key",
            "protocol",
            "client_id",
            "keepalive",
            "clean_start",
            "session_expiry_interval",
            "username",
            "password",
            "enabled",
            "connect_timeout",
            "fallback_hosts",
            "max_payload_bytes",
            "history_payload_max_bytes",
            "collect_sys_stats",
            "address",
            "created_at",
            "updated_at",
        ]
        read_only_fields = BROKER_READ_FIELDS
        extra_kwargs = UNTRIMMED
        # The (product, name) uniqueness is checked in validate() to name `name`.
        validators: list[Any] = []

    def validate_product(self, product: Product) -> Product:
        if self.instance is not None and product != self.instance.product:
            raise serializers.ValidationError(
                _("A broker stays in its product; create a new one instead.")
            )
        return product

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: Broker | None = self.instance
        # A create always sends `product`: `instance` is only read on updates.
        product = attrs.get("product") or instance.product  # type: ignore[union-attr]
        name = attrs.get("name", instance.name if instance else "")
        duplicates = Broker.objects.filter(product=product, name=name)
        if instance is not None:
            duplicates = duplicates.exclude(pk=instance.pk)
        if duplicates.exists():
            raise serializers.ValidationError(
                {"name": _("This product already has a broker with this name.")}
            )
        values = (
            {f: getattr(instance, f) for f in services.BROKER_FIELDS}
            if instance is not None
            else {}
        )
        values.update({k: v for k, v in attrs.items() if k != "product"})
        # Cross-field rules (TLS, protocol, credentials) from the model itself.
        Broker(product=product, **values).clean()
        return attrs


class BrokerConnectionSerializer(serializers.ModelSerializer):
    """Connection settings to test without saving them (the form's Test button).

    With a saved broker in the context (`broker`), given fields override the saved
    ones; a secret left out (or "***") means the saved one.
    """

    password = SecretField(max_length=4096)
    client_key = SecretField(validators=_model_validators(Broker, "client_key"))

    class Meta:
        model = Broker
        fields = list(Broker.CONNECTION_FIELDS)
        extra_kwargs = UNTRIMMED
        validators: list[Any] = []

    def _candidate(self, attrs: Mapping[str, Any]) -> Broker:
        saved: Broker | None = self.context.get("broker")
        values = (
            {f: getattr(saved, f) for f in Broker.CONNECTION_FIELDS}
            if saved is not None
            else {}
        )
        values.update(attrs)
        return Broker(**values)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        self._candidate(attrs).clean()
        return attrs

    def connection_settings(self) -> ConnectionSettings:
        """The settings to try, once `is_valid()` passed."""
        return ConnectionSettings.from_broker(self._candidate(self.validated_data))


class BrokerConnectionOverridesSerializer(BrokerConnectionSerializer):
    """Settings overriding a saved broker's for one test: every field optional."""

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for field in fields.values():
            field.required = False
        return fields


class ConnectionTestResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    reason_code = serializers.IntegerField(
        allow_null=True,
        help_text="CONNACK code as the protocol numbers it (3.1.1: 4 bad "
        "credentials, 5 not authorised; MQTT 5: 134, 135).",
    )
    reason = serializers.CharField()
    latency_ms = serializers.FloatField(allow_null=True)
    error = serializers.ChoiceField(
        choices=[
            "",
            "dns",
            "refused",
            "timeout",
            "tls",
            "bad_credentials",
            "not_authorized",
            "protocol",
            "network",
        ],
        allow_blank=True,
        help_text="Kind of failure; empty when ok.",
    )


class BrokerStatusSerializer(serializers.ModelSerializer):
    connected = serializers.BooleanField(read_only=True)

    class Meta:
        model = BrokerStatus
        fields = [
            "state",
            "connected",
            "last_connected_at",
            "last_disconnected_at",
            "messages_received",
            "subscribed_topics_count",
            "client_id",
            "connection_error",
            "owner",
        ]
        read_only_fields = fields


class BrokerControlSerializer(serializers.Serializer):
    action = serializers.ChoiceField(
        choices=ControlAction.choices,
        error_messages={
            "invalid_choice": _(
                "Action must be one of: connect, disconnect, reconnect."
            )
        },
    )


class BrokerControlResultSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=ControlAction.choices)
    enabled = serializers.BooleanField()


# --- Publishing ---------------------------------------------------------------


class PublishPropertiesSerializer(serializers.Serializer):
    """MQTT 5 PUBLISH properties (refused for a 3.1.1 broker)."""

    content_type = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=65535
    )
    message_expiry_interval = serializers.IntegerField(
        required=False, min_value=0, max_value=SESSION_EXPIRY_MAX
    )
    response_topic = TopicNameField(required=False)
    correlation_data = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=65535
    )
    user_properties = UserPropertiesField(required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    _("Unknown properties: %(unknown)s. Known: %(known)s.")
                    % {"unknown": ", ".join(unknown), "known": ", ".join(self.fields)}
                )
        return super().to_internal_value(data)


class PublishMessageSerializer(serializers.Serializer):
    """One message. `payload` is text for utf8, base64 text for base64, and any
    JSON value (or JSON text) for json."""

    topic = TopicNameField()
    # Any JSON value may be a default; the stubs allow only mappings.
    payload = serializers.JSONField(required=False, default="", allow_null=True)  # type: ignore[arg-type]
    encoding = serializers.ChoiceField(
        choices=PayloadEncoding.choices,
        default=PayloadEncoding.UTF8,
        error_messages={
            "invalid_choice": _("Encoding must be one of: utf8, base64, json.")
        },
    )
    qos = qos_field(default=0)
    retain = serializers.BooleanField(default=False)
    properties = PublishPropertiesSerializer(required=False)

    def to_request(self) -> services.PublishRequest:
        return publish_request(self.validated_data)


class PublishBatchSerializer(serializers.Serializer):
    """Several messages, all checked before any is sent, then sent in order on one
    connection. Not all-or-nothing: if the broker refuses one or closes the
    connection, those it acknowledged before stay published (the error says how
    many)."""

    # many=True makes a ListSerializer, which takes max_length; the stubs type the
    # call as the child's constructor.
    messages = PublishMessageSerializer(  # type: ignore[call-arg]
        many=True, allow_empty=False, max_length=MAX_BATCH
    )


class PublishResultSerializer(serializers.Serializer):
    published = serializers.IntegerField()


def publish_request(data: Mapping[str, Any]) -> services.PublishRequest:
    return services.PublishRequest(
        topic=data["topic"],
        payload=data.get("payload", ""),
        encoding=data.get("encoding", PayloadEncoding.UTF8),
        qos=data.get("qos", 0),
        retain=data.get("retain", False),
        properties=dict(data["properties"]) if data.get("properties") else None,
    )


# --- Subscriptions and templates ----------------------------------------------


def _check_unique_name(
    model: type[Model], instance: Model | None, broker: Broker, name: str
) -> None:
    duplicates = model._default_manager.filter(broker=broker, name=name)
    if instance is not None:
        duplicates = duplicates.exclude(pk=instance.pk)
    if duplicates.exists():
        raise serializers.ValidationError(
            {"name": _("This broker already has one with this name.")}
        )


class SubscriptionSerializer(serializers.ModelSerializer):
    """A topic filter kept subscribed on its broker; `broker` cannot change."""

    broker = ProductScopedRelatedField(queryset=Broker.objects.all())
    topic_filter = TopicFilterField()
    qos = qos_field(required=False)
    actions = ActionsField(
        required=False, validators=_model_validators(Subscription, "actions")
    )

    class Meta:
        model = Subscription
        fields = [
            "id",
            "broker",
            "name",
            "description",
            "topic_filter",
            "shared_group",
            "qos",
            "enabled",
            "store_messages",
            "actions",
            "messages_received",
            "actions_executed",
            "actions_failed",
            "last_message_at",
            "last_error",
            "granted_qos",
            "refused_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "messages_received",
            "actions_executed",
            "actions_failed",
            "last_message_at",
            "last_error",
            "granted_qos",
            "refused_reason",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {
            "granted_qos": {
                "help_text": "The QoS the broker granted in its SUBACK (may be "
                "below `qos`); null until the broker answered, or when disabled."
            },
            "refused_reason": {
                "help_text": "Why the broker refused this subscription (SUBACK "
                "0x80 and above); the subscription is then disabled. Empty "
                "otherwise."
            },
        }
        validators: list[Any] = []

    def validate_broker(self, broker: Broker) -> Broker:
        if self.instance is not None and broker != self.instance.broker:
            raise serializers.ValidationError(_("A subscription stays on its broker."))
        return broker

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: Subscription | None = self.instance
        # A create always sends `broker`: `instance` is only read on updates.
        broker = attrs.get("broker") or instance.broker  # type: ignore[union-attr]
        name = attrs.get("name", instance.name if instance else "")
        _check_unique_name(Subscription, instance, broker, name)
        return attrs


TEMPLATE_MESSAGE_FIELDS = (
    "topic",
    "payload",
    "encoding",
    "qos",
    "retain",
    "properties",
)


class PublishTemplateSerializer(serializers.ModelSerializer):
    """A saved message; it must be publishable on its broker as saved."""

    broker = ProductScopedRelatedField(queryset=Broker.objects.all())
    topic = TopicNameField()
    qos = qos_field(required=False)
    properties = PublishPropertiesSerializer(required=False)

    class Meta:
        model = PublishTemplate
        fields = [
            "id",
            "broker",
            "name",
            "topic",
            "payload",
            "encoding",
            "qos",
            "retain",
            "properties",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"payload": {"trim_whitespace": False}}
        validators: list[Any] = []

    def validate_broker(self, broker: Broker) -> Broker:
        if self.instance is not None and broker != self.instance.broker:
            raise serializers.ValidationError(_("A template stays on its broker."))
        return broker

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: PublishTemplate | None = self.instance
        # A create always sends `broker`: `instance` is only read on updates.
        broker = attrs.get("broker") or instance.broker  # type: ignore[union-attr]
        name = attrs.get("name", instance.name if instance else "")
        _check_unique_name(PublishTemplate, instance, broker, name)
        values = (
            {f: getattr(instance, f) for f in TEMPLATE_MESSAGE_FIELDS}
            if instance is not None
            else {}
        )
        values.update({k: attrs[k] for k in TEMPLATE_MESSAGE_FIELDS if k in attrs})
        # The same checks as publishing it: payload encoding and size, properties
        # only for MQTT 5, $CONTROL for product admins only.
        request = self.context.get("request")
        services.prepare_message(
            broker,
            publish_request(values),
            may_control=services.may_control(getattr(request, "user", None), broker),
        )
        return attrs


class SubscriptionTestSerializer(serializers.Serializer):
    """A sample message for a subscription's dry run."""

    topic = TopicNameField()
    payload = serializers.JSONField(
        help_text="Text, or any JSON value (sent as its JSON text)."
    )

    def payload_bytes(self) -> bytes:
        payload = self.validated_data["payload"]
        if isinstance(payload, str):
            return payload.encode("utf-8")
        return json.dumps(payload).encode("utf-8")
