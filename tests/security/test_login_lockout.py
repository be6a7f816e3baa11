"""Login brute force: a username is locked from one address, nobody else is."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

LIMIT = 3


@pytest.fixture(autouse=True)
def _low_limit(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = LIMIT


def login(
    username: str, password: str, client: Client | None = None, **meta: Any
) -> Any:
    client = client or Client()
    return client.post("/login/", {"username": username, "password": password}, **meta)


def token(username: str, password: str, **meta: Any) -> Any:
    return APIClient().post(
        "/api/v1/auth/token/",
        {"username": username, "password": password},
        format="json",
        **meta,
    )


def test_failed_logins_lock_the_username_from_that_address() -> None:
    make_user("mallory-target")
    for _ in range(LIMIT - 1):
        assert login("mallory-target", "wrong").status_code == 200
    locked = login("mallory-target", "wrong")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    # Even the right password is refused while locked, with the same clear page.
    again = login("mallory-target", PASSWORD)
    assert again.status_code == 429
    assert "_auth_user_id" not in again.client.session


def test_the_lockout_page_is_not_a_server_error_and_has_the_policy() -> None:
    make_user("locked")
    for _ in range(LIMIT):
        response = login("locked", "wrong")
    assert response.status_code == 429
    assert "Content-Security-Policy" in response
    assert "try again later" in response.content.decode().lower()


def test_another_user_behind_the_same_address_can_still_log_in() -> None:
    make_user("victim")
    make_user("colleague")
    for _ in range(LIMIT):
        login("victim", "wrong")
    response = login("colleague", PASSWORD)
    assert response.status_code == 302
    assert response.client.session.get("_auth_user_id")


def test_behind_a_proxy_the_forwarded_address_is_what_gets_locked(
    settings: Any,
) -> None:
    settings.MQTTADMIN_TRUSTED_PROXY_COUNT = 1
    make_user("roamer")
    proxy: dict[str, Any] = {"REMOTE_ADDR": "10.0.0.2"}
    attacker = {**proxy, "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
    for _ in range(LIMIT):
        login("roamer", "wrong", **attacker)
    assert login("roamer", PASSWORD, **attacker).status_code == 429
    # Same proxy, same user, another client address: not locked.
    legit = {**proxy, "HTTP_X_FORWARDED_FOR": "198.51.100.4"}
    assert login("roamer", PASSWORD, **legit).status_code == 302
    # A forged left-most entry does not escape the lock: the proxy appends the
    # real address last, and only that one is trusted.
    forged = {**proxy, "HTTP_X_FORWARDED_FOR": "1.2.3.4, 203.0.113.7"}
    assert login("roamer", PASSWORD, **forged).status_code == 429


def test_without_a_trusted_proxy_forwarded_headers_are_ignored() -> None:
    make_user("direct")
    for n in range(LIMIT):
        login("direct", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    assert (
        login("direct", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.99").status_code == 429
    )


def test_a_successful_login_resets_the_count() -> None:
    make_user("forgetful")
    for _ in range(LIMIT - 1):
        login("forgetful", "wrong")
    assert login("forgetful", PASSWORD).status_code == 302
    for _ in range(LIMIT - 1):
        assert login("forgetful", "wrong").status_code == 200
    assert login("forgetful", PASSWORD).status_code == 302


def test_the_token_endpoint_counts_and_honours_the_lock() -> None:
    make_user("bot")
    for _ in range(LIMIT - 1):
        assert token("bot", "wrong").status_code == 400
    locked = token("bot", "wrong")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.json()["detail"]
    assert token("bot", PASSWORD).status_code == 429
    # Shared accounting: the page refuses too.
    assert login("bot", PASSWORD).status_code == 429
    # Other users from the same address still get tokens.
    make_user("other-bot")
    assert token("other-bot", PASSWORD).status_code == 200


def test_failures_on_the_page_lock_the_token_endpoint() -> None:
    make_user("mixed")
    for _ in range(LIMIT):
        login("mixed", "wrong")
    assert token("mixed", PASSWORD).status_code == 429
