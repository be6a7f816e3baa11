"""The live pages in a real browser: the Activity tab's feed, the status dots, the
overview, and what a viewer is not offered."""

from __future__ import annotations

from typing import Any

import pytest

from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.models import Broker, BrokerStatus
from brokers.services import broker_create, subscription_create
from devices.models import Device
from runtime.manager import Runtime
from tests.browser.conftest import UI_TIMEOUT_MS, log_in, screenshot, wait_until
from tests.factories import PASSWORD, make_product, make_user

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]


def connected_broker(product: Any, port: int, name: str = "Line 1") -> Broker:
    broker = broker_create(
        actor=None, product=product, name=name, host="127.0.0.1", port=port
    )
    subscription_create(actor=None, broker=broker, name="all", topic_filter="#")
    wait_until(
        lambda: BrokerStatus.objects.filter(
            broker=broker, state="connected", subscribed_topics_count=1
        ).exists(),
        15,
        "the runtime to connect the broker",
    )
    return broker


def publish(port: int, topic: str, payload: bytes) -> None:
    publish_messages(
        ConnectionSettings(host="127.0.0.1", port=port),
        [OutgoingMessage(topic=topic, payload=payload, qos=1)],
    )


@pytest.fixture
def plant(mosquitto: Any, runtime: Runtime) -> dict[str, Any]:
    process = mosquitto()
    operator, viewer = make_user("oscar"), make_user("victor")
    product = make_product("Plant", operator=operator, viewer=viewer)
    broker = connected_broker(product, process.port)
    Device.objects.create(
        product=product,
        broker=broker,
        device_id="boiler-1",
        name="Boiler",
        topic="plant/boiler",
    )
    return {
        "port": process.port,
        "broker": broker,
        "operator": operator,
        "viewer": viewer,
        "product": product,
    }


def test_published_message_appears_in_the_live_feed(
    browser_page: Any, plant: dict[str, Any]
) -> None:
    page, broker = browser_page, plant["broker"]
    log_in(page, "oscar", PASSWORD)
    page.goto(f"/brokers/{broker.pk}/?tab=activity")
    # The socket answered the feed request (re-sync from history).
    page.locator("#live-state", has_text="Live").wait_for()
    publish(plant["port"], "plant/boiler/temperature", b'{"celsius": 71.5}')
    row = page.locator("#live-rows li", has_text="plant/boiler/temperature")
    row.wait_for(timeout=UI_TIMEOUT_MS)
    assert "71.5" in row.first.inner_text()

    # A filter narrows what follows.
    page.fill("#live-filter input[name=filter]", "plant/pump/#")
    page.click("#live-filter button[type=submit]")
    page.locator("#live-state code.live-filter", has_text="plant/pump/#").wait_for()
    publish(plant["port"], "plant/boiler/pressure", b"2.1")
    publish(plant["port"], "plant/pump/speed", b"1450")
    page.locator("#live-rows li", has_text="plant/pump/speed").wait_for()
    assert page.locator("#live-rows li", has_text="plant/boiler/pressure").count() == 0
    screenshot(page, "broker-activity")

    # Pause holds rows back; clear empties the list.
    page.click("[data-live-pause]")
    page.locator("#live-state", has_text="Paused").wait_for()
    page.click("[data-live-clear]")
    assert page.locator("#live-rows li").count() == 0
    assert not page.errors


def test_disconnect_turns_the_dot_grey_and_connect_green(
    browser_page: Any, plant: dict[str, Any]
) -> None:
    page, broker = browser_page, plant["broker"]
    log_in(page, "oscar", PASSWORD)
    page.goto("/brokers/")
    row = page.locator(f"#broker-{broker.pk}")
    row.locator(".dot.connected").wait_for()
    screenshot(page, "brokers-list")
    row.locator("button[value=disconnect]").click()
    page.locator(f"#broker-{broker.pk} .dot.disconnected").wait_for()
    page.locator(f"#broker-{broker.pk} button[value=connect]").click()
    page.locator(f"#broker-{broker.pk} .dot.connected").wait_for()
    assert not page.errors


def test_overview_shows_health_and_follows_traffic(
    browser_page: Any, plant: dict[str, Any]
) -> None:
    page, broker = browser_page, plant["broker"]
    log_in(page, "victor", PASSWORD)
    page.goto("/")
    card = page.locator(f"#broker-card-{broker.pk}")
    card.locator(".dot.connected").wait_for()
    page.locator("#device-tile-" + str(Device.objects.get().pk)).wait_for()
    page.locator("#throughput-chart canvas").wait_for()
    before = card.locator(".received").inner_text()
    for index in range(5):
        publish(
            plant["port"], "plant/boiler", f'{{"temperature": {60 + index}}}'.encode()
        )
    page.wait_for_function(
        "([id, before]) => {"
        " const el = document.querySelector(`#broker-card-${id} .received`);"
        " return el && el.textContent.trim() !== before; }",
        arg=[broker.pk, before],
        timeout=UI_TIMEOUT_MS,
    )
    screenshot(page, "overview")
    page.goto("/devices/")
    screenshot(page, "devices")
    page.goto(f"/brokers/{broker.pk}/?tab=topics")
    page.locator("#topic-tree").wait_for()
    screenshot(page, "broker-topics")
    assert not page.errors


def test_viewer_sees_no_write_buttons(browser_page: Any, plant: dict[str, Any]) -> None:
    page, broker = browser_page, plant["broker"]
    log_in(page, "victor", PASSWORD)
    page.goto("/brokers/")
    page.locator(f"#broker-{broker.pk} .dot.connected").wait_for()
    assert page.locator("button[value=disconnect], button[value=connect]").count() == 0
    assert page.get_by_role("link", name="New broker").count() == 0
    page.goto(f"/brokers/{broker.pk}/?tab=activity")
    page.locator("#live-state", has_text="Live").wait_for()
    assert page.locator("#live-publish").count() == 0
    assert page.get_by_role("button", name="Delete").count() == 0
    page.goto(f"/brokers/{broker.pk}/")
    page.locator("#broker-status").wait_for()
    assert page.locator("#broker-status button").count() == 0
    screenshot(page, "broker-overview-viewer")
