"""Small factories for tests (no JSON fixtures)."""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model

from mqttadmin.models import Membership, Product

_seq = itertools.count(1)
PASSWORD = "correct-horse-battery"


def make_user(username: str | None = None, **extra: Any) -> Any:
    username = username or f"user{next(_seq)}"
    return get_user_model().objects.create_user(
        username=username, password=PASSWORD, **extra
    )


def make_superuser(username: str | None = None) -> Any:
    username = username or f"root{next(_seq)}"
    return get_user_model().objects.create_superuser(
        username=username, email="", password=PASSWORD
    )


def make_product(name: str | None = None, **members: Any) -> Product:
    """`make_product(admin=user, viewer=other)` adds members by role."""
    n = next(_seq)
    product = Product.objects.create(name=name or f"Product {n}", slug=f"product-{n}")
    for role, user in members.items():
        Membership.objects.create(product=product, user=user, role=role)
    return product
