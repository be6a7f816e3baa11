"""Journeys of a product admin on the broker page: manage the MQTT users and
roles of a Dynamic Security broker and sync them (the broker then lets the new
user in); browse the topic tree and clear a retained message."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from acl import services as acl_services
from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from history.models import Topic
from runtime.manager import Runtime
from tests.acl.conftest import ADMIN_PASSWORD, ADMIN_USER, _plugin_path, connack
from tests.browser.conftest import log_in, wait_until
from tests.browser.test_live_pages import connected_broker
from tests.factories import PASSWORD, make_broker, make_product, make_user
from tests.services import missing

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]


@pytest.fixture
def admin_product() -> Any:
    return make_product("Plant", admin=make_user("ada"))


@pytest.fixture
def dynsec_port(mosquitto: Any, tmp_path: Path) -> int:
    """A Mosquitto with the Dynamic Security plugin and only its admin account."""
    plugin = _plugin_path()
    ctrl = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
    if not Path(ctrl).exists():
        missing("mosquitto_ctrl is not installed (apt-get install mosquitto-clients)")
    config = tmp_path / "dynsec.json"
    subprocess.run(
        [ctrl, "dynsec", "init", str(config), ADMIN_USER, ADMIN_PASSWORD],
        check=True,
        capture_output=True,
        timeout=10,
    )
    config.chmod(0o600)
    process = mosquitto(
        "listener {port} 127.0.0.1\nallow_anonymous false\n"
        f"plugin {plugin}\nplugin_opt_config_file {config}\n",
        name="dynsec",
    )
    return int(process.port)


def test_admin_adds_a_role_and_a_user_and_syncs_them(
    journey: Any, admin_product: Any, dynsec_port: int
) -> None:
    page = journey.page
    admin = admin_product.memberships.get().user
    # The portal's connection is the broker's Dynamic Security admin; disabled,
    # so the runtime holds no connection of its own during the journey.
    broker = make_broker(
        admin_product,
        name="Managed",
        port=dynsec_port,
        enabled=False,
        connect_timeout=3.0,
        username=ADMIN_USER,
        password=ADMIN_PASSWORD,
    )
    acl_services.management_update(actor=admin, broker=broker, management="dynsec")
    # Before: the broker knows no such user.
    assert connack(dynsec_port, "sensor-1", "Sensor-Pa55word") != 0

    log_in(page, "ada", PASSWORD)
    journey.step("logged in", title="Overview")
    page.locator("header.topbar").get_by_role("link", name="Brokers").first.click()
    journey.step("brokers", title="Brokers")
    page.get_by_role("link", name="Managed").first.click()
    journey.step("broker", title="Managed")
    page.locator("nav.tabs").get_by_role("link", name="Users & ACL").click()
    panel = page.locator("#acl-panel")
    panel.get_by_text("No MQTT users yet.").wait_for()
    journey.step("users and acl", title="Managed")

    panel.get_by_role("button", name="Add role").click()
    page.get_by_role("heading", name="New role").wait_for()
    journey.step("new role form", title="Managed")
    page.fill("#acl-panel input[name=name]", "sensors")
    page.locator("#acl-panel table.rules input[name$=topic]").first.fill("plant/#")
    page.locator("#acl-panel table.rules select[name$=access]").first.select_option(
        "readwrite"
    )
    page.locator("#acl-panel").get_by_role("button", name="Save").click()
    page.locator("#acl-panel").get_by_role("cell", name="sensors").wait_for()
    journey.step("role saved", title="Managed")

    page.locator("#acl-panel").get_by_role("button", name="Add user").click()
    page.get_by_role("heading", name="New MQTT user").wait_for()
    journey.step("new user form", title="Managed")
    page.fill("#acl-panel input[name=username]", "sensor-1")
    page.fill("#acl-panel input[name=password]", "Sensor-Pa55word")
    page.locator("#acl-panel").get_by_label("sensors").check()
    page.locator("#acl-panel").get_by_role("button", name="Save").click()
    page.locator("#acl-panel code", has_text="sensor-1").wait_for()
    journey.step("user saved", title="Managed")

    page.locator("#acl-panel").get_by_role("button", name="Sync").click()
    page.locator("#acl-panel").get_by_text("Applied to the broker.").wait_for()
    journey.step("synced", title="Managed")
    # The broker itself now lets the user in.
    wait_until(
        lambda: connack(dynsec_port, "sensor-1", "Sensor-Pa55word") == 0,
        5,
        "the broker to accept the synced user",
    )
    journey.assert_clean()


def test_operator_browses_topics_and_clears_a_retained_message(
    journey: Any, mosquitto: Any, runtime: Runtime
) -> None:
    page = journey.page
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm's question
    process = mosquitto()
    product = make_product("Plant", operator=make_user("oscar"))
    broker = connected_broker(product, process.port)
    publish_messages(
        ConnectionSettings(host="127.0.0.1", port=process.port),
        [
            OutgoingMessage(
                topic="plant/boiler/setpoint", payload=b"72", qos=1, retain=True
            ),
            OutgoingMessage(topic="plant/pump/speed", payload=b"1450", qos=1),
        ],
    )
    wait_until(
        lambda: Topic.objects.filter(broker=broker).count() >= 2,
        15,
        "the runtime to store both topics",
    )

    log_in(page, "oscar", PASSWORD)
    journey.step("logged in", title="Overview")
    page.locator("header.topbar").get_by_role("link", name="Brokers").first.click()
    journey.step("brokers", title="Brokers")
    page.get_by_role("link", name=broker.name).first.click()
    journey.step("broker", title=broker.name)
    page.locator("nav.tabs").get_by_role("link", name="Topics").click()
    tree = page.locator("#topic-tree")
    tree.get_by_text("2 topics", exact=False).wait_for()
    journey.step("topics", title=broker.name)

    # Narrow the tree with a filter.
    tree.locator("input[name=filter]").fill("plant/boiler/#")
    tree.get_by_role("button", name="Filter").click()
    tree.get_by_text("1 topic,", exact=False).wait_for()
    journey.step("topics filtered", title=broker.name)
    tree.get_by_role("link", name="setpoint").click()
    panel = page.locator("#topic-panel")
    panel.get_by_role("heading", name="plant/boiler/setpoint").wait_for()
    assert "72" in panel.inner_text()
    journey.step("topic opened", title=broker.name)

    retained = page.locator("#retained")
    retained.get_by_role("button", name="Load retained messages").click()
    row = retained.locator("table.retained-table tr", has_text="plant/boiler/setpoint")
    row.wait_for()
    journey.step("retained loaded", title=broker.name)
    row.get_by_role("button", name="Clear", exact=True).click()
    retained.get_by_text("0 retained messages", exact=False).wait_for()
    journey.step("retained cleared", title=broker.name)
    journey.assert_clean()
