"""Journeys: an operator works with a device (command, alert rule, the alert that
fires and its acknowledgement, the raw points page by page), and a new product
with nothing in it guides its admin and its viewer to what comes next."""

from __future__ import annotations

import json
import queue
import re
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.models import BrokerStatus
from devices.models import Device
from mqttadmin.models import Product
from runtime.manager import Runtime
from tests.browser.conftest import UI_TIMEOUT_MS, log_in, wait_until
from tests.browser.test_live_pages import connected_broker
from tests.factories import PASSWORD, make_broker, make_device, make_product, make_user

pytestmark = [pytest.mark.browser]


class Listener:
    """A plain MQTT client on the test's Mosquitto: what the device would receive."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="journey-device",
            protocol=mqtt.MQTTv311,
        )
        subscribed: queue.Queue[bool] = queue.Queue()
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_subscribe = lambda *_args: subscribed.put(True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        subscribed.get(timeout=5)

    def next(self, timeout: float = 10) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def link(scope: Any, name: str) -> Any:
    """An <a> by its whole text, styled as a button (role=button) or not."""
    return scope.locator("a", has_text=re.compile(f"^{re.escape(name)}$"))


def publish_telemetry(port: int, topic: str, values: list[dict[str, float]]) -> None:
    publish_messages(
        ConnectionSettings(host="127.0.0.1", port=port),
        [
            OutgoingMessage(topic=topic, payload=json.dumps(value).encode(), qos=1)
            for value in values
        ],
    )


@pytest.mark.mosquitto
def test_operator_commands_a_device_and_acknowledges_its_alert(
    journey: Any, mosquitto: Any, runtime: Runtime
) -> None:
    process = mosquitto()
    operator = make_user("oscar")
    product = make_product("Plant", operator=operator)
    broker = connected_broker(product, process.port)
    device = make_device(product, broker, "boiler-1", name="Boiler", topic="plant/b1")
    wait_until(
        lambda: BrokerStatus.objects.filter(
            broker=broker, state="connected", subscribed_topics_count__gte=2
        ).exists(),
        15,
        "the runtime to subscribe the device's topics",
    )
    page = journey.page
    log_in(page, "oscar", PASSWORD)
    journey.step("logged in", title="Overview")
    link(page.locator("header.topbar nav"), "Devices").click()
    journey.step("devices", title="Devices")
    link(page, "Boiler").first.click()
    journey.step("device", title="Boiler")

    # The panels an operator works with come before charts and raw points.
    order = page.evaluate(
        "() => [...document.querySelectorAll("
        "'#device-command, #device-rules, .device-charts, .device-raw')]"
        ".map(e => e.id || e.className)"
    )
    assert order == ["device-command", "device-rules", "device-charts", "device-raw"]

    # A command reaches the device's command topic on the real broker.
    listener = Listener(process.port, device.command_topic)
    try:
        page.fill("#device-command textarea[name=payload]", '{"valve": "open"}')
        page.get_by_role("button", name="Send command").click()
        page.locator("#device-command .notice", has_text="Sent to").wait_for()
        journey.step("command sent", title="Boiler")
        received = listener.next()
        assert received.topic == "plant/b1/cmd"
        assert json.loads(received.payload) == {"valve": "open"}
    finally:
        listener.stop()

    # An alert rule, added through its form.
    page.locator("#device-rules summary", has_text="Add rule").click()
    page.fill("#device-rules input[name=key]", "temperature")
    page.select_option("#device-rules select[name=op]", ">")
    page.fill("#device-rules input[name=threshold]", "80")
    page.locator("#device-rules form button[type=submit]").click()
    page.locator("#device-rules td code", has_text="temperature > 80").wait_for()
    journey.step("rule added", title="Boiler")

    # Telemetry over the threshold opens an alert; the device page shows it.
    publish_telemetry(process.port, "plant/b1/telemetry", [{"temperature": 91.5}])
    page.locator("#device-live .open-alerts li").wait_for(timeout=UI_TIMEOUT_MS)
    journey.step("alert open", title="Boiler")

    # The Alerts page: the subject links to the device; acknowledge it.
    link(page.locator("header.topbar nav"), "Alerts").click()
    journey.step("alerts", title="Alerts")
    row = page.locator("#alerts-table tr.alert-row").first
    subject = link(row, "boiler-1")
    assert subject.get_attribute("href") == f"/devices/{device.pk}/"
    row.get_by_role("button", name="Acknowledge").click()
    page.locator("#alerts-table tr.alert-row", has_text="oscar").wait_for()
    journey.step("acknowledged", title="Alerts")
    link(page.locator("#alerts-table"), "boiler-1").click()
    journey.step("back to the device", title="Boiler")

    # Raw points: 50 a page, newest first; "Older" loads the next page in place
    # and the address it shows is a page of its own.
    publish_telemetry(
        process.port,
        "plant/b1/telemetry",
        [{"temperature": 20 + index / 10} for index in range(60)],
    )
    wait_until(
        lambda: (
            Device.objects.get(pk=device.pk)
            .last_values.get("temperature", {})
            .get("value")
            == 25.9
        ),
        15,
        "the points to be stored",
    )
    page.reload()
    journey.step("device with points", title="Boiler")
    raw = page.locator("#device-raw")
    assert raw.locator("tbody tr").count() == 50
    link(raw, "Older").click()
    page.locator("#device-raw nav", has_text="Page 2").wait_for()
    journey.step("raw page 2", title="Boiler")
    assert "page=2" in page.url
    # 61 points: the first page's 50, then 11 (the alert's one is the oldest).
    assert raw.locator("tbody tr").count() == 11
    assert link(raw, "Older").count() == 0
    page.reload()
    journey.step("raw page 2 reloaded", title="Boiler")
    assert page.locator("#device-raw tbody tr").count() == 11
    link(page.locator("#device-raw"), "Newer").click()
    page.locator("#device-raw nav", has_text="Page 1").wait_for()
    journey.step("raw page 1", title="Boiler")

    # The tile: its sparkline is drawn, a long key ends in an ellipsis on one
    # line with its whole name on hover.
    long_key = "supply_water_temperature_after_the_mixing_valve"
    publish_telemetry(process.port, "plant/b1/telemetry", [{long_key: 42.0}])
    wait_until(
        lambda: long_key in Device.objects.get(pk=device.pk).last_values,
        15,
        "the long key to arrive",
    )
    link(page.locator("header.topbar nav"), "Devices").click()
    journey.step("tiles", title="Devices")
    tile = page.locator(f"#device-tile-{device.pk}")
    # Minutes of data in a 24-hour line: one 15-minute average, a dot at the end.
    assert tile.locator("svg.sparkline:not(.empty) circle").count() >= 1
    key = tile.locator(f'th[title="{long_key}"]')
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        box = key.evaluate(
            "th => { const text = document.createRange();"
            " text.selectNodeContents(th);"
            " return {scroll: th.scrollWidth, client: th.clientWidth,"
            " lines: text.getBoundingClientRect().height"
            " / parseFloat(getComputedStyle(th).lineHeight)}; }"
        )
        assert box["scroll"] > box["client"], box  # cut, with an ellipsis
        assert box["lines"] < 1.5, box
    page.set_viewport_size({"width": 1440, "height": 900})
    journey.assert_clean()


def test_a_new_product_guides_its_admin_from_empty_pages_to_the_forms(
    journey: Any,
) -> None:
    admin = make_user("ada")
    make_product("Atlas", admin=admin)
    demo = make_product("Demo", viewer=admin)
    Product.objects.filter(pk=demo.pk).update(slug="demo")
    page = journey.page
    log_in(page, "ada", PASSWORD)
    journey.step("overview", title="Overview")

    # The overview: no brokers, no devices, and the Demo product's hint.
    brokers = page.locator("#no-brokers")
    assert link(brokers, "Add a broker").count() == 1
    assert brokers.get_by_role("button", name="Switch to Demo").count() == 1
    assert page.locator("#no-devices", has_text="has none yet").count() == 1

    # Devices: without a broker, "New device" says so and leads to the broker form.
    link(page.locator("header.topbar nav"), "Devices").click()
    journey.step("devices", title="Devices")
    link(page.locator(".head-actions"), "New device").click()
    journey.step("new device without a broker", title="New device")
    assert page.locator("#needs-broker").count() == 1
    assert page.locator("form.device-form").count() == 0
    link(page.locator("#needs-broker"), "Add a broker").click()
    journey.step("new broker", title="New broker")
    assert page.locator("input[name=host]").count() == 1

    # With a broker, the empty devices page offers creating and importing.
    make_broker(Product.objects.get(name="Atlas"), name="Line 1")
    link(page.locator("header.topbar nav"), "Devices").click()
    journey.step("devices with a broker", title="Devices")
    empty = page.locator("#no-devices")
    link(empty, "Import a CSV file").click()
    journey.step("import", title="Import devices")
    assert page.locator("input[type=file][name=file]").count() == 1
    page.go_back()
    link(page.locator("#no-devices"), "New device").click()
    journey.step("new device", title="New device")
    assert page.locator("form.device-form select[name=broker]").count() == 1

    journey.assert_clean()


def test_a_viewer_of_an_empty_product_reads_why_without_write_links(
    journey: Any,
) -> None:
    viewer = make_user("victor")
    make_product("Atlas", viewer=viewer)
    demo = make_product("Demo", viewer=viewer)
    Product.objects.filter(pk=demo.pk).update(slug="demo")
    page = journey.page
    log_in(page, "victor", PASSWORD)
    journey.step("overview", title="Overview")
    assert page.locator("#no-brokers", has_text="An operator").count() == 1
    assert page.locator("#no-devices", has_text="An operator").count() == 1
    assert link(page, "Add a broker").count() == 0
    link(page.locator("header.topbar nav"), "Devices").click()
    journey.step("devices", title="Devices")
    assert page.locator("#no-devices", has_text="An operator").count() == 1
    for name in ("New device", "Import a CSV file", "Add a broker"):
        assert link(page, name).count() == 0
    link(page.locator("header.topbar nav"), "Brokers").click()
    journey.step("brokers", title="Brokers")
    assert page.locator("#no-brokers", has_text="An operator").count() == 1
    assert link(page, "Add a broker").count() == 0
    # The Demo product's hint switches to it, on the same page.
    page.locator("#no-brokers").get_by_role("button", name="Switch to Demo").click()
    journey.step("switched to Demo", title="Brokers")
    switcher = page.locator("header select[name=product]")
    assert switcher.evaluate("s => s.selectedOptions[0].textContent.trim()") == "Demo"
    journey.assert_clean()
