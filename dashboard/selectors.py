"""Reads for the overview page, across the apps a user can see."""

from __future__ import annotations

from typing import Any

from mqttadmin.models import Product


def overview_for(user: Any, product: Product | None) -> dict[str, Any]:
    """What the overview shows for `user`, centred on the current product."""
    products = Product.objects.for_user(user).order_by("name")
    return {"products": products, "product": product}
