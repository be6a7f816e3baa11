"""DRF glue for the permission rule of `mqttadmin.permissions`."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from mqttadmin.permissions import product_of
from mqttadmin.roles import Role


class ProductRolePermission(permissions.IsAuthenticated):
    """Reads need membership (enforced by `for_user` in get_queryset, so a 404);
    writes need the view's `write_role` (default operator) on the object's product.

    A view may name per-action roles in `action_roles`, e.g. {"publish": "operator"}.
    """

    def _role_for(self, request: Request, view: APIView) -> Role:
        action = getattr(view, "action", None)
        roles: dict[str, str] = getattr(view, "action_roles", {})
        if action in roles:
            return Role(roles[action])
        if request.method in permissions.SAFE_METHODS:
            return Role.VIEWER
        return Role(getattr(view, "write_role", Role.OPERATOR))

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        return product_of(obj).allows(request.user, self._role_for(request, view))
