"""Journey: a viewer walks every page (overview, brokers, each broker tab,
devices, a device, alerts, products, a product, audit, account) and is offered
no write control; typing a write URL gets the styled 403 with the reason."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.models import alert_key
from alerts.services import alert_open
from brokers.models import Broker
from devices.models import Device
from mqttadmin.models import Membership
from mqttadmin.roles import Role
from runtime.manager import Runtime
from tests.browser.conftest import log_in
from tests.browser.test_live_pages import connected_broker, publish
from tests.factories import PASSWORD, make_broker, make_product, make_user

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]

# The only forms a viewer may post: logging out and switching product.
ALLOWED_POSTS = ("/logout/", "/products/switch/")


def write_controls(page: Any) -> list[str]:
    """Forms that post anywhere but ALLOWED_POSTS, and htmx writes, on the page."""
    found: list[str] = page.evaluate(
        """(allowed) => {
            const out = [];
            for (const form of document.querySelectorAll("form")) {
                const method = (form.getAttribute("method") || "get").toLowerCase();
                const action = new URL(form.action, location.href).pathname;
                const posts = method === "post" || form.hasAttribute("hx-post");
                if (posts && !allowed.includes(action))
                    out.push(form.outerHTML.slice(0, 120));
            }
            const writes = "[hx-post], [hx-put], [hx-patch], [hx-delete], [formaction]";
            for (const el of document.querySelectorAll(writes)) {
                if (!el.closest("form[action='/logout/'], form.product-switcher"))
                    out.push(el.outerHTML.slice(0, 120));
            }
            return out;
        }""",
        list(ALLOWED_POSTS),
    )
    return found


def visit(journey: Any, label: str, title: str | None = None) -> None:
    journey.step(label, title=title)
    assert write_controls(journey.page) == [], label


def test_viewer_walks_every_page_and_finds_no_write_control(
    journey: Any, mosquitto: Any, runtime: Runtime
) -> None:
    page = journey.page
    process = mosquitto()
    product = make_product("Demo", viewer=make_user("victor"))
    broker = connected_broker(product, process.port)
    device = Device.objects.create(
        product=product,
        broker=broker,
        device_id="boiler-1",
        name="Boiler",
        topic="plant/boiler",
    )
    publish(process.port, "plant/boiler/temperature", b'{"celsius": 71.5}')
    alert_open(
        product_id=product.pk,
        key=alert_key("broker", broker.pk, "disconnected"),
        subject=broker.name,
        message="Line 1 lost its connection.",
    )

    log_in(page, "victor", PASSWORD)
    visit(journey, "overview", "Overview")

    header = page.locator("header.topbar")
    header.get_by_role("link", name="Brokers", exact=True).click()
    visit(journey, "brokers", "Brokers")
    page.get_by_role("link", name=broker.name).first.click()
    visit(journey, "broker overview", broker.name)
    tabs = page.locator("nav.tabs a").all_inner_texts()
    assert len(tabs) >= 4, tabs
    for label in tabs[1:]:
        page.locator("nav.tabs").get_by_role("link", name=label, exact=True).click()
        page.wait_for_url(lambda url, label=label: "tab=" in url)
        visit(journey, f"broker tab {label}", broker.name)

    header.get_by_role("link", name="Devices", exact=True).click()
    visit(journey, "devices", "Devices")
    page.get_by_role("link", name=device.name).first.click()
    visit(journey, "device", device.name)

    header.get_by_role("link", name="Alerts", exact=True).click()
    visit(journey, "alerts", "Alerts")
    assert page.get_by_text("Line 1 lost its connection.").count() >= 1

    header.get_by_role("link", name="Products", exact=True).click()
    visit(journey, "products", "Products")
    page.get_by_role("link", name=product.name).first.click()
    visit(journey, "product", product.name)

    header.get_by_role("link", name="Audit", exact=True).click()
    visit(journey, "audit", "Audit")
    header.get_by_role("link", name="Account", exact=True).click()
    # The account page's forms are the viewer's own (sessions, tokens): allowed.
    journey.step("account")

    # A write URL typed by hand: the portal's 403 page with the reason.
    journey.expect_status(rf"/brokers/{broker.pk}/edit/$", 403)
    page.goto(f"/brokers/{broker.pk}/edit/")
    journey.step("typed edit url", title="Not allowed")
    assert page.locator("#error-reason").inner_text() == (
        "This needs the operator role in Demo."
    )
    page.get_by_role("button", name="Overview").or_(
        page.locator("main").get_by_role("link", name="Overview")
    ).first.click()
    visit(journey, "back to overview", "Overview")
    journey.assert_clean()


@pytest.mark.django_db(transaction=True)
def test_browsable_api_loads_its_styles_and_scripts_under_the_policy(
    browser_page: Any,
) -> None:
    """DRF's browsable pages are not portal pages (no header to check), but they
    must load without a refused style or script."""
    page = browser_page
    make_product("Demo", viewer=make_user("victor"))
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if message.type == "error" else None
        ),
    )
    log_in(page, "victor", PASSWORD)
    page.goto("/api/v1/brokers/")
    page.wait_for_load_state("load")
    assert page.locator(".response-info").count() == 1  # DRF's page, rendered
    assert refused == [] and page.errors == []


@pytest.mark.django_db(transaction=True)
def test_refused_htmx_request_shows_the_servers_reason(browser_page: Any) -> None:
    """An operator demoted while the page is open clicks Disconnect: htmx swaps
    nothing in for a 403, so the page says why at its top."""
    page = browser_page
    operator = make_user("oscar")
    product = make_product("Demo", operator=operator)
    broker = make_broker(product, name="Line 1")
    log_in(page, "oscar", PASSWORD)
    page.goto("/brokers/")
    button = page.locator(f"#broker-{broker.pk} button[value=disconnect]")
    button.wait_for()
    Membership.objects.filter(user=operator, product=product).update(role=Role.VIEWER)
    button.click()
    notice = page.locator("#request-error [role=alert]")
    notice.wait_for()
    assert notice.inner_text() == "This needs the operator role in Demo."
    assert Broker.objects.get(pk=broker.pk).enabled  # nothing changed
