"""Serializers of the acl API. The rules live in the models' validators and
`acl.services`; serializers reuse them to answer early with errors naming the field."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from acl.choices import LifecycleAction, SyncState
from acl.models import ManagedBroker, MqttRole, MqttRule, MqttUser
from brokers.api.serializers import SecretField
from mqttadmin.audit import SECRET_MASK

UNTRIMMED = {"trim_whitespace": False}


class NamedRelatedField(serializers.SlugRelatedField):
    """A slug lookup that refuses what no name can hold (NUL: PostgreSQL text
    cannot store it, and the lookup would fail in the database)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data)
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "enum": SyncState.values})
class SyncStateField(serializers.ChoiceField):
    """Inline in the schema: a named enum would collide with other `state` fields."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=SyncState.choices, **kwargs)


@extend_schema_field(
    {
        "type": "string",
        "pattern": "^(reload|restart)$",
        "description": "reload or restart",
    }
)
class LifecycleActionField(serializers.ChoiceField):
    """Described without a named enum, which would collide with the brokers API's
    `action` (connect/disconnect/reconnect)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=LifecycleAction.choices, **kwargs)


class SyncStateSerializer(serializers.Serializer):
    state = SyncStateField()
    error = serializers.CharField(allow_null=True)


class MqttUserSerializer(serializers.ModelSerializer):
    """An MQTT user. `password` is write-only: reads give "***" when one is set;
    leaving it out (or sending "***" or null) keeps it."""

    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_null=True,
        trim_whitespace=False,
        max_length=1024,
    )
    roles = NamedRelatedField(
        many=True,
        slug_field="name",
        queryset=MqttRole.objects.none(),
        required=False,
    )

    class Meta:
        model = MqttUser
        fields = [
            "id",
            "username",
            "password",
            "roles",
            "enabled",
            "client_id",
            "password_pending",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["password_pending", "created_at", "updated_at"]
        extra_kwargs = {"username": UNTRIMMED, "client_id": UNTRIMMED}
        # (broker, username) is checked by the service, naming `username`.
        validators: list[Any] = []

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        broker = self.context.get("broker")
        roles = fields["roles"]
        assert isinstance(roles, serializers.ManyRelatedField)
        roles.child_relation.queryset = (
            MqttRole.objects.filter(broker=broker)
            if broker is not None
            else MqttRole.objects.none()
        )
        return fields

    def validate_password(self, value: str | None) -> str | None:
        if value == SECRET_MASK:
            return None
        if value == "":
            raise serializers.ValidationError(_("A password cannot be empty."))
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None and not attrs.get("password"):
            raise serializers.ValidationError(
                {"password": [_("A new user needs a password.")]}
            )
        return attrs

    def to_representation(self, instance: MqttUser) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["password"] = SECRET_MASK if instance.password_hash else None
        return data


class MqttRuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = MqttRule
        fields = ["topic", "access", "priority"]
        extra_kwargs = {"topic": UNTRIMMED}
        validators: list[Any] = []


class MqttRoleSerializer(serializers.ModelSerializer):
    """A named rule set. Sending `rules` replaces all of them."""

    rules = MqttRuleSerializer(many=True, required=False)
    users: serializers.SlugRelatedField[MqttUser] = serializers.SlugRelatedField(
        many=True, slug_field="username", read_only=True
    )

    class Meta:
        model = MqttRole
        fields = ["id", "name", "rules", "users", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        validators: list[Any] = []


class ManagedBrokerSerializer(serializers.ModelSerializer):
    """How the broker is managed. `management_password` is write-only ("***" when
    set); files and commands on the portal's host need a superuser."""

    management_password = SecretField(max_length=4096)

    class Meta:
        model = ManagedBroker
        fields = [
            "management",
            "management_username",
            "management_password",
            "password_file",
            "acl_file",
            "reload_method",
            "pid_file",
            "reload_command",
            "restart_command",
            "last_sync_state",
            "last_sync_error",
            "last_sync_at",
        ]
        read_only_fields = ["last_sync_state", "last_sync_error", "last_sync_at"]
        validators: list[Any] = []


class SyncRequestSerializer(serializers.Serializer):
    prune = serializers.BooleanField(
        default=False,
        help_text="Dynamic Security: also delete clients and roles unknown here.",
    )


class SyncReportSerializer(serializers.Serializer):
    sync = SyncStateSerializer()
    drift = serializers.DictField(allow_null=True)
    pruned = serializers.ListField(child=serializers.CharField())


class LifecycleRequestSerializer(serializers.Serializer):
    action = LifecycleActionField(
        error_messages={"invalid_choice": _("Action must be reload or restart.")},
    )


class LifecycleOutcomeSerializer(serializers.Serializer):
    action = serializers.CharField()
    method = serializers.CharField()
    ok = serializers.BooleanField()
    detail = serializers.CharField()
    output = serializers.CharField(allow_blank=True)
    returncode = serializers.IntegerField(allow_null=True)
