"""Foundation API: auth token, products, product members, audit log."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from mqttadmin import services
from mqttadmin.api.base import ProductScopedModelViewSet, ProductScopedViewSet
from mqttadmin.api.filters import UtcIsoDateTimeFilter
from mqttadmin.api.permissions import ProductRolePermission
from mqttadmin.api.serializers import (
    AuditEntrySerializer,
    MemberCreateSerializer,
    MemberSerializer,
    MemberUpdateSerializer,
    ProductSerializer,
)
from mqttadmin.models import AuditEntry, Membership, Product
from mqttadmin.roles import Role


class IsSuperuserForWrites(permissions.IsAuthenticated):
    """Creating needs a superuser; changing an object is checked once it is found,
    so a product outside the user's membership stays a 404."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        return getattr(view, "action", None) != "create" or request.user.is_superuser

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return request.method in permissions.SAFE_METHODS or request.user.is_superuser


class ProductViewSet(ProductScopedModelViewSet):
    """Members list and read their products; superusers create, change, delete."""

    serializer_class = ProductSerializer
    # Ids are numbers (the base's lookup): `/products/abc/members/` is a 404.
    permission_classes = [ProductRolePermission, IsSuperuserForWrites]
    write_role = Role.ADMIN
    required_roles = {"members": Role.ADMIN, "member": Role.ADMIN}
    role_denied_detail = {
        "members": "Managing members needs the admin role.",
        "member": "Managing members needs the admin role.",
    }

    def get_queryset(self) -> QuerySet[Product]:
        return Product.objects.for_user(self.request.user).order_by("name")

    def service_create(self, fields: dict[str, Any]) -> Product:
        return services.product_create(actor=self.request.user, **fields)

    def service_update(self, instance: Product, fields: dict[str, Any]) -> Product:
        return services.product_update(
            actor=self.request.user, product=instance, **fields
        )

    def service_delete(self, instance: Product) -> None:
        services.product_delete(actor=self.request.user, product=instance)

    def _product_for_admin(self, pk: str) -> Product:
        return self.get_scoped_object(Product, pk=pk)

    @extend_schema(
        methods=["GET"],
        responses=MemberSerializer(many=True),
        operation_id="members_list",
    )
    @extend_schema(
        methods=["POST"],
        request=MemberCreateSerializer,
        responses={201: MemberSerializer},
        operation_id="members_create",
    )
    @action(
        detail=True,
        methods=["get", "post"],
        url_path="members",
        permission_classes=[ProductRolePermission],
    )
    def members(self, request: Request, pk: str) -> Response:
        product = self._product_for_admin(pk)
        if request.method == "GET":
            memberships = product.memberships.select_related("user")
            return Response(MemberSerializer(memberships, many=True).data)
        payload = MemberCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        membership = services.membership_add(
            actor=request.user, product=product, **payload.validated_data
        )
        return Response(
            MemberSerializer(membership).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        methods=["PATCH"],
        request=MemberUpdateSerializer,
        responses=MemberSerializer,
        operation_id="members_update",
    )
    @extend_schema(
        methods=["DELETE"], responses={204: None}, operation_id="members_delete"
    )
    @action(
        detail=True,
        methods=["patch", "delete"],
        url_path=r"members/(?P<user_id>\d+)",
        permission_classes=[ProductRolePermission],
    )
    def member(self, request: Request, pk: str, user_id: str) -> Response:
        product = self._product_for_admin(pk)
        membership = get_object_or_404(Membership, product=product, user_id=user_id)
        if request.method == "DELETE":
            services.membership_remove(actor=request.user, membership=membership)
            return Response(status=status.HTTP_204_NO_CONTENT)
        payload = MemberUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        membership = services.membership_change_role(
            actor=request.user, membership=membership, **payload.validated_data
        )
        return Response(MemberSerializer(membership).data)


class AuditEntryFilter(filters.FilterSet):
    product = filters.NumberFilter(field_name="product_id")
    action = filters.CharFilter(field_name="action", lookup_expr="startswith")
    since = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = AuditEntry
        fields = ["product", "action", "since"]


class AuditEntryViewSet(mixins.ListModelMixin, ProductScopedViewSet):
    """The audit log of the products the user administers."""

    serializer_class = AuditEntrySerializer
    filterset_class = AuditEntryFilter

    def get_queryset(self) -> QuerySet[AuditEntry]:
        return AuditEntry.objects.for_user(self.request.user).select_related("actor")
