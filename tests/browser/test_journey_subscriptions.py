"""Journey: an operator creates, edits and dry-runs a subscription whose webhook
sends a secret and a plain header to a real HTTP server, through a bad filter fixed
and a URL change that drops the secret.

Every save lands on the whole broker page (header, nav, tabs, the "saved" message),
never on a bare table swapped into <body>.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from brokers.models import Subscription
from runtime.manager import Runtime
from tests.browser.conftest import log_in, wait_until
from tests.browser.test_live_pages import connected_broker, publish
from tests.factories import PASSWORD, make_product, make_user

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]

SECRET = "Bearer journey-secret-0042"
NEW_SECRET = "Bearer journey-secret-0043"


def _header_row(page: Any, n: int) -> tuple[Any, Any, Any]:
    """The name, value and Secret box of the first action's header row n (0-based)."""
    prefix = f"actions-0-header_{n}"
    return (
        page.locator(f"input[name='{prefix}_name']"),
        page.locator(f"input[name='{prefix}_value']"),
        page.locator(f"input[name='{prefix}_secret']"),
    )


def _saved_tab(journey: Any, label: str, name: str) -> None:
    """After Save: the whole broker page on its Subscriptions tab, with the message."""
    page = journey.page
    page.wait_for_url("**/?tab=subscriptions")
    page.get_by_text(f"Subscription {name} saved.").wait_for()
    journey.step(label, title="Line 1")
    assert page.locator("nav.tabs a[aria-current='page']").inner_text() == (
        "Subscriptions"
    )
    assert page.locator("main h1").inner_text() == "Line 1"
    assert page.locator("body > #subscription-table").count() == 0


def test_operator_creates_edits_and_dry_runs_a_webhook_subscription(
    journey: Any, mosquitto: Any, runtime: Runtime, http_sink: Any
) -> None:
    process = mosquitto()
    operator = make_user("oscar")
    product = make_product("Plant", operator=operator)
    connected_broker(product, process.port)
    page = journey.page
    log_in(page, "oscar", PASSWORD)
    journey.step("logged in")

    page.locator("header.topbar").get_by_role("link", name="Brokers").click()
    journey.step("brokers", title="Brokers")
    page.locator("main").get_by_role("link", name="Line 1").first.click()
    journey.step("broker", title="Line 1")
    page.locator("nav.tabs").get_by_role("link", name="Subscriptions").click()
    journey.step("subscriptions tab", title="Line 1")
    page.get_by_role("button", name="New subscription").click()
    journey.step("new subscription", title="Line 1")
    # The template help shows its examples (blocktrans once ate them).
    assert "{{ payload.temp }}" in page.locator("main").inner_text()

    page.locator("#id_name").fill("Boiler hook")
    page.locator("#id_topic_filter").fill("plant/#/temp")  # '#' must be last
    page.get_by_role("button", name="Add action").click()
    page.locator("#action-0").wait_for()
    journey.step("action added", title="Line 1")
    page.locator("#id_actions-0-url").fill(f"{http_sink.url}/hook")
    name, value, secret = _header_row(page, 0)
    name.fill("Authorization")
    value.fill(SECRET)
    assert secret.is_checked()  # a secret by its name, until the user says else
    name, value, secret = _header_row(page, 1)
    name.fill("X-Site")
    value.fill("plant-1")
    assert not secret.is_checked()
    page.get_by_role("button", name="Save", exact=True).click()
    error = page.locator("#id_topic_filter-error")
    error.wait_for()
    journey.step("bad filter refused", title="Line 1")
    assert "#" in error.inner_text()
    assert not Subscription.objects.filter(name="Boiler hook").exists()
    # The plain value came back; the secret is never written into the page.
    assert _header_row(page, 1)[1].input_value() == "plant-1"
    assert _header_row(page, 0)[1].input_value() == ""
    assert SECRET not in page.content()

    page.locator("#id_topic_filter").fill("plant/+/temp")
    _header_row(page, 0)[1].fill(SECRET)
    page.get_by_role("button", name="Save", exact=True).click()
    _saved_tab(journey, "created", "Boiler hook")
    saved = Subscription.objects.get(name="Boiler hook")
    assert saved.actions[0]["secret_headers"] == ["Authorization"]

    # Back: htmx keeps no snapshots (base.html), so it asks the server for the
    # page (HX-History-Restore-Request) and gets it whole, not a fragment.
    with page.expect_request(
        lambda r: (
            "/subscriptions/new/" in r.url
            and r.headers.get("hx-history-restore-request") == "true"
        )
    ):
        page.go_back()
    page.locator("#subscription-editor").wait_for()
    journey.step("back to the editor", title="Line 1")
    assert page.locator("nav.tabs").count() == 1
    page.get_by_role("link", name="Back to subscriptions").click()
    page.locator("#subscription-table").wait_for()
    journey.step("subscriptions again", title="Line 1")

    # Edit: the secret shows as saved, the plain header as it is.
    row = page.locator("tr", has_text="Boiler hook")
    row.get_by_role("button", name="Edit").click()
    journey.step("edit", title="Line 1")
    name, value, secret = _header_row(page, 0)
    assert value.input_value() == "" and secret.is_checked()
    assert value.get_attribute("placeholder") == "saved: leave empty to keep"
    assert _header_row(page, 1)[1].input_value() == "plant-1"
    page.locator("#id_description").fill("Boiler temperatures to the plant hook")
    page.get_by_role("button", name="Save", exact=True).click()
    _saved_tab(journey, "edited", "Boiler hook")

    # Dry run: rendered, not sent.
    page.locator("tr", has_text="Boiler hook").get_by_role(
        "button", name="Edit"
    ).click()
    journey.step("edit again", title="Line 1")
    page.locator("section.dry-run").get_by_label("Topic").fill("plant/boiler/temp")
    page.locator("section.dry-run").get_by_label("Payload").fill('{"temp": 71.5}')
    page.get_by_role("button", name="Dry run").click()
    page.get_by_text("The topic matches the filter.").wait_for()
    journey.step("dry run", title="Line 1")
    assert page.locator("#dry-run-title").count() == 1
    assert http_sink.requests == []

    # A real message: the hook gets both headers, the secret in clear.
    publish(process.port, "plant/boiler/temp", b'{"temp": 72}')
    wait_until(lambda: http_sink.requests, 15, "the webhook to be called")
    request = http_sink.requests[-1]
    assert request.path == "/hook"
    assert request.headers["Authorization"] == SECRET
    assert request.headers["X-Site"] == "plant-1"
    assert json.loads(request.body) == {"temp": 72}

    # Another URL drops the secret (and says so); the plain header moves along.
    page.locator("#id_actions-0-url").fill(f"{http_sink.url}/other")
    page.get_by_role("button", name="Save", exact=True).click()
    problem = page.locator("#id_actions-0-headers-error")
    problem.wait_for()
    journey.step("secret dropped on a new url", title="Line 1")
    assert problem.inner_text().count("The URL changed") == 1
    assert _header_row(page, 0)[1].get_attribute("placeholder") is None
    assert _header_row(page, 1)[1].input_value() == "plant-1"
    _header_row(page, 0)[1].fill(NEW_SECRET)
    page.get_by_role("button", name="Save", exact=True).click()
    _saved_tab(journey, "saved with the new url", "Boiler hook")
    action = Subscription.objects.get(name="Boiler hook").actions[0]
    assert action["url"].endswith("/other")
    assert action["headers"] == {"Authorization": NEW_SECRET, "X-Site": "plant-1"}
    journey.assert_clean()
