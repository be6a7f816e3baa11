"""Journey: an admin sorts and searches the long lists by clicking column
headers and typing in their search boxes: brokers, a broker's subscriptions,
devices (with pages), the audit log (with pages) and the topic tree. Sort and
search go into the address, survive paging, and the tables never widen the page.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from brokers.models import Subscription
from mqttadmin.audit import audit_record
from tests.browser.conftest import log_in
from tests.factories import (
    PASSWORD,
    make_broker,
    make_broker_subscribed_to_all,
    make_device,
    make_product,
    make_subscription,
    make_user,
)
from tests.history.test_pages_history import store

pytestmark = [pytest.mark.browser]


def _texts(page: Any, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(selector).all_inner_texts()]


def _wait_for_first(page: Any, selector: str, text: str) -> None:
    page.wait_for_function(
        "([selector, text]) => {"
        " const first = document.querySelector(selector);"
        " return first && first.textContent.trim() === text; }",
        arg=[selector, text],
    )


def _wait_for_count(page: Any, selector: str, count: int) -> None:
    page.wait_for_function(
        "([selector, count]) => document.querySelectorAll(selector).length === count",
        arg=[selector, count],
    )


def test_admin_sorts_and_searches_the_long_lists(journey: Any) -> None:
    admin = make_user("ada")
    product = make_product("Plant", admin=admin)
    for index in range(1, 21):
        make_broker(product, name=f"Line {index:02d}", host=f"line{index}.plant")
    make_broker(product, name="Hall east", host="east.hall", via_service=False)
    make_broker(product, name="Hall west", host="west.hall", via_service=False)
    boilers = make_broker_subscribed_to_all(product, name="Boiler house")
    for index in range(30):
        make_subscription(
            boilers,
            name=f"Boiler feed {index:02d} with a long descriptive name",
            topic_filter=f"plant/boiler/{index}/#",
        )
        Subscription.objects.filter(topic_filter=f"plant/boiler/{index}/#").update(
            messages_received=index * 10,
            last_error="Webhook answered 503 Service Unavailable " * 4
            if index % 7 == 0
            else "",
        )
    field = make_broker(product, name="Field", host="field.plant", via_service=False)
    for index in range(55):
        make_device(
            product,
            field,
            f"pump-{index:02d}" if index % 2 else f"valve-{index:02d}",
            type="pump" if index % 2 else "valve",
        )
    for index in range(70):
        audit_record(actor=admin, action=f"broker.note{index:02d}", target=field)
    store(
        boilers,
        *[(f"plant/line{i}/state", b"1") for i in range(70)],
        ("plant/north/hall/boiler/pump/pressure", b"2.5"),
    )
    page = journey.page

    log_in(page, "ada", PASSWORD)
    journey.step("logged in")

    # Brokers: the Name header flips the order; the search narrows as you type.
    page.get_by_role("link", name="Brokers").first.click()
    journey.step("brokers", title="Brokers")
    names = "#broker-rows td:nth-child(2) > a"
    assert _texts(page, names)[0] == "Boiler house"
    page.locator("#broker-table th a.sort", has_text="Name").click()
    _wait_for_first(page, names, "Line 20")
    page.wait_for_url(re.compile(r"sort=-name"))
    journey.step("brokers by name descending", title="Brokers")
    page.get_by_role("searchbox").fill("hall")
    _wait_for_count(page, "#broker-rows tr", 2)
    page.wait_for_url(re.compile(r"q=hall"))
    journey.step("brokers searched", title="Brokers")
    assert _texts(page, names) == ["Hall west", "Hall east"]  # still by name, desc
    assert "sort=-name" in page.url
    # Reloaded, the page opens its live socket, which sends every broker's row:
    # the rows the search hides are dropped, not errors.
    page.reload()
    page.wait_for_timeout(1500)
    journey.step("brokers searched, reloaded", title="Brokers")
    assert _texts(page, names) == ["Hall west", "Hall east"]

    # A broker's subscriptions: the most received first, then a search.
    page.get_by_role("searchbox").fill("")
    _wait_for_count(page, "#broker-rows tr", 24)
    page.get_by_role("link", name="Boiler house").click()
    journey.step("broker", title="Boiler house")
    page.locator("nav.tabs").get_by_role("link", name="Subscriptions").click()
    journey.step("subscriptions", title="Boiler house")
    table = page.locator("#subscription-table table")
    box = page.locator("#subscription-table > .overflow-auto")
    # At 1,440 px the table fits its box: no clipped buttons, names on one line.
    assert table.bounding_box()["width"] <= box.bounding_box()["width"] + 1
    lines = page.locator("#subscription-table td.name").first.evaluate(
        "td => { const r = document.createRange(); r.selectNodeContents(td);"
        " return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; }"
    )
    assert lines <= 2, f"a 7-word name takes {lines} lines"
    sub_names = "#subscription-table td.name"
    page.locator("#subscription-table th a.sort", has_text="Received").click()
    _wait_for_first(page, sub_names, "Boiler feed 29 with a long descriptive name")
    page.wait_for_url(re.compile(r"sort=-received"))
    journey.step("subscriptions by received", title="Boiler house")
    # Words match in the name, the filter or the description: plant/boiler/1/#
    # and plant/boiler/10/# to 19.
    page.get_by_role("searchbox").fill("boiler/1")
    _wait_for_count(page, "#subscription-table tbody tr", 11)
    journey.step("subscriptions searched", title="Boiler house")
    assert _texts(page, sub_names)[0] == "Boiler feed 19 with a long descriptive name"
    assert "q=boiler%2F1" in page.url and "sort=-received" in page.url

    # Topics: the search finds a deep topic and opens its branches.
    page.locator("nav.tabs").get_by_role("link", name="Topics").click()
    journey.step("topics", title="Boiler house")
    page.get_by_label("Search").fill("pump press")
    deep = page.locator(
        '.topic-tree .node[title="plant/north/hall/boiler/pump/pressure"]'
    )
    deep.wait_for()
    journey.step("topics searched", title="Boiler house")
    assert deep.is_visible()
    assert page.locator(".topic-tree li.leaf").count() == 1
    # Its panel lists its messages in the Activity tab's compact rows.
    deep.get_by_role("link", name="pressure").click()
    panel_row = page.locator("#topic-panel li.msg").first
    panel_row.wait_for()
    journey.step("topic panel", title="Boiler house")
    assert "2.5" in panel_row.locator(".line").inner_text()

    # Devices: search, sort by ID from the sort links, and page on with both.
    page.get_by_role("link", name="Devices").first.click()
    journey.step("devices", title="Devices")
    page.get_by_role("searchbox").fill("pump")
    page.wait_for_url(re.compile(r"q=pump"))
    _wait_for_count(page, "#device-tiles article.device-tile", 27)
    journey.step("devices searched", title="Devices")
    by_id = page.locator(".sort-links a", has_text="Device ID")
    by_id.click()
    page.locator(
        '.sort-links a[aria-current="true"]', has_text=re.compile(r"Device ID\s*▲")
    ).wait_for()
    assert "sort=id" in page.url
    by_id.click()
    page.locator(
        '.sort-links a[aria-current="true"]', has_text=re.compile(r"Device ID\s*▼")
    ).wait_for()
    assert "sort=-id" in page.url
    journey.step("devices by id descending", title="Devices")
    tiles = "#device-tiles article.device-tile strong"
    assert _texts(page, tiles)[0] == "Device pump-53"
    # 55 devices, 48 a page: a search that finds all of them pages, keeping the sort.
    page.get_by_role("searchbox").fill("device")
    _wait_for_count(page, "#device-tiles article.device-tile", 48)
    page.get_by_role("link", name="Next").click()
    page.wait_for_url(re.compile(r"page=2"))
    _wait_for_count(page, "#device-tiles article.device-tile", 7)
    journey.step("devices page 2", title="Devices")
    assert "sort=-id" in page.url and "q=device" in page.url
    assert _texts(page, tiles)[-1] == "Device pump-01"

    # Audit: search, sort by action, and page on with both.
    page.get_by_role("link", name="Audit").click()
    journey.step("audit", title="Audit log")
    page.get_by_role("searchbox", name="Search").fill("note")
    page.wait_for_url(re.compile(r"q=note"))
    page.locator("#audit-table th a.sort", has_text="Action").click()
    page.wait_for_url(re.compile(r"sort=action"))
    _wait_for_first(page, "#audit-table tbody td:nth-child(4)", "broker.note00")
    journey.step("audit by action", title="Audit log")
    page.get_by_role("link", name="Older").click()
    page.wait_for_url(re.compile(r"page=2"))
    _wait_for_first(page, "#audit-table tbody td:nth-child(4)", "broker.note50")
    journey.step("audit page 2", title="Audit log")
    assert "sort=action" in page.url and "q=note" in page.url
    assert page.locator("#audit-table tbody tr").count() == 20
    journey.assert_clean()
