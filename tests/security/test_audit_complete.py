"""Every change through the API or a page form leaves an audit entry.

API: each write route and method runs once as a superuser with a well-formed body
on a fresh seeded world; if any row changed, an AuditEntry must have been added.
Pages: every POST form the pages render is submitted with its own values.
"""

from __future__ import annotations

import html.parser
import json
from typing import Any

import pytest

from mqttadmin.models import AuditEntry
from mqttadmin.security import token_issue
from tests.clients import as_user, logged_in
from tests.security.routes import (
    CREATE_BODIES,
    CREATE_QUERY_PARAMS,
    WRITE_METHODS,
    all_routes,
    is_page,
    kwargs_for,
)
from tests.security.test_tenant_matrix import changed, snapshot

pytestmark = pytest.mark.django_db

# Writes that are not changes to audit: logging in (token), one's own sessions
# (audited, but in tables the snapshot leaves out), connection tests and dry runs,
# and status reports a service sends about itself.
NOT_CHANGES = {
    ("api-token", "post"),
    ("api-sessions", "delete"),
    ("api-session", "delete"),
    ("mqtt-config-test", "post"),
    ("mqtt-config-status", "post"),
    ("broker-test", "post"),
    ("broker-test-saved", "post"),
    ("subscription-test", "post"),
}
# Needs a broker run with the Dynamic Security plugin; its audit entry
# (mqtt_user.update) is checked in tests/brokers/test_clients_log.py.
COVERED_ELSEWHERE = {("broker-client-disable", "post")}
# Routes that act on the MQTT broker itself: the seeded broker is pointed at a
# real Mosquitto first.
NEEDS_BROKER = {"broker-publish", "device-command", "broker-retained"}
# Bodies for action routes: (route name, method) -> body from the tenant.
ACTION_BODIES: dict[tuple[str, str], Any] = {
    ("broker-control", "post"): lambda t: {"action": "disconnect"},
    ("broker-publish", "post"): lambda t: {"topic": "qxa/x", "payload": "1"},
    ("device-command", "post"): lambda t: {"payload": "on"},
    ("product-members", "post"): lambda t: {"username": "olga", "role": "viewer"},
    ("product-member", "patch"): lambda t: {"role": "operator"},
    ("broker-topic-detail", "patch"): lambda t: {"description": "boiler", "unit": "C"},
    ("mqtt-config", "put"): lambda t: {
        "broker": {"host": "127.0.0.1", "port": 1883},
        "topics": {"prefix": "qxa/"},
    },
    ("mqtt-config-subscription", "put"): lambda t: {
        "name": "renamed",
        "topic_filter": "qxa/renamed/#",
    },
    ("broker-mqtt-users", "post"): lambda t: {
        "username": "qxa-new",
        "password": "A-long-enough-password-1",
    },
    ("broker-mqtt-roles", "post"): lambda t: {"name": "qxa-newrole", "rules": []},
    ("broker-management", "put"): lambda t: {"management": "dynsec"},
    ("broker-management", "patch"): lambda t: {"management_username": "root"},
    ("broker-lifecycle", "post"): lambda t: {"action": "restart"},
    ("product-list", "post"): lambda t: {"name": "New", "slug": "new-product"},
}
QUERY_PARAMS = {**CREATE_QUERY_PARAMS, "broker-retained": lambda t: "?topic=qxa/temp"}
TWEAKS: dict[str, Any] = {
    "name": "renamed",
    "description": "changed",
    "threshold": 42,
}
# The seeded broker is managed by files, which refuse a client id pin: an MQTT
# user's change is to its enabled flag.
ROUTE_TWEAKS: dict[str, dict[str, Any]] = {"broker-mqtt-user": {"enabled": False}}
# Bookkeeping a save updates even when the user changed nothing: saving a form
# unchanged is not a change to audit (a role's rules are rewritten as new rows).
BOOKKEEPING = {"id", "last_login", "updated_at", "last_sync_at", "last_sync_state"}


def api_writes() -> list[tuple[str, str, str]]:
    found = []
    for route in all_routes():
        if not route.is_api:
            continue
        for method in route.methods:
            if (
                method in WRITE_METHODS
                and (route.name, method) not in NOT_CHANGES | COVERED_ELSEWHERE
            ):
                found.append((route.name, route.path, method))
    return found


def body_for(client: Any, route: Any, method: str, url: str, tenant: Any) -> Any:
    if (route.name, method) in ACTION_BODIES:
        return ACTION_BODIES[(route.name, method)](tenant)
    if method == "post" and route.name in CREATE_BODIES:
        return CREATE_BODIES[route.name](tenant)
    if method in ("put", "patch"):
        current = client.get(url)
        data = current.json() if current.status_code == 200 else {}
        for key, value in {**TWEAKS, **ROUTE_TWEAKS.get(route.name, {})}.items():
            if key in data:
                data[key] = value
        return data
    return {}


@pytest.mark.parametrize(("name", "path", "method"), api_writes())
def test_every_api_change_is_audited(
    seeded: dict, request: Any, name: str, path: str, method: str
) -> None:
    route = next(r for r in all_routes() if r.name == name and r.path == path)
    mine = seeded["mine"]
    superuser = seeded["users"]["superuser"]
    client = as_user(superuser)
    if name in NEEDS_BROKER:
        broker = mine["broker"]
        broker.port = request.getfixturevalue("mosquitto")().port
        broker.save(update_fields=["port"])
    if name == "api-token":
        token_issue(user=superuser)
    url = route.url(kwargs_for(route, mine, seeded["users"]["viewer"]))
    url += QUERY_PARAMS[name](mine) if name in QUERY_PARAMS else ""
    body = body_for(client, route, method, url, mine)
    entries = AuditEntry.objects.count()
    if name == "device-import":
        response = client.post(
            url,
            "device_id,name,type,topic\nqxa-new,New,,qxa/new\n",
            content_type="text/csv",
        )
    else:
        response = getattr(client, method)(url, body, format="json")
    assert 200 <= response.status_code < 300, (
        f"{method.upper()} {url} was not carried out ({response.status_code} "
        f"{response.content[:300]!r}): fix the body so the change is exercised"
    )
    assert AuditEntry.objects.count() > entries, (
        f"{method.upper()} {url} ({response.status_code}) left no audit entry"
    )


class _Forms(html.parser.HTMLParser):
    """POST forms of a page: their action and the values they would submit."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and (a.get("method") or "").lower() == "post":
            self.forms.append({"action": a.get("action") or "", "data": {}})
        elif not self.forms:
            return
        elif tag == "input" and a.get("name") and a.get("type") != "submit":
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.forms[-1]["data"].setdefault(a["name"], a.get("value") or "")
        elif tag in ("select", "textarea") and a.get("name"):
            self._select = a["name"]
            self.forms[-1]["data"].setdefault(a["name"], "")
        elif tag == "option" and self._select and "selected" in a:
            self.forms[-1]["data"][self._select] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("select", "textarea"):
            self._select = None


def page_forms(client: Any, url: str) -> list[dict[str, Any]]:
    response = client.get(url)
    if response.status_code != 200:
        return []
    parser = _Forms()
    parser.feed(response.content.decode())
    for form in parser.forms:
        form["action"] = form["action"] or url
        form["page"] = url
    return parser.forms


# Page forms that are not changes: logging out, choosing a product for the
# session, one's own password, sessions and token (audited, covered by their own
# tests: tests/security/test_sessions_and_tokens.py, tests/mqttadmin/test_accounts.py).
PAGE_NOT_CHANGES = ("/logout/", "/products/switch/", "/account/")
TABS = ("", "?tab=settings", "?tab=subscriptions", "?tab=acl", "?tab=publish")


def test_every_page_form_that_changes_data_is_audited(seeded: dict) -> None:
    mine = seeded["mine"]
    client = logged_in(seeded["users"]["superuser"], mine.product)
    forms: dict[str, dict[str, Any]] = {}
    for route in all_routes():
        if not is_page(route) or route.name == "logout" or route.is_api:
            continue
        url = route.url(kwargs_for(route, mine, seeded["users"]["viewer"]))
        for tab in TABS if route.kwargs else ("",):
            for form in page_forms(client, url + tab):
                key = form["action"] + json.dumps(
                    {
                        k: v
                        for k, v in form["data"].items()
                        if k != "csrfmiddlewaretoken"
                    },
                    sort_keys=True,
                )
                forms.setdefault(key, form)
    # Deletions last, so the other forms still find their objects.
    ordered = sorted(forms.values(), key=lambda f: "delete" in f["action"])
    unaudited, exercised = [], []
    for form in ordered:
        if form["action"].startswith(PAGE_NOT_CHANGES):
            continue
        entries = AuditEntry.objects.count()
        before = snapshot(BOOKKEEPING)
        response = client.post(form["action"], form["data"])
        assert response.status_code < 500, (form, response.content[:500])
        touched = [
            t
            for t in changed(before, snapshot(BOOKKEEPING))
            if t != "mqttadmin.auditentry"
        ]
        if touched:
            exercised.append(form["action"])
            if AuditEntry.objects.count() == entries:
                after = snapshot(BOOKKEEPING)
                detail = {t: (before[t], after[t]) for t in touched}
                unaudited.append(
                    f"{form['action']} (from {form['page']}): {touched} {detail}"
                )
    assert not unaudited, "page forms that changed data without an audit entry:\n" + (
        "\n".join(unaudited)
    )
    # Not vacuous: the forms really changed things.
    assert len(exercised) >= 10, exercised
