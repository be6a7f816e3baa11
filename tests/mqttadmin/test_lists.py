"""The long lists' sort and search (mqttadmin.listing), through the pages that
use it: brokers, subscriptions, devices, audit. Sort and search are read once,
whitelisted per list, kept by pages and polls, and scoped to the user."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.test import RequestFactory

from brokers.models import Broker, Subscription
from mqttadmin.audit import audit_record
from mqttadmin.listing import listing_from
from tests.clients import htmx_swap, logged_in
from tests.factories import (
    make_broker,
    make_device,
    make_product,
    make_subscription,
    make_user,
)

pytestmark = pytest.mark.django_db

COLUMNS = {"name": ("name",), "count": ("messages",)}


def _listing(query: str) -> Any:
    request = RequestFactory().get(f"/things/?{query}")
    return listing_from(
        request, columns=COLUMNS, default="name", search=("name",), target="t"
    )


def test_sort_and_search_are_read_once_and_whitelisted() -> None:
    listing = _listing("sort=-count&q=%20boiler%20%20hall%20&page=3&status=on")
    assert listing.sort == "-count" and listing.descending
    assert listing.q == "boiler hall"  # whitespace collapsed
    assert listing.kept == {"status": "on"}  # page is the list's own: dropped
    assert listing.state == "status=on&sort=-count&q=boiler+hall"
    # The column sorted by flips; another column sorts ascending first.
    assert listing.headers["count"].url.endswith("sort=count&q=boiler+hall")
    assert listing.headers["count"].aria_sort == "descending"
    assert listing.headers["name"].aria_sort == "none"
    assert "sort=name" in listing.headers["name"].url


@pytest.mark.parametrize("sort", ["password", "-name;drop", "--name", "-"])
def test_an_unknown_sort_keeps_the_default_order(sort: str) -> None:
    listing = _listing(f"sort={sort}")
    assert listing.sort == "name"
    assert "sort" not in listing.state


def _names(html: str, pattern: str) -> list[str]:
    return [unescape(name) for name in re.findall(pattern, html)]


@pytest.fixture
def plant() -> dict[str, Any]:
    operator = make_user("oscar")
    product = make_product("Plant", operator=operator)
    return {"operator": operator, "product": product}


def _broker_names(html: str) -> list[str]:
    return _names(html, r'<a href="/brokers/\d+/">([^<]+)</a>')


def test_brokers_sort_by_column_and_search(plant: dict[str, Any]) -> None:
    product = plant["product"]
    make_broker(product, name="Bravo", host="b.example", via_service=False)
    make_broker(product, name="alpha", host="a.example", via_service=False)
    make_broker(product, name="Charlie", host="c.plant", via_service=False)
    make_broker(make_product("Other"), name="Alien", via_service=False)
    client = logged_in(plant["operator"], product)
    assert _broker_names(client.get("/brokers/").content.decode()) == [
        "alpha",
        "Bravo",
        "Charlie",
    ]
    html = client.get("/brokers/?sort=-name").content.decode()
    assert _broker_names(html) == ["Charlie", "Bravo", "alpha"]
    assert 'aria-sort="descending"' in html
    html = client.get("/brokers/?sort=-address&q=example").content.decode()
    assert _broker_names(html) == ["Bravo", "alpha"]
    assert 'value="example"' in html  # the search box keeps the search
    # A header or the search (HTMX, aimed at the table) gets the table only; the
    # poll (aimed at the body) gets the rows, in the same order.
    table = client.get("/brokers/?q=a.ex", **htmx_swap("broker-table")).content.decode()
    assert table.startswith('<div id="broker-table"') and "<html" not in table
    assert _broker_names(table) == ["alpha"]
    assert 'hx-get="/brokers/?q=a.ex"' in table  # the poll keeps the search
    rows = client.get(
        "/brokers/?sort=-name", **htmx_swap("broker-rows")
    ).content.decode()
    assert rows.strip().startswith('<tbody id="broker-rows"')
    assert _broker_names(rows) == ["Charlie", "Bravo", "alpha"]
    html = client.get("/brokers/?q=nothing-like-it").content.decode()
    assert "No broker matches the search." in html


def _subscription_names(html: str) -> list[str]:
    return _names(html, r'<td class="name">([^<]+)')


def test_subscriptions_sort_search_and_keep_both_after_a_toggle(
    plant: dict[str, Any],
) -> None:
    broker = make_broker(plant["product"], via_service=False)
    for name, topic_filter, received in (
        ("Boilers", "plant/boiler/#", 5),
        ("Alarms", "plant/alarm/#", 50),
        ("Pumps", "plant/pump/#", 0),
    ):
        make_subscription(broker, name=name, topic_filter=topic_filter)
        Subscription.objects.filter(name=name).update(messages_received=received)
    client = logged_in(plant["operator"], plant["product"])
    url = f"/brokers/{broker.pk}/?tab=subscriptions"
    assert _subscription_names(client.get(url).content.decode()) == [
        "Alarms",
        "Boilers",
        "Pumps",
    ]
    html = client.get(f"{url}&sort=-received").content.decode()
    assert _subscription_names(html) == ["Alarms", "Boilers", "Pumps"]
    html = client.get(f"{url}&sort=received").content.decode()
    assert _subscription_names(html) == ["Pumps", "Boilers", "Alarms"]
    table = htmx_swap("subscription-table")
    html = client.get(f"{url}&q=PUMP", **table).content.decode()
    assert "<html" not in html and _subscription_names(html) == ["Pumps"]
    # The toggle posts with the list's state: the table it answers keeps it.
    pumps = Subscription.objects.get(name="Pumps")
    state = re.search(
        rf'hx-post="(/brokers/{broker.pk}/subscriptions/{pumps.pk}/[^"]*toggle[^"]*)"',
        html,
    )
    assert state is not None and "q=PUMP" in unescape(state.group(1))
    answer = client.post(unescape(state.group(1)), **table)
    assert _subscription_names(answer.content.decode()) == ["Pumps"]


def test_devices_search_and_sort(plant: dict[str, Any]) -> None:
    product = plant["product"]
    broker = make_broker(product, via_service=False)
    make_device(product, broker, "boiler-1", name="Boiler one", type="boiler")
    make_device(product, broker, "boiler-2", name="Boiler two", type="boiler")
    make_device(product, broker, "pump-1", name="Pump", type="pump")
    client = logged_in(plant["operator"], product)
    html = client.get("/devices/?q=boiler&sort=-id").content.decode()
    names = _names(html, r'<a href="/devices/\d+/"><strong>([^<]+)</strong>')
    assert names == ["Boiler two", "Boiler one"]
    assert 'value="boiler"' in html
    html = client.get("/devices/?q=nothing-like-it").content.decode()
    assert "No device matches the search." in html


def test_audit_search_sort_and_pages_keep_them(plant: dict[str, Any]) -> None:
    admin = make_user("ada")
    product = make_product("Audited", admin=admin)
    broker = make_broker(product, via_service=False)
    for index in range(60):
        audit_record(actor=admin, action=f"broker.step{index:02d}", target=broker)
    audit_record(actor=admin, action="device.create", target=broker)
    client = logged_in(admin, product)
    html = client.get("/audit/?q=broker.step&sort=action").content.decode()
    actions = re.findall(r"<code>(broker\.step\d\d|device\.create)</code>", html)
    assert actions == [f"broker.step{index:02d}" for index in range(50)]
    older = re.search(r'<a href="([^"]+)"[^>]*rel="next"', html)
    assert older is not None
    page_two = client.get(unescape(older.group(1))).content.decode()
    actions = re.findall(r"<code>(broker\.step\d\d|device\.create)</code>", page_two)
    assert actions == [f"broker.step{index:02d}" for index in range(50, 60)]


def test_a_search_never_reaches_other_products(plant: dict[str, Any]) -> None:
    make_broker(make_product("Other"), name="Secret", via_service=False)
    client = logged_in(plant["operator"], plant["product"])
    html = client.get("/brokers/?q=Secret").content.decode()
    assert "Secret" not in _broker_names(html)
    assert Broker.objects.filter(name="Secret").exists()
