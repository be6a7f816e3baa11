"""Journey: a user changes their password on the Account page (a wrong current
password first), which logs out their other browser, and ends their other sessions
after being asked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mqttadmin.models import AuditEntry
from tests.browser.conftest import log_in
from tests.browser.journey import Journey
from tests.factories import NEW_PASSWORD, PASSWORD, make_user

pytestmark = [pytest.mark.browser]


def is_logged_in(walk: Journey) -> bool:
    walk.page.goto("/account/security/")
    return "/login/" not in walk.page.url


def test_user_changes_password_and_other_browsers_are_logged_out(
    journey: Any, other_browser: Callable[[str], Journey]
) -> None:
    make_user("sam")
    phone = other_browser("phone")
    log_in(phone.page, "sam", PASSWORD)
    page = journey.page
    log_in(page, "sam", PASSWORD)
    journey.step("logged in")

    page.get_by_role("link", name="Account").click()
    journey.step("account", title="Account")
    page.get_by_role("button", name="Change password").click()
    journey.step("password form", title="Change password")

    page.locator("#id_old_password").fill("not-my-password")
    page.locator("#id_new_password1").fill(NEW_PASSWORD)
    page.locator("#id_new_password2").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    journey.step("wrong current password", title="Change password")
    error = page.locator("#id_old_password-error")
    assert "old password was entered incorrectly" in error.inner_text()
    assert is_logged_in(phone), "a refused change ended the other session"

    page.locator("#id_old_password").fill(PASSWORD)
    page.locator("#id_new_password1").fill(NEW_PASSWORD)
    page.locator("#id_new_password2").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    journey.step("password changed", title="Account")
    assert "Your password was changed" in page.locator(".flash").inner_text()
    assert not is_logged_in(phone), "the other browser is still logged in"
    assert AuditEntry.objects.filter(action="auth.password_change").count() == 1

    page.get_by_role("button", name="Log out sam").click()
    journey.step("logged out")
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    journey.step("old password refused", title="Log in")
    assert page.locator("p.error").count() == 1
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url)
    journey.step("logged in with the new password")
    journey.assert_clean()
    phone.assert_clean()


def test_user_ends_other_sessions_after_confirming(
    journey: Any, other_browser: Callable[[str], Journey]
) -> None:
    make_user("sam")
    laptop, tablet = other_browser("laptop"), other_browser("tablet")
    log_in(laptop.page, "sam", PASSWORD)
    log_in(tablet.page, "sam", PASSWORD)
    page = journey.page
    log_in(page, "sam", PASSWORD)
    journey.step("logged in")
    page.get_by_role("link", name="Account").click()
    journey.step("account", title="Account")
    assert page.locator("tbody tr").count() == 3

    page.get_by_role("button", name="End all other sessions").click()
    journey.step("asked first", title="End other sessions")
    assert is_logged_in(laptop) and is_logged_in(tablet), "asking ended sessions"
    page.get_by_role("link", name="Cancel").click()
    journey.step("cancelled", title="Account")
    assert is_logged_in(laptop) and is_logged_in(tablet)

    page.get_by_role("button", name="End all other sessions").click()
    journey.step("asked again", title="End other sessions")
    page.get_by_role("button", name="End 2 sessions").click()
    journey.step("ended", title="Account")
    assert "Other sessions ended: 2" in page.locator(".flash").inner_text()
    assert page.locator("tbody tr").count() == 1
    assert not is_logged_in(laptop) and not is_logged_in(tablet)
    entries = AuditEntry.objects.filter(action__startswith="auth.session")
    assert [e.action for e in entries] == ["auth.sessions_end_others"]
    journey.assert_clean()
