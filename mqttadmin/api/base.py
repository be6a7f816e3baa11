"""The bases every API view and viewset builds on: one permission style, one
shape for writes.

- `ProductScoped.get_scoped_object()` finds an object through `for_user` (404
  outside the user's products) and checks the view's required role on its product
  (403 below it), through `ProductRolePermission`.
- `ProductScopedViewSet.perform_create/update/destroy` hand the validated fields to
  the app's services through three hooks (`service_create`, `service_update`,
  `service_delete`), which each viewset implements with one service call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from django.db import models
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from rest_framework import mixins, viewsets
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from mqttadmin.api.permissions import ProductRolePermission
from mqttadmin.roles import Role

M = TypeVar("M", bound=models.Model)

if TYPE_CHECKING:
    _ViewBase = APIView
else:
    _ViewBase = object


# Mixin of every API view: `required_roles` by action (viewsets) or HTTP method
# (plain views); unsafe methods default to `write_role`, reads to viewer. (Comments,
# not docstrings, on these bases: the schema would show them for undocumented views.)
class ProductScoped(_ViewBase):
    permission_classes = [ProductRolePermission]
    required_roles: ClassVar[Mapping[str, Role]] = {}
    write_role: ClassVar[Role] = Role.OPERATOR
    role_denied_detail: ClassVar[Mapping[str, str]] = {}

    def get_scoped_object(self, source: type[M] | QuerySet[M], **lookup: Any) -> M:
        """The object the user may see (else 404), if their role suffices (else 403)."""
        # Every model the API serves has a ProductScopedQuerySet (`for_user`), which
        # models.Model does not declare.
        queryset: Any = (
            source if isinstance(source, QuerySet) else source.objects.all()  # type: ignore[attr-defined]
        )
        obj = get_object_or_404(queryset.for_user(self.request.user), **lookup)
        self.check_object_permissions(self.request, obj)
        return obj


# A plain API view under the one permission rule. (No docstring: the schema
# would show it as the description of every view that has none of its own.)
class ProductScopedAPIView(ProductScoped, APIView):
    pass


class ProductScopedViewSet(ProductScoped, viewsets.GenericViewSet):
    """A viewset whose writes go through the app's services.

    `parent_field` names the serializer field that places a new object (its
    product or broker): it is passed to `service_create` and never changed by an
    update.
    """

    lookup_value_regex = r"\d+"
    parent_field: ClassVar[str | None] = None

    def service_create(self, fields: dict[str, Any]) -> Any:
        raise NotImplementedError

    def service_update(self, instance: Any, fields: dict[str, Any]) -> Any:
        raise NotImplementedError

    def service_delete(self, instance: Any) -> None:
        raise NotImplementedError

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        serializer.instance = self.service_create(dict(serializer.validated_data))

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        instance = serializer.instance
        assert instance is not None  # an update has the object it changes
        fields = dict(serializer.validated_data)
        if self.parent_field:
            fields.pop(self.parent_field, None)
        serializer.instance = self.service_update(instance, fields)

    def perform_destroy(self, instance: Any) -> None:
        self.service_delete(instance)


class ProductScopedModelViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    ProductScopedViewSet,
):
    """CRUD over the app's services."""

    # DRF's mixins define perform_* too: the service hooks win.
    perform_create = ProductScopedViewSet.perform_create
    perform_update = ProductScopedViewSet.perform_update
    perform_destroy = ProductScopedViewSet.perform_destroy
