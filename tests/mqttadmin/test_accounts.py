"""A user changes their own password; product admins add and create members, who
get in by a one-time password (changed at first login) or an invite link."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from mqttadmin.models import AuditEntry, Membership, PasswordChangeRequired
from mqttadmin.security import token_issue
from tests.clients import logged_in
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-longer-new-passphrase-42"


def browser(username: str, password: str = PASSWORD, agent: str = "Test") -> Client:
    client = Client(HTTP_USER_AGENT=agent)
    response = client.post("/login/", {"username": username, "password": password})
    assert response.status_code == 302, response.content[:300]
    return client


def is_logged_in(client: Client) -> bool:
    return client.get("/account/security/").status_code == 200


def change(client: Client, old: str, new1: str, new2: str | None = None) -> str:
    response = client.post(
        "/account/password/",
        {"old_password": old, "new_password1": new1, "new_password2": new2 or new1},
    )
    return response.content.decode() if response.status_code == 200 else ""


# --- Changing your own password ---------------------------------------------------


def test_changing_my_password_keeps_this_browser_and_ends_the_rest() -> None:
    user = make_user("sam")
    laptop = browser("sam", agent="Laptop")
    phone = browser("sam", agent="Phone")
    token_issue(user=user)
    response = laptop.post(
        "/account/password/",
        {
            "old_password": PASSWORD,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302 and response["Location"] == "/account/security/"
    assert is_logged_in(laptop) and not is_logged_in(phone)
    assert not AuthToken.objects.filter(user=user).exists()
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    # This browser is still listed as this browser after the session's new key.
    assert "this browser" in laptop.get("/account/security/").content.decode()
    entry = AuditEntry.objects.get(action="auth.password_change")
    assert entry.changes == {
        "other_sessions_ended": [None, 1],
        "tokens_revoked": [None, 1],
    }
    # One entry for the change: no separate ones for what it ended.
    assert not AuditEntry.objects.filter(
        action__in=["auth.token_revoke", "auth.sessions_end_others", "auth.session_end"]
    ).exists()
    old = Client().post("/login/", {"username": "sam", "password": PASSWORD})
    assert old.status_code == 200  # the form again, with its error


@pytest.mark.parametrize(
    ("old", "new1", "new2", "field", "says"),
    [
        ("wrong-password", NEW_PASSWORD, NEW_PASSWORD, "old_password", "incorrectly"),
        (PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x", "new_password2", "didn"),
        (PASSWORD, "short", "short", "new_password2", "too short"),
        (PASSWORD, "password123", "password123", "new_password2", "too common"),
    ],
)
def test_a_bad_password_change_names_the_field_and_changes_nothing(
    old: str, new1: str, new2: str, field: str, says: str
) -> None:
    user = make_user("sam")
    laptop = browser("sam")
    phone = browser("sam", agent="Phone")
    html = change(laptop, old, new1, new2)
    assert f'id="id_{field}-error"' in html
    assert says in html
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert is_logged_in(phone)
    assert not AuditEntry.objects.filter(action="auth.password_change").exists()


def test_the_account_page_links_the_password_change() -> None:
    make_user("sam")
    html = browser("sam").get("/account/security/").content.decode()
    assert 'href="/account/password/"' in html


# --- Members on the product page ----------------------------------------------------


def create(client: Client, product_pk: int, **fields: str) -> tuple[int, str]:
    data = {f"new-{k}": v for k, v in fields.items()}
    response = client.post(f"/products/{product_pk}/", data)
    return response.status_code, response.content.decode()


def test_an_admin_creates_a_user_with_a_one_time_password(world: dict) -> None:
    product = world["product"]
    status, html = create(
        logged_in(world["users"]["admin"]),
        product.pk,
        username="nina",
        email="nina@example.com",
        role="operator",
        access="password",
    )
    assert status == 200
    password = re.search(r'id="one-time-password">([^<]+)<', html).group(1)  # type: ignore[union-attr]
    nina = get_user_model().objects.get(username="nina")
    assert not nina.is_staff and not nina.is_superuser
    assert nina.email == "nina@example.com"
    assert nina.check_password(password)
    assert Membership.objects.get(user=nina, product=product).role == "operator"
    assert AuditEntry.objects.get(action="user.create").product == product
    assert AuditEntry.objects.filter(action="membership.add").count() == 1
    # Shown once: the next view of the page no longer has it.
    again = logged_in(world["users"]["admin"]).get(f"/products/{product.pk}/")
    assert password not in again.content.decode()

    # First login: every page leads to the password change until it is done.
    client = browser("nina", password)
    assert client.get("/")["Location"] == "/account/password/"
    assert client.get(f"/products/{product.pk}/")["Location"] == "/account/password/"
    forced = client.get("/account/password/").content.decode()
    assert "one-time password" in forced
    assert client.get("/api/v1/products/").status_code == 403
    assert client.get("/static/css/app.css").status_code != 302
    assert change(client, password, NEW_PASSWORD) == ""
    assert client.get("/").status_code == 200
    assert not PasswordChangeRequired.objects.filter(user=nina).exists()
    assert browser("nina", NEW_PASSWORD).get("/").status_code == 200


def test_a_user_with_a_one_time_password_can_log_out_without_changing_it(
    world: dict,
) -> None:
    _status, html = create(
        logged_in(world["users"]["admin"]),
        world["product"].pk,
        username="nina",
        role="viewer",
        access="password",
    )
    password = re.search(r'id="one-time-password">([^<]+)<', html).group(1)  # type: ignore[union-attr]
    client = browser("nina", password)
    assert client.post("/logout/")["Location"] == "/login/"
    assert client.get("/account/password/")["Location"].startswith("/login/")
    # Still owed at the next login.
    assert browser("nina", password).get("/")["Location"] == "/account/password/"


def test_a_user_with_a_one_time_password_gets_no_api_token(world: dict) -> None:
    _status, html = create(
        logged_in(world["users"]["admin"]),
        world["product"].pk,
        username="nina",
        role="viewer",
        access="password",
    )
    password = re.search(r'id="one-time-password">([^<]+)<', html).group(1)  # type: ignore[union-attr]
    response = APIClient().post(
        "/api/v1/auth/token/",
        {"username": "nina", "password": password},
        format="json",
    )
    assert response.status_code == 403
    assert not AuthToken.objects.exists()


def test_an_invite_link_works_once_and_logs_the_user_in(world: dict) -> None:
    product = world["product"]
    status, html = create(
        logged_in(world["users"]["admin"]),
        product.pk,
        username="ivan",
        role="viewer",
        access="invite",
    )
    assert status == 200
    link = re.search(r'id="invite-link">([^<]+)<', html).group(1)  # type: ignore[union-attr]
    path = link.removeprefix("http://testserver")
    ivan = get_user_model().objects.get(username="ivan")
    assert not ivan.has_usable_password()
    invitee = Client()
    page = invitee.get(path, follow=True)
    assert "Choose a password for" in page.content.decode()
    form_url = page.redirect_chain[-1][0]
    response = invitee.post(
        form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert invitee.get(f"/products/{product.pk}/").status_code == 200
    assert AuditEntry.objects.filter(action="auth.invite_accept").count() == 1
    # Used: the link no longer opens the form.
    again = Client().get(path, follow=True).content.decode()
    assert "does not work" in again


def test_a_forged_invite_link_does_not_work(world: dict) -> None:
    make_user("ivan")
    html = Client().get("/account/invite/MQ/abc-123/", follow=True).content.decode()
    assert "does not work" in html


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"username": "victor"}, "username", "is taken"),
        ({"username": "VICTOR"}, "username", "is taken"),
        ({"username": "bad name!"}, "username", "valid username"),
        ({"username": "ok", "email": "not-an-email"}, "email", "valid email"),
        ({"username": "ok", "role": "service"}, "role", "Select a valid choice"),
        ({"username": "ok", "access": "magic"}, "access", "Select a valid choice"),
    ],
)
def test_creating_a_user_with_bad_input_names_the_field_and_changes_nothing(
    world: dict, fields: dict, field: str, says: str
) -> None:
    users_before = get_user_model().objects.count()
    data = {"role": "viewer", "access": "invite", **fields}
    status, html = create(
        logged_in(world["users"]["admin"]), world["product"].pk, **data
    )
    assert status == 200
    assert f'id="id_new-{field}-error"' in html and says in html, html[-3000:]
    assert get_user_model().objects.count() == users_before
    assert not AuditEntry.objects.filter(action="user.create").exists()


@pytest.mark.parametrize(
    ("username", "says"),
    [("ghost", "No user named “ghost”"), ("victor", "victor is already a member")],
)
def test_adding_an_existing_user_names_the_problem(
    world: dict, username: str, says: str
) -> None:
    client = logged_in(world["users"]["admin"])
    response = client.post(
        f"/products/{world['product'].pk}/", {"username": username, "role": "viewer"}
    )
    html = response.content.decode()
    assert 'id="id_username-error"' in html and says in html
    assert not AuditEntry.objects.filter(action="membership.add").exists()


@pytest.mark.parametrize(("who", "status"), [("operator", 403), ("outsider", 404)])
def test_only_product_admins_create_users(world: dict, who: str, status: int) -> None:
    code, _html = create(
        logged_in(world["users"][who]),
        world["product"].pk,
        username="sneaky",
        role="admin",
        access="password",
    )
    assert code == status
    assert not get_user_model().objects.filter(username="sneaky").exists()


def test_an_operator_sees_no_member_controls(world: dict) -> None:
    html = (
        logged_in(world["users"]["operator"])
        .get(f"/products/{world['product'].pk}/")
        .content.decode()
    )
    assert "Create user" not in html and "Add member" not in html
    assert 'name="new-username"' not in html and 'name="username"' not in html
