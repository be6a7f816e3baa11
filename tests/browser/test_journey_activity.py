"""Journey: an operator reads a broker's stored history on the Activity tab.

Fifty compact rows fit in a screen or two, a row opens to its exact payload and
MQTT 5 properties, "Older" pages on, and the date-time pickers narrow the list
(read in the user's time zone); a backwards range is an error next to Until.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.utils import timezone

from mqttadmin.pipeline import ReceivedMessage
from runtime.ingest import store_batch
from tests.browser.conftest import log_in
from tests.factories import (
    PASSWORD,
    make_broker_subscribed_to_all,
    make_product,
    make_user,
)

pytestmark = [pytest.mark.browser]

MESSAGES = 120
PROPERTIES = {
    "ContentType": "application/json",
    "ResponseTopic": "replies/panel",
}


def _document(index: int) -> bytes:
    """Pretty-printed JSON over several lines: the old rows showed all of it."""
    body = {"index": index, "celsius": 20 + index % 7, "site": {"hall": "north"}}
    return json.dumps(body, indent=2).encode()


def _store_history(broker_id: int, start: datetime.datetime) -> None:
    """One message a minute, oldest first: JSON, binary every 10th, and MQTT 5
    properties on every 3rd."""
    store_batch(
        [
            ReceivedMessage(
                broker_id,
                f"plant/line{index % 3}/boiler/temperature",
                b"\x00\xff\x10raw" if index % 10 == 0 else _document(index),
                index % 3,
                index % 5 == 0,
                start + datetime.timedelta(minutes=index),
                properties=PROPERTIES if index % 3 == 0 else {},
            )
            for index in range(MESSAGES)
        ]
    )


def _picker(moment: datetime.datetime) -> str:
    """A datetime-local value: wall time in the zone the server reads it in."""
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M:%S")


def test_operator_reads_compact_history(journey: Any) -> None:
    operator = make_user("olga")
    product = make_product("Plant", operator=operator)
    broker = make_broker_subscribed_to_all(product, name="Boiler house")
    start = (timezone.now() - datetime.timedelta(hours=3)).replace(microsecond=0)
    _store_history(broker.pk, start)
    page = journey.page

    log_in(page, "olga", PASSWORD)
    journey.step("logged in")
    page.get_by_role("link", name="Brokers").first.click()
    journey.step("brokers", title="Brokers")
    page.get_by_role("link", name="Boiler house").click()
    journey.step("broker", title="Boiler house")
    page.locator("nav.tabs").get_by_role("link", name="Activity").click()
    journey.step("activity", title="Boiler house")

    rows = page.locator("#history-rows > li.msg")
    assert rows.count() == 50
    # Compact: one line a row, 50 of them well under 2,000 px (were 7,400).
    height = page.locator("#history-rows").bounding_box()["height"]
    assert height < 2000, f"50 rows are {height} px tall"
    newest = rows.first
    assert "plant/line2/boiler/temperature" in newest.locator("summary").inner_text()
    assert newest.locator(".badge.qos").inner_text() == "QoS 2"
    # The one-line preview shows the JSON flattened; the body is hidden until opened.
    assert '"index": 119' in newest.locator(".line").inner_text()
    assert not newest.locator("pre.payload").is_visible()

    newest.locator("summary").click()
    journey.step("row opened", title="Boiler house")
    shown = newest.locator("pre.payload").inner_text()
    assert json.loads(shown) == json.loads(_document(119))
    assert shown == _document(119).decode()  # byte-exact, line breaks kept

    # A row with MQTT 5 properties and one with a binary payload, by keyboard.
    with_properties = page.locator(
        "#history-rows > li.msg", has=page.locator(".badge.props")
    ).first
    with_properties.locator("summary").focus()
    page.keyboard.press("Enter")
    properties = with_properties.locator(".msg-properties")
    properties.wait_for()
    assert "replies/panel" in properties.inner_text()
    binary = page.locator(
        "#history-rows > li.msg", has=page.locator(".line.binary")
    ).first
    assert "binary, 6 bytes · 00 ff 10 72 61 77" in binary.locator(".line").inner_text()
    journey.step("properties and binary", title="Boiler house")

    # "Older" appends the next page.
    page.get_by_role("button", name="Older").click()
    page.locator("#history-rows > li.msg").nth(99).wait_for()
    journey.step("older", title="Boiler house")
    assert rows.count() == 100

    # The pickers narrow the list to half an hour: 31 messages, both ends in.
    since = start + datetime.timedelta(minutes=30)
    until = start + datetime.timedelta(minutes=60)
    page.get_by_label("Since").fill(_picker(since))
    page.get_by_label("Until").fill(_picker(until))
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(lambda url: "since=" in url)
    journey.step("window", title="Boiler house")
    assert rows.count() == 31
    assert page.get_by_role("button", name="Older").count() == 0
    times = rows.locator(".time time").evaluate_all(
        "els => els.map(e => e.getAttribute('datetime'))"
    )
    assert min(map(datetime.datetime.fromisoformat, times)) == since
    assert max(map(datetime.datetime.fromisoformat, times)) == until

    # Until before Since: an error next to Until, and nothing listed.
    page.get_by_label("Until").fill(_picker(since - datetime.timedelta(minutes=1)))
    page.get_by_role("button", name="Filter").click()
    error = page.locator("#id_until-error")
    error.wait_for()
    journey.step("backwards window", title="Boiler house")
    assert "Until is before Since" in error.inner_text()
    assert rows.count() == 0
    journey.assert_clean()
