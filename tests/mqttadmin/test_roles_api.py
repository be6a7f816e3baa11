"""The role matrix on the foundation API: who reads and who writes what."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from mqttadmin.models import AuditEntry, Membership, Product
from tests.clients import as_user
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_anonymous_gets_401(world: dict) -> None:
    assert APIClient().get("/api/v1/products/").status_code == 401


@pytest.mark.parametrize(
    ("who", "sees"),
    [
        ("superuser", {"Plant", "Other"}),
        ("admin", {"Plant"}),
        ("operator", {"Plant"}),
        ("viewer", {"Plant"}),
        ("outsider", {"Other"}),
    ],
)
def test_product_list_is_scoped_to_membership(world: dict, who: str, sees: set) -> None:
    response = as_user(world["users"][who]).get("/api/v1/products/")
    assert response.status_code == 200
    assert {p["name"] for p in response.json()["results"]} == sees


@pytest.mark.parametrize(
    ("who", "status"),
    [("superuser", 200), ("admin", 200), ("viewer", 200), ("outsider", 404)],
)
def test_product_retrieve(world: dict, who: str, status: int) -> None:
    url = f"/api/v1/products/{world['product'].pk}/"
    assert as_user(world["users"][who]).get(url).status_code == status


def test_product_fields(world: dict) -> None:
    data = (
        as_user(world["users"]["viewer"])
        .get(f"/api/v1/products/{world['product'].pk}/")
        .json()
    )
    assert set(data) == {"id", "name", "slug", "description"}


@pytest.mark.parametrize(
    ("who", "status"),
    [("superuser", 201), ("admin", 403), ("operator", 403), ("viewer", 403)],
)
def test_only_superusers_create_products(world: dict, who: str, status: int) -> None:
    response = as_user(world["users"][who]).post(
        "/api/v1/products/", {"name": "New line", "description": "x"}, format="json"
    )
    assert response.status_code == status
    assert Product.objects.filter(name="New line").exists() == (status == 201)


def test_created_product_gets_slug_and_audit_entry(world: dict) -> None:
    response = as_user(world["users"]["superuser"]).post(
        "/api/v1/products/", {"name": "Cold Store"}, format="json"
    )
    assert response.json()["slug"] == "cold-store"
    entry = AuditEntry.objects.get(action="product.create")
    assert entry.actor_name == "root" and entry.source == "api"
    assert entry.changes["name"] == [None, "Cold Store"]


@pytest.mark.parametrize(
    ("who", "status"),
    [("superuser", 200), ("admin", 403), ("viewer", 403), ("outsider", 404)],
)
def test_product_update(world: dict, who: str, status: int) -> None:
    url = f"/api/v1/products/{world['product'].pk}/"
    response = as_user(world["users"][who]).patch(
        url, {"name": "Renamed"}, format="json"
    )
    assert response.status_code == status
    world["product"].refresh_from_db()
    assert (world["product"].name == "Renamed") == (status == 200)


@pytest.mark.parametrize(
    ("who", "status"),
    [("superuser", 204), ("admin", 403), ("operator", 403), ("outsider", 404)],
)
def test_product_delete(world: dict, who: str, status: int) -> None:
    url = f"/api/v1/products/{world['product'].pk}/"
    assert as_user(world["users"][who]).delete(url).status_code == status


def test_invalid_product_names_the_field(world: dict) -> None:
    response = as_user(world["users"]["superuser"]).post(
        "/api/v1/products/", {"name": "", "slug": "not a slug"}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"name", "slug"}
    assert Product.objects.count() == 2


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 200),
        ("admin", 200),
        ("operator", 403),
        ("viewer", 403),
        ("outsider", 404),
    ],
)
def test_members_list_is_for_product_admins(world: dict, who: str, status: int) -> None:
    url = f"/api/v1/products/{world['product'].pk}/members/"
    response = as_user(world["users"][who]).get(url)
    assert response.status_code == status
    if status == 200:
        assert {m["username"]: m["role"] for m in response.json()} == {
            "alice": "admin",
            "oscar": "operator",
            "victor": "viewer",
        }


@pytest.mark.parametrize(
    ("who", "status"),
    [("superuser", 201), ("admin", 201), ("operator", 403), ("outsider", 404)],
)
def test_members_add(world: dict, who: str, status: int) -> None:
    make_user("newbie")
    url = f"/api/v1/products/{world['product'].pk}/members/"
    response = as_user(world["users"][who]).post(
        url, {"username": "newbie", "role": "operator"}, format="json"
    )
    assert response.status_code == status
    added = Membership.objects.filter(
        product=world["product"], user__username="newbie"
    ).exists()
    assert added == (status == 201)


def test_members_add_rejects_unknown_user_and_role(world: dict) -> None:
    url = f"/api/v1/products/{world['product'].pk}/members/"
    client = as_user(world["users"]["admin"])
    response = client.post(url, {"username": "ghost", "role": "viewer"}, format="json")
    assert response.status_code == 400
    assert "ghost" in response.json()["username"][0]
    response = client.post(url, {"username": "olga", "role": "king"}, format="json")
    assert response.status_code == 400
    assert "viewer, operator, admin" in response.json()["role"][0]


def test_members_role_change_and_remove(world: dict) -> None:
    product, viewer = world["product"], world["users"]["viewer"]
    url = f"/api/v1/products/{product.pk}/members/{viewer.pk}/"
    client = as_user(world["users"]["admin"])
    response = client.patch(url, {"role": "operator"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "operator"
    assert client.delete(url).status_code == 204
    assert not Membership.objects.filter(product=product, user=viewer).exists()
    actions = list(AuditEntry.objects.values_list("action", flat=True))
    assert "membership.change_role" in actions and "membership.remove" in actions


def test_last_admin_cannot_be_demoted(world: dict) -> None:
    admin = world["users"]["admin"]
    url = f"/api/v1/products/{world['product'].pk}/members/{admin.pk}/"
    response = as_user(admin).patch(url, {"role": "viewer"}, format="json")
    assert response.status_code == 400
    assert "at least one admin" in response.json()["role"][0]


def test_operator_cannot_change_roles(world: dict) -> None:
    viewer = world["users"]["viewer"]
    url = f"/api/v1/products/{world['product'].pk}/members/{viewer.pk}/"
    response = as_user(world["users"]["operator"]).patch(
        url, {"role": "admin"}, format="json"
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("who", "count"),
    [("superuser", 1), ("admin", 1), ("operator", 0), ("viewer", 0), ("outsider", 0)],
)
def test_audit_api_is_for_product_admins(world: dict, who: str, count: int) -> None:
    as_user(world["users"]["superuser"]).patch(
        f"/api/v1/products/{world['product'].pk}/", {"description": "d"}, format="json"
    )
    response = as_user(world["users"][who]).get(
        f"/api/v1/audit/?product={world['product'].pk}"
    )
    assert response.status_code == 200
    assert response.json()["count"] == count
