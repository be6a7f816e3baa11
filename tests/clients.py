"""Test clients logged in as a user: the API's and the pages'."""

from __future__ import annotations

from typing import Any

from django.test import Client
from rest_framework.test import APIClient

from mqttadmin.middleware import SESSION_PRODUCT_KEY
from mqttadmin.models import Product

# The header an HTMX request carries: the view answers with a fragment.
HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def as_user(user: Any) -> APIClient:
    """An API client authenticated as `user`."""
    client = APIClient()
    client.force_authenticate(user)
    return client


def logged_in(user: Any, product: Product | None = None) -> Client:
    """A page client logged in as `user`, with `product` chosen in the switcher."""
    client = Client()
    client.force_login(user)
    if product is not None:
        session = client.session
        session[SESSION_PRODUCT_KEY] = product.pk
        session.save()
    return client
