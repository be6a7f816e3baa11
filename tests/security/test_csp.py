"""Content Security Policy: on every page, and no inline script anywhere to need it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.clients import logged_in
from tests.security.routes import all_routes, is_page, kwargs_for

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
# <script> without src= (an inline body), event handlers, style attributes/elements.
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
EVENT_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)
STYLE_ATTRIBUTE = re.compile(r"<[a-z][^>]*\sstyle\s*=|<style[\s>]", re.I)


def directives(header: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        found[name] = set(values)
    return found


def test_the_policy_allows_only_our_own_files(client: Any) -> None:
    policy = directives(client.get("/login/")["Content-Security-Policy"])
    assert policy["default-src"] == {"'self'"}
    assert policy["script-src"] == {"'self'"}
    assert policy["style-src"] == {"'self'"}
    assert policy["img-src"] == {"'self'", "data:"}
    assert policy["connect-src"] == {"'self'", "ws:", "wss:"}
    assert policy["frame-ancestors"] == {"'none'"}
    assert policy["form-action"] == {"'self'"}


def test_templates_have_no_inline_scripts_handlers_or_styles() -> None:
    offenders = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        text = path.read_text()
        for rule in (INLINE_SCRIPT, EVENT_HANDLER, STYLE_ATTRIBUTE):
            for match in rule.finditer(text):
                offenders.append(f"{path.relative_to(ROOT)}: {match.group(0)[:80]}")
    assert not offenders, "\n".join(offenders)


def test_htmx_indicator_styles_come_from_the_stylesheet() -> None:
    base = (ROOT / "templates" / "base.html").read_text()
    assert '"includeIndicatorStyles": false' in base
    assert ".htmx-indicator" in (ROOT / "static" / "css" / "app.css").read_text()


def test_every_page_sends_the_policy_and_no_inline_script(seeded: dict) -> None:
    admin = seeded["users"]["admin"]
    client = logged_in(admin, seeded["mine"].product)
    fetched = []
    for route in all_routes():
        if not is_page(route) or "get" not in route.methods:
            continue
        if route.name in {"logout"}:
            continue
        url = route.url(kwargs_for(route, seeded["mine"], seeded["users"]["viewer"]))
        response = client.get(url)
        if response.status_code in (302, 405):
            continue
        assert response.status_code < 500, f"{url}: {response.status_code}"
        assert "Content-Security-Policy" in response, url
        if response.get("Content-Type", "").startswith("text/html"):
            body = response.content.decode()
            for rule in (INLINE_SCRIPT, EVENT_HANDLER, STYLE_ATTRIBUTE):
                match = rule.search(body)
                assert match is None, f"{url}: {match.group(0)[:120]}"
        fetched.append(url)
    # The main pages were really rendered, not skipped.
    assert {"/", "/brokers/", "/devices/", "/audit/", "/account/security/"} <= set(
        fetched
    )
    assert f"/brokers/{seeded['mine']['broker'].pk}/" in fetched


def test_the_api_docs_load_their_init_script_as_a_file(client: Any) -> None:
    html = client.get("/api/docs/").content.decode()
    assert "?script" in html and not INLINE_SCRIPT.search(html)
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert "javascript" in script["Content-Type"]
    assert b"SwaggerUIBundle" in script.content


def test_the_browsable_api_gets_its_inline_styles_and_the_portal_does_not(
    seeded: dict,
) -> None:
    client = logged_in(seeded["users"]["admin"], seeded["mine"].product)
    api_page = client.get("/api/v1/brokers/", HTTP_ACCEPT="text/html")
    assert api_page.status_code == 200
    assert api_page["Content-Type"].startswith("text/html")
    assert 'style="' in api_page.content.decode()  # DRF's template carries them
    policy = directives(api_page["Content-Security-Policy"])
    assert "'unsafe-inline'" in policy["style-src"]
    assert policy["script-src"] == {"'self'"}
    # JSON answers and the portal's pages keep the strict policy.
    as_json = client.get("/api/v1/brokers/", HTTP_ACCEPT="application/json")
    assert directives(as_json["Content-Security-Policy"])["style-src"] == {"'self'"}
    page = client.get("/brokers/")
    assert directives(page["Content-Security-Policy"])["style-src"] == {"'self'"}
