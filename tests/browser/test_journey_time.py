"""Journey: one clock. A user whose browser is in New York sees a message's time the
same way in the live feed, the history table and the browser's own formatter
(charts), in New York time with the zone named and the exact ISO time on hover;
then picks Tokyo on the account page and the tables follow."""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from history.models import StoredMessage
from mqttadmin.lib.units import format_instant
from mqttadmin.models import UserPreferences
from observe.models import BrokerStatsSample
from runtime.manager import Runtime
from tests.browser.conftest import UI_TIMEOUT_MS, log_in, wait_until
from tests.browser.journey import DESKTOP, Journey
from tests.browser.test_live_pages import connected_broker
from tests.factories import PASSWORD, make_broker, make_product, make_user

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]

BROWSER_ZONE = "America/New_York"
CHOSEN_ZONE = "Asia/Tokyo"
TOPIC = "plant/clock/check"


def zoned_journey(
    chromium: Any, asgi_server: str, name: str, zone: str
) -> Iterator[Journey]:
    """A `Journey` in a browser whose system zone is `zone` (the server's is UTC),
    so a time in the wrong zone cannot pass for the right one."""
    context = chromium.new_context(
        base_url=asgi_server, viewport=DESKTOP, timezone_id=zone
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    yield Journey(page=context.new_page(), name=name)
    context.close()


@pytest.fixture
def new_york_journey(
    chromium: Any,
    asgi_server: str,
    sqlite_readers_do_not_wait: None,
    request: pytest.FixtureRequest,
) -> Iterator[Journey]:
    yield from zoned_journey(chromium, asgi_server, request.node.name, BROWSER_ZONE)


@pytest.fixture
def lord_howe_journey(
    chromium: Any,
    asgi_server: str,
    sqlite_readers_do_not_wait: None,
    request: pytest.FixtureRequest,
) -> Iterator[Journey]:
    """Lord Howe Island: a half-hour summer shift and no letters for its zone."""
    yield from zoned_journey(
        chromium, asgi_server, request.node.name, "Australia/Lord_Howe"
    )


def written_in(at: datetime.datetime, zone: str) -> str:
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        return format_instant(at)


def open_activity(journey: Journey, broker_name: str) -> None:
    page = journey.page
    page.locator("header.topbar").get_by_role("link", name="Brokers").click()
    journey.step("brokers", title="Brokers")
    page.get_by_role("link", name=broker_name).first.click()
    journey.step("broker", title=broker_name)
    page.locator("nav.tabs").get_by_role("link", name="Activity").click()
    page.locator("#live-state", has_text="Live").wait_for()
    journey.step("activity", title=broker_name)


def test_one_clock_in_the_user_s_zone(
    new_york_journey: Journey, mosquitto: Any, runtime: Runtime
) -> None:
    journey, page = new_york_journey, new_york_journey.page
    operator = make_user("nora")
    product = make_product("Plant", operator=operator)
    broker = connected_broker(product, mosquitto().port)

    log_in(page, "nora", PASSWORD)
    journey.step("logged in")
    open_activity(journey, broker.name)

    # Publish from the page; the live feed shows the message.
    page.locator(".live-publish summary").click()
    page.fill("#live-publish input[name=topic]", TOPIC)
    # Two values, so the topic's chart has a line to draw later.
    for shown, value in enumerate(("42", "42.5")):
        page.fill("#live-publish input[name=payload]", value)
        page.locator("#live-publish button[type=submit]").click()
        page.locator("#live-rows li", has_text=TOPIC).nth(shown).wait_for()
    live_row = page.locator("#live-rows li", has_text=TOPIC).first
    journey.step("published", title=broker.name)

    wait_until(
        lambda: StoredMessage.objects.filter(topic=TOPIC).count() == 2,
        15,
        "the messages to be stored",
    )
    stored = StoredMessage.objects.filter(topic=TOPIC).order_by("-received_at", "-id")
    received_at, earlier_at = (message.received_at for message in stored)
    in_new_york = written_in(received_at, BROWSER_ZONE)
    zone_name = in_new_york.rsplit(" ", 1)[1]
    assert zone_name in ("EST", "EDT")

    # The live feed: New York time, the zone named, the exact instant on hover.
    live_time = live_row.locator("time")
    assert live_time.inner_text() == in_new_york
    live_iso = live_time.get_attribute("title") or ""
    assert datetime.datetime.fromisoformat(live_iso) == received_at.replace(
        microsecond=received_at.microsecond // 1000 * 1000
    )
    assert live_iso.endswith(("-05:00", "-04:00"))
    # The browser's formatter (the charts' axes and legends) writes it the same.
    assert (
        page.evaluate("s => window.PortalClock.format(s)", received_at.timestamp())
        == in_new_york
    )

    # The history table (the same tab, loaded afresh) agrees with the feed.
    page.locator("nav.tabs").get_by_role("link", name="Activity").click()
    page.locator("#live-state", has_text="Live").wait_for()
    journey.step("history", title=broker.name)
    history_time = page.locator("#activity li.msg", has_text=TOPIC).first.locator(
        "time"
    )
    assert history_time.inner_text() == in_new_york
    assert history_time.get_attribute("title") == live_iso

    # The account page names the zone the browser reported...
    page.locator("header.topbar").get_by_role("link", name="Account").click()
    journey.step("account", title="Account")
    section = page.locator("#time-zone")
    assert BROWSER_ZONE in section.inner_text()
    # ...and a zone picked there wins, on every page.
    page.select_option("#id_time_zone", CHOSEN_ZONE)
    page.get_by_role("button", name="Save time zone").click()
    page.locator(".flash", has_text=f"Times are now shown in {CHOSEN_ZONE}.").wait_for()
    journey.step("zone chosen", title="Account")
    assert CHOSEN_ZONE in section.inner_text()

    open_activity(journey, broker.name)
    in_tokyo = written_in(received_at, CHOSEN_ZONE)
    assert in_tokyo.endswith(" JST")
    history_time = page.locator("#activity li.msg", has_text=TOPIC).first.locator(
        "time"
    )
    assert history_time.inner_text() == in_tokyo
    tokyo_iso = history_time.get_attribute("title") or ""
    assert tokyo_iso.endswith("+09:00")
    assert datetime.datetime.fromisoformat(
        tokyo_iso
    ) == datetime.datetime.fromisoformat(live_iso)
    # The live feed re-synced from the history in the new zone too.
    live_time = page.locator("#live-rows li", has_text=TOPIC).first.locator("time")
    assert live_time.inner_text() == in_tokyo
    assert (
        page.evaluate("s => window.PortalClock.format(s)", received_at.timestamp())
        == in_tokyo
    )

    # The topic's chart: its axis and legend speak the same clock.
    page.locator("nav.tabs").get_by_role("link", name="Topics").click()
    journey.step("topics", title=broker.name)
    page.locator("#topic-tree a.node-name", has_text="check").click()
    page.locator(".topic-chart canvas").wait_for()
    journey.step("topic chart", title=broker.name)
    chart = page.locator(".topic-chart")
    # The cursor at the left edge is on the first point: 42, written with the
    # series' precision (42.5 needs one decimal).
    chart.locator(".u-over").hover(position={"x": 1, "y": 10})
    legend = chart.locator(".u-legend .u-series")
    assert legend.first.locator(".u-value").inner_text() == written_in(
        earlier_at, CHOSEN_ZONE
    )
    assert legend.nth(1).locator(".u-value").inner_text() == "42.0"
    journey.assert_clean()


def test_stats_chart_speaks_the_tables_clock_in_a_far_zone(
    lord_howe_journey: Journey,
) -> None:
    journey, page = lord_howe_journey, lord_howe_journey.page
    operator = make_user("nora")
    broker = make_broker(make_product("Plant", operator=operator), status="connected")
    now = timezone.now().replace(microsecond=0)
    samples = [
        (now - datetime.timedelta(seconds=20), 10 / 3, 1),
        (now - datetime.timedelta(seconds=10), 2.5, 2),
        (now, 3.0, 2),
    ]
    for at, rate, clients in samples:
        BrokerStatsSample.objects.create(
            broker=broker,
            sampled_at=at,
            messages_received_per_s=rate,
            messages_sent_per_s=0.0,
            clients_connected=clients,
        )

    log_in(page, "nora", PASSWORD)
    journey.step("logged in")
    page.locator("header.topbar").get_by_role("link", name="Brokers").click()
    journey.step("brokers", title="Brokers")
    page.get_by_role("link", name=broker.name).first.click()
    page.locator("nav.tabs").get_by_role("link", name="Stats").click()
    chart = page.locator('[data-stats-chart="messages"]')
    chart.locator("canvas").wait_for()
    journey.step("stats", title=broker.name)

    chart.locator(".u-over").hover(position={"x": 1, "y": 10})
    legend = chart.locator(".u-legend .u-series")
    first = written_in(samples[0][0], "Australia/Lord_Howe")
    assert first.endswith((" UTC+11", " UTC+10:30"))
    assert legend.first.locator(".u-value").inner_text() == first
    # Rates to a tenth: 3.3, not 3.3333333333333335.
    assert legend.nth(1).locator(".u-value").inner_text() == "3.3"
    journey.assert_clean()


AGREEMENT_ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "America/St_Johns",
    "America/Sao_Paulo",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
]


def test_the_browser_writes_every_instant_as_the_server_does(
    browser_page: Any,
) -> None:
    """Charts (clock.js) and tables (the `when` filter) agree in zones with and
    without letters, half- and quarter-hour offsets, and on both sides of each
    summer-time change of 2026."""
    page = browser_page
    user = make_user("nora")
    make_product("Plant", viewer=user)
    instants = [
        datetime.datetime(2026, 1, 15, 12, 0, tzinfo=datetime.UTC),
        datetime.datetime(2026, 7, 15, 23, 59, 59, tzinfo=datetime.UTC),
        datetime.datetime(2026, 12, 31, 23, 30, tzinfo=datetime.UTC),
    ]
    for zone in AGREEMENT_ZONES[1:]:
        # Each second around each of the zone's 2026 offset changes.
        local = zoneinfo.ZoneInfo(zone)
        hour = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
        while hour.year == 2026:
            after = hour + datetime.timedelta(hours=1)
            if (
                hour.astimezone(local).utcoffset()
                != after.astimezone(local).utcoffset()
            ):
                for seconds in (-1, 0, 1, 3600):
                    instants.append(after + datetime.timedelta(seconds=seconds))
            hour = after
    stamps = sorted({at.timestamp() for at in instants})
    log_in(page, "nora", PASSWORD)
    for zone in AGREEMENT_ZONES:
        UserPreferences.objects.update_or_create(
            user=user, defaults={"time_zone": zone}
        )
        page.goto("/account/security/")
        assert page.locator("html").get_attribute("data-time-zone") == zone
        browser = page.evaluate(
            "ss => ss.map(s => window.PortalClock.format(s))", stamps
        )
        server = [
            written_in(datetime.datetime.fromtimestamp(s, datetime.UTC), zone)
            for s in stamps
        ]
        assert browser == server, zone
    assert not page.errors
