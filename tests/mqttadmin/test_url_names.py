"""Page and API route names never clash: every page name reverses to a page that
answers HTML, and the API's names live in the `api` namespace."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.clients import as_user, logged_in
from tests.factories import make_broker

pytestmark = pytest.mark.django_db


def page_names() -> list[tuple[str, int]]:
    """(name, number of arguments) of every named route outside the API and the
    Django admin."""
    found: list[tuple[str, int]] = []

    def walk(patterns: list[Any], namespace: str, outer_arguments: int) -> None:
        for pattern in patterns:
            arguments = outer_arguments + pattern.pattern.regex.groups
            if isinstance(pattern, URLResolver):
                inner = pattern.namespace or ""
                if inner in ("api", "admin"):
                    continue
                prefix = f"{namespace}{inner}:" if inner else namespace
                walk(pattern.url_patterns, prefix, arguments)
            elif isinstance(pattern, URLPattern) and pattern.name:
                found.append((namespace + pattern.name, arguments))

    walk(get_resolver().url_patterns, "", 0)
    return found


def test_the_api_names_are_namespaced_and_shadow_no_page() -> None:
    names = {name for name, _args in page_names()}
    assert "product-list" in names and "product-detail" in names
    assert reverse("product-list") == "/products/"
    assert reverse("product-detail", args=[1]) == "/products/1/"
    assert reverse("api:product-list") == "/api/v1/products/"


def test_every_page_without_arguments_answers_html(world: dict) -> None:
    client = logged_in(world["users"]["superuser"])
    checked = []
    for name, arguments in page_names():
        if arguments or name in ("logout", "healthz", "product-switch"):
            continue
        path = reverse(name)
        if path.startswith(("/api/", "/static/", "/ws/")):
            continue
        response = client.get(path)
        if response.status_code in (301, 302, 405):
            continue
        assert response.status_code == 200, (name, path, response.status_code)
        assert response["Content-Type"].startswith("text/html"), (name, path)
        checked.append(name)
    assert "product-list" in checked and "audit" in checked


def test_the_products_pages_and_members_form_are_pages(world: dict) -> None:
    product = world["product"]
    make_broker(product)
    client = logged_in(world["users"]["superuser"])
    listing = client.get("/products/").content.decode()
    assert f'href="/products/{product.pk}/"' in listing
    detail = client.get(f"/products/{product.pk}/")
    assert detail["Content-Type"].startswith("text/html")
    assert f'action="/products/{product.pk}/"' in detail.content.decode()


def test_the_api_root_lists_namespaced_collections(world: dict) -> None:
    root = as_user(world["users"]["superuser"]).get("/api/v1/").json()
    assert root["products"].endswith("/api/v1/products/")
    assert root["brokers"].endswith("/api/v1/brokers/")
