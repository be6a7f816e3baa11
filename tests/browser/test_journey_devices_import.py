"""Journey: an operator imports devices from a CSV file, a good one and a bad one.

The upload's answer comes inside the whole, styled page (it was once swapped into
<body> as a bare fragment), and a bad file's problems are named by line and column.
"""

from __future__ import annotations

from typing import Any

import pytest

from devices.models import Device
from tests.browser.conftest import log_in
from tests.factories import PASSWORD, make_broker, make_product, make_user

pytestmark = [pytest.mark.browser]

GOOD = (
    "device_id,name,type,topic,availability_topic\n"
    "boiler-1,Boiler,sensor,plant/boiler-1,plant/boiler-1/status\n"
    "pump-2,Pump,actuator,plant/pump-2,\n"
)
# Line 2: a space in the id; line 3: a wildcard in the topic.
BAD = (
    "device_id,name,type,topic\n"
    "bad id,Valve,sensor,plant/v\n"
    "v2,Valve 2,sensor,plant/#\n"
)


def _upload(journey: Any, name: str, text: str) -> None:
    page = journey.page
    page.get_by_label("Broker").select_option(label="Line 1")
    page.get_by_label("File").set_input_files(
        {"name": name, "mimeType": "text/csv", "buffer": text.encode()}
    )
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_url("**/devices/import/*/")


def test_operator_imports_a_good_and_a_bad_csv_file(journey: Any) -> None:
    operator = make_user("oscar")
    product = make_product("Plant", operator=operator)
    make_broker(product, name="Line 1")
    page = journey.page
    log_in(page, "oscar", PASSWORD)
    journey.step("logged in")

    page.locator("header.topbar").get_by_role("link", name="Devices").click()
    journey.step("devices", title="Devices")
    page.get_by_role("button", name="Import CSV").click()
    journey.step("import form", title="Import devices")

    _upload(journey, "plant.csv", GOOD)
    page.get_by_text("Imported 2 devices.").wait_for()
    journey.step("good file imported", title="Device import")
    # The result sits in the page: the header, the heading, the styled notice.
    assert page.locator("main h1").inner_text() == "Device import"
    assert page.locator("main #import-progress .notice").is_visible()
    assert page.locator("body > #import-progress").count() == 0
    assert set(Device.objects.values_list("device_id", flat=True)) == {
        "boiler-1",
        "pump-2",
    }

    page.get_by_role("link", name="Import another file").click()
    journey.step("import form again", title="Import devices")
    _upload(journey, "broken.csv", BAD)
    page.get_by_text("Nothing was imported").wait_for()
    journey.step("bad file refused", title="Device import")
    rows = page.locator("table.import-errors tbody tr")
    assert rows.count() == 2
    first, second = rows.nth(0).inner_text(), rows.nth(1).inner_text()
    assert first.split("\t")[0].strip() == "2" and "device_id" in first
    assert second.split("\t")[0].strip() == "3" and "topic" in second
    assert Device.objects.count() == 2  # nothing of the bad file

    # The list of recent imports on the form page names both files.
    page.get_by_role("link", name="Import another file").click()
    journey.step("recent imports", title="Import devices")
    assert page.get_by_role("cell", name="broken.csv").is_visible()
    journey.assert_clean()
