"""One permission rule for pages, API and WebSockets.

Objects are first looked up through `for_user(user)`: what is outside the user's
products does not exist for them (404). Then the action's minimum role is checked
on the object's product: a role too low is a 403.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404
from django.utils.translation import gettext as _

from mqttadmin.models import Product
from mqttadmin.roles import Role

M = TypeVar("M", bound=models.Model)


def product_of(obj: models.Model) -> Product:
    """The product an object belongs to, following its `product_path`."""
    if isinstance(obj, Product):
        return obj
    # `objects` (a ProductScopedQuerySet manager) is declared by each model, not by
    # models.Model: the ignores here and in get_for_user_or_404 stand for that.
    path = type(obj).objects.get_queryset().product_path  # type: ignore[attr-defined]
    target: Any = obj
    for part in path.split("__"):
        target = getattr(target, part)
    return target


def require_role(user: Any, product: Product, minimum: Role | str) -> None:
    """Raise PermissionDenied unless `user` holds at least `minimum` in `product`."""
    if not product.allows(user, minimum):
        raise PermissionDenied(
            _("This needs the %(role)s role in %(product)s.")
            % {"role": Role(minimum).label.lower(), "product": product.name}
        )


def get_for_user_or_404(
    model: type[M], user: Any, minimum: Role | str = Role.VIEWER, **lookup: Any
) -> M:
    """Fetch an object the user can see, then check `minimum` on its product."""
    try:
        obj = model.objects.for_user(user).get(**lookup)  # type: ignore[attr-defined]
    except model.DoesNotExist:  # type: ignore[attr-defined]  # each model's own
        raise Http404 from None
    if minimum != Role.VIEWER:
        require_role(user, product_of(obj), minimum)
    return obj
