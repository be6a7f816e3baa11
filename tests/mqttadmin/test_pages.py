"""The role matrix on the pages, the shell, login and the admin."""

from __future__ import annotations

import pytest
from django.test import Client

from mqttadmin.models import AuditEntry, Membership
from tests.clients import HTMX, logged_in
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def test_login_page_is_served() -> None:
    response = Client().get("/login/")
    assert response.status_code == 200
    assert b'name="password"' in response.content


def test_pages_need_login(world: dict) -> None:
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_login_with_password_reaches_the_overview(world: dict) -> None:
    client = Client()
    response = client.post("/login/", {"username": "victor", "password": PASSWORD})
    assert response.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    assert b"Overview" in page.content and b"Plant" in page.content


def test_shell_has_navigation_and_no_cdn(world: dict) -> None:
    html = logged_in(world["users"]["viewer"]).get("/").content.decode()
    for label in ("Overview", "API", "Products", "Audit"):
        assert label in html
    assert "/static/vendor/htmx-" in html
    assert "https://" not in html and "http://" not in html.replace(
        "http://www.w3.org", ""
    )


@pytest.mark.parametrize(
    ("who", "status"),
    [("superuser", 200), ("admin", 200), ("viewer", 200), ("outsider", 404)],
)
def test_product_page_is_scoped(world: dict, who: str, status: int) -> None:
    client = logged_in(world["users"][who])
    assert client.get(f"/products/{world['product'].pk}/").status_code == status


def test_only_admins_see_member_management(world: dict) -> None:
    url = f"/products/{world['product'].pk}/"
    assert b"Add member" in logged_in(world["users"]["admin"]).get(url).content
    assert b"Add member" not in logged_in(world["users"]["operator"]).get(url).content


@pytest.mark.parametrize(
    ("who", "status", "added"),
    [("admin", 200, True), ("operator", 403, False), ("outsider", 404, False)],
)
def test_member_add_through_the_page(
    world: dict, who: str, status: int, added: bool
) -> None:
    make_user("newbie")
    client = logged_in(world["users"][who])
    response = client.post(
        f"/products/{world['product'].pk}/", {"username": "newbie", "role": "viewer"}
    )
    assert response.status_code == status
    exists = Membership.objects.filter(user__username="newbie").exists()
    assert exists == added
    if added:
        assert AuditEntry.objects.get(action="membership.add").source == "page"


def test_member_form_error_names_the_field(world: dict) -> None:
    client = logged_in(world["users"]["admin"])
    response = client.post(
        f"/products/{world['product'].pk}/",
        {"username": "ghost", "role": "viewer"},
        **HTMX,
    )
    assert response.status_code == 200
    assert "No user named “ghost”" in response.content.decode()
    assert b"<html" not in response.content  # the HTMX partial, not the page


@pytest.mark.parametrize(
    ("who", "status"), [("admin", 302), ("viewer", 403), ("outsider", 404)]
)
def test_member_role_change_through_the_page(
    world: dict, who: str, status: int
) -> None:
    viewer = world["users"]["viewer"]
    response = logged_in(world["users"][who]).post(
        f"/products/{world['product'].pk}/members/{viewer.pk}/", {"role": "operator"}
    )
    assert response.status_code == status
    role = Membership.objects.get(user=viewer).role
    assert role == ("operator" if status == 302 else "viewer")


def test_product_switcher_only_switches_to_visible_products(world: dict) -> None:
    client = logged_in(world["users"]["viewer"])
    response = client.post("/products/switch/", {"product": world["other"].pk})
    assert response.status_code == 404
    response = client.post(
        "/products/switch/", {"product": world["product"].pk, "next": "https://evil/"}
    )
    assert response.status_code == 302 and response["Location"] == "/"


def test_audit_page_shows_admins_their_products_only(world: dict) -> None:
    logged_in(world["users"]["superuser"]).post(
        "/products/", {"name": "Created in page"}
    )
    logged_in(world["users"]["admin"]).post(
        f"/products/{world['product'].pk}/", {"username": "olga", "role": "viewer"}
    )
    admin_page = logged_in(world["users"]["admin"]).get("/audit/").content.decode()
    assert "membership.add" in admin_page and "product.create" not in admin_page
    root_page = logged_in(world["users"]["superuser"]).get("/audit/").content.decode()
    assert "product.create" in root_page
    viewer_page = logged_in(world["users"]["viewer"]).get("/audit/").content.decode()
    assert "membership.add" not in viewer_page


def test_only_superusers_create_products_in_the_page(world: dict) -> None:
    response = logged_in(world["users"]["admin"]).post("/products/", {"name": "X"})
    assert response.status_code == 403


def test_admin_changes_are_audited(world: dict) -> None:
    client = logged_in(world["users"]["superuser"])
    product = world["product"]
    response = client.post(
        f"/admin/mqttadmin/product/{product.pk}/change/",
        {
            "name": "Plant 2",
            "slug": product.slug,
            "description": "",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    entry = AuditEntry.objects.get(action="product.update")
    assert entry.source == "admin" and entry.changes["name"] == ["Plant", "Plant 2"]


def test_admin_password_change_is_audited_without_the_hash(world: dict) -> None:
    client = logged_in(world["users"]["superuser"])
    victim = world["users"]["viewer"]
    client.post(
        f"/admin/auth/user/{victim.pk}/password/",
        {"password1": "a-new-long-password-1", "password2": "a-new-long-password-1"},
    )
    entries = AuditEntry.objects.filter(target_id=str(victim.pk), action="user.update")
    assert entries.exists()
    for entry in entries:
        assert entry.changes.get("password") in (None, ["***", "***"])


@pytest.mark.parametrize(
    "url",
    [
        "/admin/mqttadmin/product/",
        "/admin/mqttadmin/membership/",
        "/admin/mqttadmin/auditentry/",
        "/admin/auth/user/",
    ],
)
def test_admin_lists_render(world: dict, url: str) -> None:
    response = logged_in(world["users"]["superuser"]).get(url + "?q=a")
    assert response.status_code == 200
