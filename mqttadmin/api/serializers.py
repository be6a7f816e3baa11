"""Serializers of the foundation API: products, members, audit entries."""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from mqttadmin.models import AuditEntry, Membership, Product
from mqttadmin.roles import Role


class ProductSerializer(serializers.ModelSerializer):
    slug = serializers.SlugField(required=False, max_length=60)

    class Meta:
        model = Product
        fields = ["id", "name", "slug", "description"]


class MemberSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="user.pk", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["user_id", "username", "role", "created_at"]
        read_only_fields = ["created_at"]


class MemberCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(
        choices=Role.choices,
        error_messages={
            "invalid_choice": _(
                "Role must be one of: viewer, operator, admin, service."
            )
        },
    )


class MemberUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=Role.choices,
        error_messages={
            "invalid_choice": _(
                "Role must be one of: viewer, operator, admin, service."
            )
        },
    )


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name", read_only=True)

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "created_at",
            "actor",
            "product",
            "source",
            "action",
            "target_type",
            "target_id",
            "target_repr",
            "changes",
        ]
