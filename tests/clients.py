"""Test clients logged in as a user: the API's and the pages'."""

from __future__ import annotations

from typing import Any

from django.test import Client
from rest_framework.test import APIClient

from mqttadmin.middleware import SESSION_PRODUCT_KEY
from mqttadmin.models import Product


def htmx_swap(target: str) -> dict[str, Any]:
    """The headers htmx sends when an element asks for an answer to swap into the
    element with id `target` (mqttadmin.http.fragment_wanted: a fragment)."""
    return {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": target}


# An HTMX request swapping into an element of the page: views that serve one
# fragment only look at whether htmx named a target.
HTMX: dict[str, Any] = htmx_swap("panel")
# The GET htmx makes to follow an HX-Location answer: it targets the body, which
# has no id, so no HX-Target; the view answers with the whole page.
HTMX_LOCATION: dict[str, Any] = {
    "HTTP_HX_REQUEST": "true",
    "HTTP_HX_CURRENT_URL": "http://testserver/",
}
# Back to a page htmx has no snapshot of: it asks for the whole page.
HTMX_HISTORY_RESTORE: dict[str, Any] = {
    "HTTP_HX_REQUEST": "true",
    "HTTP_HX_HISTORY_RESTORE_REQUEST": "true",
}


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
