"""Users see and end their sessions, and revoke their API token."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from mqttadmin.models import AuditEntry, UserSession
from mqttadmin.security import token_issue
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def browser(username: str, agent: str, address: str = "127.0.0.1") -> Client:
    client = Client(HTTP_USER_AGENT=agent, REMOTE_ADDR=address)
    response = client.post("/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302
    return client


def is_logged_in(client: Client) -> bool:
    return client.get("/account/security/").status_code == 200


def test_a_login_records_the_session_with_agent_and_address() -> None:
    user = make_user("sam")
    browser("sam", "Firefox/140", "192.0.2.10")
    row = UserSession.objects.get(user=user)
    assert row.user_agent == "Firefox/140"
    assert row.ip_address == "192.0.2.10"


def test_the_security_page_lists_my_sessions_only() -> None:
    make_user("sam")
    make_user("eve")
    laptop = browser("sam", "Laptop-Firefox")
    browser("sam", "Phone-Safari")
    browser("eve", "Eve-Browser")
    html = laptop.get("/account/security/").content.decode()
    assert "Laptop-Firefox" in html and "Phone-Safari" in html
    assert "Eve-Browser" not in html
    assert "this browser" in html


def test_ending_a_session_logs_that_browser_out() -> None:
    user = make_user("sam")
    laptop = browser("sam", "Laptop")
    phone = browser("sam", "Phone")
    row = UserSession.objects.get(user=user, user_agent="Phone")
    response = laptop.post("/account/security/", {"action": "end", "session": row.pk})
    assert response.status_code == 302
    assert not is_logged_in(phone)
    assert is_logged_in(laptop)
    entry = AuditEntry.objects.get(action="auth.session_end")
    assert entry.actor == user


def test_i_cannot_end_someone_elses_session() -> None:
    make_user("sam")
    eve = make_user("eve")
    laptop = browser("sam", "Laptop")
    eves = browser("eve", "Eve")
    row = UserSession.objects.get(user=eve)
    response = laptop.post("/account/security/", {"action": "end", "session": row.pk})
    assert response.status_code == 404
    assert is_logged_in(eves)


def test_end_all_other_sessions_asks_first_keeps_this_one_and_audits_once() -> None:
    make_user("sam")
    laptop = browser("sam", "Laptop")
    others = [browser("sam", f"Other {n}") for n in range(3)]
    question = laptop.get("/account/sessions/end-others/").content.decode()
    assert "End 3 sessions" in question and "Other 0" in question
    assert all(is_logged_in(c) for c in others)  # asking ended nothing
    response = laptop.post("/account/sessions/end-others/")
    assert response.status_code == 302
    assert is_logged_in(laptop)
    assert not any(is_logged_in(c) for c in others)
    entry = AuditEntry.objects.get(action="auth.sessions_end_others")
    assert entry.changes == {"sessions": [3, 0]}
    assert not AuditEntry.objects.filter(action="auth.session_end").exists()


def test_an_unknown_action_is_a_400_that_changes_nothing() -> None:
    make_user("sam")
    laptop = browser("sam", "Laptop")
    response = laptop.post("/account/security/", {"action": "explode"})
    assert response.status_code == 400
    assert b"action" in response.content
    assert is_logged_in(laptop)


def test_logging_out_forgets_the_session() -> None:
    user = make_user("sam")
    laptop = browser("sam", "Laptop")
    laptop.post("/logout/")
    assert not UserSession.objects.filter(user=user).exists()


def test_the_api_lists_and_ends_sessions() -> None:
    user = make_user("sam")
    phone = browser("sam", "Phone")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=user)}")
    listed = api.get("/api/v1/auth/sessions/").json()
    assert [s["user_agent"] for s in listed] == ["Phone"]
    assert listed[0]["current"] is False
    assert api.delete(f"/api/v1/auth/sessions/{listed[0]['id']}/").status_code == 204
    assert not is_logged_in(phone)
    assert api.get("/api/v1/auth/sessions/").json() == []


def test_the_api_ends_all_sessions_but_the_calling_one() -> None:
    make_user("sam")
    laptop = browser("sam", "Laptop")
    phone = browser("sam", "Phone")
    # A session-authenticated API call keeps its own session.
    response = laptop.delete("/api/v1/auth/sessions/")
    assert response.status_code == 200
    assert response.json() == {"ended": 1}
    assert is_logged_in(laptop) and not is_logged_in(phone)
    assert AuditEntry.objects.filter(action__startswith="auth.session").count() == 1


def test_sessions_of_another_user_are_404_in_the_api() -> None:
    make_user("sam")
    eve = make_user("eve")
    browser("eve", "Eve")
    row = UserSession.objects.get(user=eve)
    api = APIClient()
    api.force_authenticate(make_user("mallory"))
    assert api.delete(f"/api/v1/auth/sessions/{row.pk}/").status_code == 404
    assert UserSession.objects.filter(pk=row.pk).exists()


def test_a_revoked_token_stops_working_and_is_audited() -> None:
    user = make_user("bot")
    issued = APIClient().post(
        "/api/v1/auth/token/", {"username": "bot", "password": PASSWORD}, format="json"
    )
    key = issued.json()["token"]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/products/").status_code == 200
    assert api.delete("/api/v1/auth/token/").status_code == 204
    assert api.get("/api/v1/products/").status_code == 401
    assert not AuthToken.objects.filter(user=user).exists()
    assert AuditEntry.objects.filter(action="auth.token_revoke", actor=user).exists()


def test_revoking_needs_authentication() -> None:
    assert APIClient().delete("/api/v1/auth/token/").status_code == 401


def test_the_security_page_revokes_the_token() -> None:
    user = make_user("sam")
    token_issue(user=user)
    laptop = browser("sam", "Laptop")
    assert b"Revoke API tokens" in laptop.get("/account/security/").content
    laptop.post("/account/security/", {"action": "revoke-token"})
    assert not AuthToken.objects.filter(user=user).exists()
    assert b"You have no API token" in laptop.get("/account/security/").content


def test_last_seen_is_kept_without_a_write_per_request(
    django_assert_max_num_queries: Any,
) -> None:
    make_user("sam")
    laptop = browser("sam", "Laptop")
    laptop.get("/account/security/")
    with django_assert_max_num_queries(20) as queries:
        laptop.get("/account/security/")
    assert not any(
        "UPDATE" in q["sql"] and "usersession" in q["sql"].lower()
        for q in queries.captured_queries
    )
