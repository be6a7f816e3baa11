"""Journey: a superuser creates a product and manages its members: adds an existing
user, creates one with a one-time password (who must change it at first login) and
one with an invite link (followed in a fresh browser); an operator sees no member
controls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from mqttadmin.models import AuditEntry, Membership, Product
from tests.browser.conftest import log_in
from tests.browser.journey import Journey
from tests.factories import (
    NEW_PASSWORD,
    PASSWORD,
    make_product,
    make_superuser,
    make_user,
)

pytestmark = [pytest.mark.browser]


def create_user(page: Any, username: str, role: str, access: str) -> None:
    form = page.locator("#member-create")
    form.locator("#id_new-username").fill(username)
    form.locator("#id_new-email").fill(f"{username}@example.com")
    form.locator("#id_new-role").select_option(label=role)
    form.locator("#id_new-access").select_option(value=access)
    form.get_by_role("button", name="Create user").click()


def test_admin_creates_a_product_and_manages_its_members(
    journey: Any, other_browser: Callable[[str], Journey]
) -> None:
    make_superuser("root")
    make_user("olga")
    page = journey.page
    log_in(page, "root", PASSWORD)
    journey.step("logged in")

    page.get_by_role("link", name="Products").click()
    journey.step("products", title="Products")
    page.get_by_text("New product").click()
    page.locator("#id_name").fill("Greenhouse")
    page.get_by_role("button", name="Create product").click()
    journey.step("product created", title="Greenhouse")
    product = Product.objects.get(name="Greenhouse")

    # An existing user, by username: an unknown name first.
    add = page.locator("#member-add")
    add.locator("#id_username").fill("olgaa")
    add.get_by_role("button", name="Add member").click()
    journey.step("unknown username", title="Greenhouse")
    assert "No user named “olgaa”" in page.locator("#id_username-error").inner_text()
    add.locator("#id_username").fill("olga")
    add.locator("#id_role").select_option(label="Operator")
    add.get_by_role("button", name="Add member").click()
    journey.step("member added", title="Greenhouse")
    assert page.locator("#members tbody tr", has_text="olga").count() == 1
    assert Membership.objects.get(product=product, user__username="olga").role == (
        "operator"
    )

    # A new user with a one-time password: a taken username first.
    create_user(page, "olga", "Viewer", "password")
    journey.step("username taken", title="Greenhouse")
    assert "is taken" in page.locator("#id_new-username-error").inner_text()
    create_user(page, "nina", "Viewer", "password")
    journey.step("user created with a one-time password", title="Greenhouse")
    one_time = page.locator("#one-time-password").inner_text().strip()
    nina = get_user_model().objects.get(username="nina")
    assert not nina.is_staff and nina.email == "nina@example.com"

    first_login = other_browser("nina")
    log_in(first_login.page, "nina", one_time)
    first_login.step("forced to change", title="Change password")
    first_login.page.get_by_role("link", name="Products").click()
    first_login.step("still forced", title="Change password")
    first_login.page.locator("#id_old_password").fill(one_time)
    first_login.page.locator("#id_new_password1").fill(NEW_PASSWORD)
    first_login.page.locator("#id_new_password2").fill(NEW_PASSWORD)
    first_login.page.get_by_role("button", name="Change password").click()
    first_login.step("own password set", title="Account")
    first_login.page.get_by_role("link", name="Products").click()
    first_login.step("products as nina", title="Products")
    first_login.page.get_by_role("link", name="Greenhouse").click()
    first_login.step("product as nina", title="Greenhouse")
    assert first_login.page.locator("#member-add, #member-create").count() == 0
    first_login.assert_clean()

    # A new user by invite link, followed in a fresh browser.
    create_user(page, "ivan", "Admin", "invite")
    journey.step("user created with an invite link", title="Greenhouse")
    link = page.locator("#invite-link").inner_text().strip()
    invitee = other_browser("ivan")
    # Opened from the message the admin sent: the first page of this browser.
    invitee.page.goto(link)
    invitee.step("invite link", title="Accept invite")
    invitee.page.locator("#id_new_password1").fill(NEW_PASSWORD)
    invitee.page.locator("#id_new_password2").fill(NEW_PASSWORD)
    invitee.page.get_by_role("button", name="Set password and log in").click()
    invitee.step("invite accepted")
    assert "Welcome" in invitee.page.locator(".flash").inner_text()
    invitee.page.get_by_role("link", name="Products").click()
    invitee.step("products as ivan", title="Products")
    invitee.page.get_by_role("link", name="Greenhouse").click()
    invitee.step("product as ivan (admin)", title="Greenhouse")
    assert invitee.page.locator("#member-create").count() == 1
    # The link was for one use.
    again = other_browser("ivan-again")
    again.page.goto(link)
    again.step("invite link used", title="Accept invite")
    assert "does not work" in again.page.locator("main").inner_text()
    invitee.assert_clean()
    again.assert_clean()

    assert AuditEntry.objects.filter(action="user.create").count() == 2
    assert AuditEntry.objects.filter(action="membership.add").count() == 3
    assert AuditEntry.objects.filter(action="auth.invite_accept").count() == 1
    journey.assert_clean()


def test_an_operator_sees_no_member_controls(journey: Any) -> None:
    admin, operator = make_user("ada"), make_user("oscar")
    make_product("Plant", admin=admin, operator=operator)
    page = journey.page
    log_in(page, "oscar", PASSWORD)
    journey.step("logged in")
    page.get_by_role("link", name="Products").click()
    journey.step("products", title="Products")
    page.get_by_role("link", name="Plant").first.click()
    journey.step("product", title="Plant")
    main = page.locator("main")
    assert main.locator("form").count() == 0
    assert main.get_by_role("button").count() == 0
    assert "managed by the product's admins" in main.inner_text()
    journey.assert_clean()
