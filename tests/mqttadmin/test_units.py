"""One clock and honest units: how instants, sizes, durations and telemetry numbers
are written, in which zone, and how a user picks that zone."""

from __future__ import annotations

import datetime
import re
import zoneinfo
from typing import Any

import pytest
from django.template import Context, Template
from django.test import Client
from django.utils import timezone

from devices.models import Device
from mqttadmin.lib import units
from mqttadmin.models import UserPreferences
from mqttadmin.timezones import TIME_ZONE_COOKIE
from tests.clients import logged_in
from tests.factories import make_broker, make_device

UTC = datetime.UTC
WINTER = datetime.datetime(2026, 12, 3, 7, 38, 1, 123456, tzinfo=UTC)
SUMMER = datetime.datetime(2026, 7, 3, 7, 38, 1, tzinfo=UTC)


def shown(value: datetime.datetime, zone: str) -> str:
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        return units.format_instant(value)


def render(source: str, **context: Any) -> str:
    return Template("{% load units %}" + source).render(Context(context))


# --- instants -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "text"),
    [
        ("UTC", "2026-12-03 07:38:01 UTC"),
        ("America/New_York", "2026-12-03 02:38:01 EST"),
        ("Europe/Berlin", "2026-12-03 08:38:01 CET"),
        # Far zones change the date; zones without letters are named by offset.
        ("Pacific/Kiritimati", "2026-12-03 21:38:01 UTC+14"),
        ("Pacific/Pago_Pago", "2026-12-02 20:38:01 SST"),
        ("Asia/Kathmandu", "2026-12-03 13:23:01 UTC+05:45"),
        ("America/Sao_Paulo", "2026-12-03 04:38:01 UTC-03"),
    ],
)
def test_an_instant_is_written_in_the_zone_with_its_name(zone: str, text: str) -> None:
    assert shown(WINTER, zone) == text


def test_summer_time_is_named_as_such() -> None:
    assert shown(SUMMER, "America/New_York") == "2026-07-03 03:38:01 EDT"
    assert shown(SUMMER, "Europe/Berlin") == "2026-07-03 09:38:01 CEST"


def test_the_repeated_hour_at_the_end_of_summer_time_stays_two_instants() -> None:
    # 2026-11-01 01:30 happens twice in New York: the zone's name tells them apart.
    first = datetime.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    second = first + datetime.timedelta(hours=1)
    assert shown(first, "America/New_York") == "2026-11-01 01:30:00 EDT"
    assert shown(second, "America/New_York") == "2026-11-01 01:30:00 EST"


def test_a_naive_time_is_taken_as_utc() -> None:
    naive = datetime.datetime(2026, 12, 3, 7, 38, 1)
    assert shown(naive, "Asia/Tokyo") == "2026-12-03 16:38:01 JST"


def test_when_gives_the_exact_iso_time_on_hover() -> None:
    with timezone.override(zoneinfo.ZoneInfo("America/New_York")):
        html = render("{{ at|when }}", at=WINTER)
    assert html == (
        '<time datetime="2026-12-03T02:38:01.123-05:00" '
        'title="2026-12-03T02:38:01.123-05:00">2026-12-03 02:38:01 EST</time>'
    )
    # The same instant, whatever the zone.
    iso = re.search(r'datetime="([^"]+)"', html)
    assert iso and datetime.datetime.fromisoformat(iso[1]) == WINTER.replace(
        microsecond=123000
    )


@pytest.mark.parametrize("value", [None, "", "2026-12-03"])
def test_when_shows_a_dash_for_no_time(value: Any) -> None:
    assert render("{{ at|when }}", at=value) == '<span class="muted">—</span>'


def test_zone_labels_give_the_browser_the_server_s_names() -> None:
    labels = units.zone_labels(zoneinfo.ZoneInfo("America/New_York"), WINTER)
    assert labels == {-300: "EST", -240: "EDT"}
    assert units.zone_labels(zoneinfo.ZoneInfo("UTC"), WINTER) == {0: "UTC"}
    assert units.zone_labels(zoneinfo.ZoneInfo("Asia/Kathmandu"), WINTER) == {
        345: "UTC+05:45"
    }


def test_stored_text_says_its_zone() -> None:
    with timezone.override(zoneinfo.ZoneInfo("Asia/Tokyo")):
        assert units.format_instant_utc(WINTER) == "2026-12-03 07:38:01 UTC"


# --- ago ------------------------------------------------------------------------


def test_ago_says_just_now_under_a_minute() -> None:
    now = WINTER
    assert units.format_ago(now - datetime.timedelta(seconds=59), now) == "just now"
    # A device clock a little ahead is not "in the future".
    assert units.format_ago(now + datetime.timedelta(seconds=5), now) == "just now"
    assert (
        units.format_ago(now - datetime.timedelta(minutes=6, seconds=54), now)
        == "6\xa0minutes ago"
    )
    assert (
        units.format_ago(now - datetime.timedelta(hours=3, minutes=2), now)
        == "3\xa0hours, 2\xa0minutes ago"
    )


def test_ago_filter_names_the_instant_on_hover() -> None:
    at = timezone.now() - datetime.timedelta(seconds=10)
    with timezone.override(zoneinfo.ZoneInfo("UTC")):
        html = render("{{ at|ago }}", at=at)
    assert ">just now</time>" in html
    assert f'title="{units.format_instant(at)}"' in html
    assert render("{{ at|ago }}", at=None) == '<span class="muted">—</span>'


# --- sizes and durations --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (5500, "5.4 KiB"),
        (58368, "57 KiB"),
        (1048576, "1 MiB"),
        (5 * 1024**3, "5 GiB"),
        (-2048, "-2 KiB"),
    ],
)
def test_bytes_are_written_in_binary_units(value: int, text: str) -> None:
    assert units.format_bytes(value) == text


def test_bytes_filter_keeps_the_exact_count_on_hover() -> None:
    assert render("{{ n|bytes }}", n=58368) == (
        '<data value="58368" title="58,368 B">57 KiB</data>'
    )
    assert render("{{ n|bytes }}", n=None) == '<span class="muted">—</span>'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 s"),
        (0.25, "250 ms"),
        (59, "59 s"),
        (60, "1 min"),
        (414, "6 min 54 s"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (90061, "1 d 1 h"),
        (datetime.timedelta(days=3, hours=4, seconds=5), "3 d 4 h"),
    ],
)
def test_durations_show_their_two_largest_units(value: Any, text: str) -> None:
    assert units.format_duration(value) == text


def test_duration_filter() -> None:
    assert render("{{ s|duration }}", s=414) == "6 min 54 s"
    assert render("{{ s|duration }}", s=None) == '<span class="muted">—</span>'


# --- telemetry numbers ----------------------------------------------------------


def test_one_key_has_one_precision() -> None:
    assert units.key_precision([21, 21.5, 21.25]) == 2
    assert [units.format_number(v, 2) for v in (21, 21.5, 21.25)] == [
        "21.00",
        "21.50",
        "21.25",
    ]
    # Float noise does not widen a key; precision stops at three decimals.
    assert units.decimals_of(0.1 + 0.2) == 1
    assert units.decimals_of(1.23456) == 3
    assert units.format_number(None, 2) == "—"


def test_decimals_filter_gives_one_width() -> None:
    rendered = [render("{{ v|decimals:1 }}", v=v) for v in (7.3, 12, 0.25)]
    assert rendered == ["7.3", "12.0", "0.2"]
    assert render("{{ v|decimals:1 }}", v=None) == '<span class="muted">—</span>'
    assert render("{{ v|decimals:1 }}", v="n/a") == "n/a"


@pytest.mark.django_db
def test_the_reading_tag_uses_the_key_s_precision(world: dict[str, Any]) -> None:
    broker = make_broker(world["product"])
    device = make_device(world["product"], broker, "d1")
    device.last_values = {
        "t": {"value": 21.5, "ts": "2026-12-03T07:38:01+00:00", "decimals": 2},
        "n": {"value": 7.0, "ts": "2026-12-03T07:38:01+00:00"},
    }
    source = "{% load readings %}{% reading device key value %}"

    def reading(key: str, value: Any) -> str:
        ctx = Context({"device": device, "key": key, "value": value})
        return Template(source).render(ctx)

    assert reading("t", 21.5) == "21.50"
    assert reading("t", 21) == "21.00"
    assert reading("n", 7.0) == "7"
    assert reading("new", 3.125) == "3.125"
    assert reading("t", None) == "—"
    assert Device.objects.get(pk=device.pk).decimals_for("t") == 0  # not saved


# --- the user's zone ------------------------------------------------------------


def _security_page(client: Client) -> str:
    return client.get("/account/security/").content.decode()


@pytest.mark.django_db
def test_pages_follow_the_browser_zone(world: dict[str, Any]) -> None:
    client = logged_in(world["users"]["viewer"])
    client.cookies[TIME_ZONE_COOKIE] = "America/New_York"
    html = _security_page(client)
    assert 'data-time-zone="America/New_York"' in html
    assert "Times are shown in <strong>America/New_York</strong>" in html
    now = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d E[SD]T"
    assert re.search(rf"it is now <time [^>]+>{now}<", html)


@pytest.mark.django_db
@pytest.mark.parametrize("cookie", ["Mars/Olympus", "", "../../etc/passwd", "x" * 300])
def test_a_zone_the_server_does_not_know_is_ignored(
    world: dict[str, Any], cookie: str
) -> None:
    client = logged_in(world["users"]["viewer"])
    client.cookies[TIME_ZONE_COOKIE] = cookie
    assert 'data-time-zone="UTC"' in _security_page(client)


@pytest.mark.django_db
def test_the_zone_chosen_on_the_account_page_wins(world: dict[str, Any]) -> None:
    user = world["users"]["viewer"]
    client = logged_in(user)
    client.cookies[TIME_ZONE_COOKIE] = "America/New_York"
    response = client.post("/account/time-zone/", {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 302
    assert UserPreferences.objects.get(user=user).time_zone == "Asia/Tokyo"
    html = _security_page(client)
    assert 'data-time-zone="Asia/Tokyo"' in html
    assert "Times are now shown in Asia/Tokyo." in html
    assert '<option value="Asia/Tokyo" selected>' in html

    # Empty follows the browser again.
    client.post("/account/time-zone/", {"time_zone": ""})
    assert 'data-time-zone="America/New_York"' in _security_page(client)


@pytest.mark.django_db
def test_an_unknown_zone_is_refused_by_name_and_changes_nothing(
    world: dict[str, Any],
) -> None:
    user = world["users"]["viewer"]
    UserPreferences.objects.create(user=user, time_zone="Europe/Berlin")
    client = logged_in(user)
    response = client.post(
        "/account/time-zone/", {"time_zone": "Mars/Olympus"}, follow=True
    )
    html = response.content.decode()
    assert "Time zone: “Mars/Olympus” is not a zone this server knows" in html
    assert UserPreferences.objects.get(user=user).time_zone == "Europe/Berlin"
    assert 'data-time-zone="Europe/Berlin"' in html


@pytest.mark.django_db
def test_choosing_a_zone_needs_a_login_and_a_post(world: dict[str, Any]) -> None:
    response = Client().post("/account/time-zone/", {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    client = logged_in(world["users"]["viewer"])
    assert client.get("/account/time-zone/").status_code == 405
    assert not UserPreferences.objects.exists()


@pytest.mark.django_db
def test_every_zone_choice_is_one_the_server_can_use(world: dict[str, Any]) -> None:
    html = _security_page(logged_in(world["users"]["viewer"]))
    select = re.search(r'<select name="time_zone".*?</select>', html, re.S)
    assert select
    values = re.findall(r'<option value="([^"]+)"', select[0])
    assert len(values) > 300
    for name in values:
        zoneinfo.ZoneInfo(name)
