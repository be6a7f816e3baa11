"""The one permission rule of the API (see `mqttadmin.permissions`).

An object is looked up through `for_user(user)`, so one outside the user's products
is a 404; then the view's `required_role()` is checked on the object's product, so a
role too low is a 403. Views say which role an endpoint needs with
`required_roles` (by action for viewsets, by HTTP method for plain views) and
`write_role` (the default for unsafe methods); reads default to viewer.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.views import APIView

from mqttadmin.permissions import product_of
from mqttadmin.roles import Role


def required_role_of(request: Request, view: APIView) -> Role:
    """The minimum role `view` asks for the current request."""
    key = getattr(view, "action", None) or (request.method or "").lower()
    roles: dict[str, str] = getattr(view, "required_roles", {})
    if key in roles:
        return Role(roles[key])
    if request.method in permissions.SAFE_METHODS:
        return Role.VIEWER
    return Role(getattr(view, "write_role", Role.OPERATOR))


class ProductRolePermission(permissions.IsAuthenticated):
    """Authenticated, and holding the view's required role in the object's product.

    A view that explains a refusal names the message in `role_denied_detail`
    (by action or method, "*" for any; `%(role)s` and `%(product)s` are filled);
    otherwise a refusal is DRF's plain 403.
    """

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        role = required_role_of(request, view)
        product = product_of(obj)
        if product.allows(request.user, role):
            return True
        details: dict[str, str] = getattr(view, "role_denied_detail", {})
        key = getattr(view, "action", None) or (request.method or "").lower()
        detail = details.get(key, details.get("*"))
        if detail:
            raise PermissionDenied(
                detail % {"role": role.label.lower(), "product": product.name}
            )
        return False
