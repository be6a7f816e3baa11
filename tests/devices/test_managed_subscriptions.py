"""A device's telemetry and availability subscriptions are kept in step by the
device: the subscription tables say so and link to it, and offer no Edit or Delete;
editing or deleting one by its address changes nothing and says why."""

from __future__ import annotations

import re

import pytest

from brokers.models import Subscription
from tests.clients import HTMX_LOCATION, htmx_swap, logged_in
from tests.factories import make_broker, make_device, make_subscription
from tests.mqttadmin.test_page_or_fragment import location_path

pytestmark = pytest.mark.django_db


def _row(html: str, pk: int) -> str:
    match = re.search(rf'<tr id="subscription-{pk}">(.*?)</tr>', html, re.DOTALL)
    assert match, f"no row for subscription {pk}"
    return match.group(1)


def test_the_tab_links_device_subscriptions_to_their_device(world: dict) -> None:
    broker = make_broker(world["product"])
    device = make_device(
        world["product"], broker, "d1", name="Boiler", availability_topic="plant/d1/s"
    )
    own = make_subscription(broker, name="Mine", topic_filter="mine/#")
    client = logged_in(world["users"]["operator"])
    html = client.get(f"/brokers/{broker.pk}/?tab=subscriptions").content.decode()
    managed = [device.telemetry_subscription_id, device.availability_subscription_id]
    for pk in managed:
        assert pk is not None
        row = _row(html, pk)
        assert f'href="/devices/{device.pk}/">Boiler</a>' in row
        assert "Managed by the device" in row
        assert "/edit/" not in row and "Delete" not in row
    assert "/edit/" in _row(html, own.pk) and "Delete" in _row(html, own.pk)
    # The Overview's list too.
    overview = client.get(f"/brokers/{broker.pk}/").content.decode()
    assert f'href="/devices/{device.pk}/">Boiler</a>' in overview


def test_editing_or_deleting_a_device_subscription_is_refused(world: dict) -> None:
    broker = make_broker(world["product"])
    device = make_device(world["product"], broker, "d1", name="Boiler")
    sid = device.telemetry_subscription_id
    assert sid is not None
    before = Subscription.objects.get(pk=sid)
    client = logged_in(world["users"]["operator"])
    base = f"/brokers/{broker.pk}/subscriptions/{sid}"
    for method, url in (
        ("get", f"{base}/edit/"),
        ("post", f"{base}/edit/"),
        ("post", f"{base}/tab-delete/"),
        ("post", f"{base}/delete/"),
    ):
        answer = getattr(client, method)(url, **htmx_swap("subscription-table"))
        assert answer.status_code == 200
        page = client.get(location_path(answer), **HTMX_LOCATION).content.decode()
        assert "is managed by the device" in page
        assert f'<a href="/devices/{device.pk}/">Boiler</a>' in page
    after = Subscription.objects.get(pk=sid)
    assert (after.name, after.topic_filter) == (before.name, before.topic_filter)
