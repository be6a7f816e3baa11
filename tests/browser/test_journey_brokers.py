"""Journey: an operator adds a broker, tests it (nothing listening, a wrong
password, a port out of range, the right password), saves it, and publishes from
the Activity tab to see the message in the live feed."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from brokers.models import Broker, BrokerStatus
from runtime.manager import Runtime
from tests.brokers.conftest import (  # noqa: F401 (fixture)
    MQTT_PASSWORD,
    MQTT_USER,
    password_broker,
)
from tests.browser.conftest import UI_TIMEOUT_MS, log_in, wait_until
from tests.factories import PASSWORD, make_product, make_user
from tests.services import MosquittoProcess, free_port

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]


def test_operator_adds_tests_and_saves_a_broker_then_publishes(
    journey: Any,
    password_broker: MosquittoProcess,  # noqa: F811
    runtime: Runtime,
) -> None:
    page = journey.page
    make_product("Plant", operator=make_user("oscar"))
    log_in(page, "oscar", PASSWORD)
    journey.step("logged in", title="Overview")

    page.get_by_role("link", name="Brokers", exact=True).first.click()
    journey.step("brokers", title="Brokers")
    page.get_by_role("button", name="New broker").click()
    journey.step("new broker form", title="New broker")

    result = page.locator("#test-result")
    test_button = page.get_by_role("button", name="Test connection")

    # Nothing listens on this port: the answer says so, next to the button.
    page.fill("input[name=name]", "Line 1")
    page.fill("input[name=host]", "127.0.0.1")
    page.fill("input[name=port]", str(free_port()))
    test_button.click()
    result.locator(".test-result.failed").wait_for()
    assert "refused" in result.inner_text().lower()
    assert result.is_visible() and _in_view(page, "#test-result")
    journey.step("test refused", title="New broker")

    # A port out of range: named by its label, next to the field too.
    page.fill("input[name=port]", "99999")
    test_button.click()
    result.get_by_text("Fix these fields before testing").wait_for()
    assert "Port: Ensure this value is less than or equal to 65535." in (
        result.inner_text()
    )
    port_error = page.locator("#id_port_feedback .error")
    assert "65535" in port_error.inner_text()
    expect(page.locator("#id_port")).to_have_attribute("aria-invalid", "true")
    journey.step("test port out of range", title="New broker")

    # The broker that asks for a password, with a wrong one.
    page.fill("input[name=port]", str(password_broker.port))
    page.fill("input[name=username]", MQTT_USER)
    page.fill("input[name=password]", "not-the-password")
    test_button.click()
    result.get_by_text("Bad username or password").wait_for()
    # The port's error from the Test before is gone.
    assert page.locator("#id_port_feedback .error").count() == 0
    expect(page.locator("#id_port")).not_to_have_attribute("aria-invalid", "true")
    journey.step("test bad password", title="New broker")

    page.fill("input[name=password]", MQTT_PASSWORD)
    test_button.click()
    result.get_by_text("Connection works.").wait_for()
    journey.step("test ok", title="New broker")

    page.get_by_role("button", name="Create broker").click()
    page.wait_for_url("**/brokers/*/")
    journey.step("broker saved", title="Line 1")
    assert "Broker Line 1 created." in page.locator(".flash").inner_text()
    broker = Broker.objects.get(name="Line 1")
    wait_until(
        lambda: BrokerStatus.objects.filter(
            broker=broker, state="connected", subscribed_topics_count=1
        ).exists(),
        15,
        "the runtime to connect the new broker",
    )
    page.locator("#broker-status .dot.connected").wait_for()
    journey.step("broker connected", title="Line 1")

    page.locator("nav.tabs").get_by_role("link", name="Activity").click()
    journey.step("activity tab", title="Line 1")
    page.locator("#live-state", has_text="Live").wait_for()
    page.get_by_text("Quick publish").click()
    form = page.locator("#live-publish")
    form.locator("input[name=topic]").fill("plant/boiler/temperature")
    form.locator("input[name=payload]").fill('{"celsius": 71.5}')
    form.get_by_role("button", name="Publish").click()
    page.locator("#live-publish-result", has_text="Published").wait_for()
    row = page.locator("#live-rows li", has_text="plant/boiler/temperature")
    row.first.wait_for(timeout=UI_TIMEOUT_MS)
    assert "71.5" in row.first.inner_text()
    journey.step("published and seen live", title="Line 1")
    journey.assert_clean()


def _in_view(page: Any, selector: str) -> bool:
    """The element is inside the window as it is scrolled now."""
    return bool(
        page.evaluate(
            """(selector) => {
                const box = document.querySelector(selector).getBoundingClientRect();
                return box.top >= 0 && box.bottom <= window.innerHeight;
            }""",
            selector,
        )
    )
