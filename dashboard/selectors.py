"""Reads for the overview page, across the apps a user can see."""

from __future__ import annotations

from typing import Any

from brokers.selectors import brokers_with_status
from mqttadmin.models import Product
from mqttadmin.roles import Role


def overview_for(user: Any, product: Product | None) -> dict[str, Any]:
    """What the overview shows for `user`, centred on the current product."""
    products = Product.objects.for_user(user).order_by("name")
    return {
        "products": products,
        "product": product,
        # Health cards of the current product's brokers the user can see.
        "broker_cards": brokers_with_status(user, product),
        "can_add_broker": product is not None and product.allows(user, Role.OPERATOR),
    }
