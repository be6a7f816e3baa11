"""The overview: the throughput chart's stored hour, the windowed live rate, the
empty states and alert subjects that link to their device."""

from __future__ import annotations

import datetime
import json
import re
from collections import deque
from typing import Any

import pytest
from django.utils import timezone

from alerts.services import alert_open
from dashboard.consumers import OverviewConsumer
from dashboard.selectors import throughput_history
from devices.alerts import broker_rule_key
from history.models import StoredMessage
from tests.clients import logged_in
from tests.factories import make_broker, make_device

pytestmark = pytest.mark.django_db


def store(broker_id: int, at: datetime.datetime, count: int) -> None:
    StoredMessage.objects.bulk_create(
        StoredMessage(broker_id=broker_id, topic="t", text="1", received_at=at)
        for _ in range(count)
    )


def test_throughput_history_is_a_rate_per_complete_minute_of_the_last_hour(
    world: dict[str, Any],
) -> None:
    broker = make_broker(world["product"])
    other = make_broker(world["other"], name="Other")
    now = timezone.now().replace(second=40, microsecond=0)
    minute = now.replace(second=0)
    store(broker.pk, minute - datetime.timedelta(minutes=10, seconds=-5), 90)
    store(broker.pk, minute - datetime.timedelta(minutes=61), 600)  # too old
    store(broker.pk, minute + datetime.timedelta(seconds=10), 600)  # not complete
    store(other.pk, minute - datetime.timedelta(minutes=10), 600)  # not asked for

    points = throughput_history({broker.pk}, now=now)

    # Sixty complete minutes, then the 40 s of the current one, each at its middle.
    assert len(points) == 61
    assert points[0][0] == (minute - datetime.timedelta(hours=1)).timestamp() + 30
    assert points[-2][0] == (minute - datetime.timedelta(minutes=1)).timestamp() + 30
    assert points[-1] == [minute.timestamp() + 20, 15.0]  # 600 in 40 s
    rates = {at: rate for at, rate in points[:-1]}
    ten_ago = (minute - datetime.timedelta(minutes=10)).timestamp() + 30
    assert rates[ten_ago] == 1.5
    assert sum(rates.values()) == 1.5
    # Three seconds into a minute there is too little to say: no point yet.
    early = throughput_history({broker.pk}, now=minute.replace(second=3))
    assert len(early) == 60


def test_the_overview_page_carries_its_stored_hour(world: dict[str, Any]) -> None:
    broker = make_broker(world["product"])
    store(broker.pk, timezone.now() - datetime.timedelta(minutes=5), 60)
    html = logged_in(world["users"]["viewer"]).get("/").content.decode()
    data = re.search(
        r'<script id="throughput-history" type="application/json">(.*?)</script>', html
    )
    assert data is not None
    assert [rate for _at, rate in json.loads(data.group(1)) if rate] == [1.0]
    assert "msg/s, 10 s average" in html


def test_the_live_rate_is_the_last_ten_seconds_over_ten_seconds() -> None:
    consumer = OverviewConsumer()
    consumer._opened_at = 0.0
    consumer._arrivals = deque()
    # Bursts every half second: 3 messages, then nothing (as the feed's frames).
    for tick in range(40):
        if tick % 2 == 0:
            consumer._arrivals.append((tick * 0.5, 7, 3))
    assert consumer._windowed_rates(20.0) == {7: pytest.approx(3.0)}
    assert consumer._windowed_rates(20.5) == {7: pytest.approx(2.7)}
    # Early on, the rate is over the time the socket has been open.
    young = OverviewConsumer()
    young._opened_at = 0.0
    young._arrivals = deque([(0.5, 7, 3), (1.5, 7, 3)])
    assert young._windowed_rates(2.0) == {7: pytest.approx(3.0)}


def test_an_empty_product_guides_operators_and_tells_viewers(
    world: dict[str, Any],
) -> None:
    operator = logged_in(world["users"]["operator"]).get("/").content.decode()
    assert 'id="no-brokers"' in operator and 'href="/brokers/new/"' in operator
    viewer = logged_in(world["users"]["viewer"]).get("/").content.decode()
    assert 'id="no-brokers"' in viewer and "/brokers/new/" not in viewer
    assert "An operator of this product adds brokers" in viewer


def test_open_alerts_link_their_device_and_broker(world: dict[str, Any]) -> None:
    product = world["product"]
    broker = make_broker(product)
    device = make_device(product, broker, "boiler-1")
    alert_open(
        product_id=product.pk,
        key="rule:99",
        subject="boiler-1",
        message="hot",
    )
    alert_open(
        product_id=product.pk,
        key=broker_rule_key(broker.pk),
        subject=broker.name,
        message="down",
    )
    alert_open(product_id=product.pk, key="subscription:1:0", subject="x", message="")
    html = logged_in(world["users"]["viewer"]).get("/").content.decode()
    assert f'<a href="/devices/{device.pk}/">boiler-1</a>' in html
    assert f'<a href="/brokers/{broker.pk}/">{broker.name}</a>' in html
    page = logged_in(world["users"]["viewer"]).get("/alerts/").content.decode()
    assert f'<a href="/devices/{device.pk}/">boiler-1</a>' in page
    assert "<strong>x</strong>" in html  # no page known: no link


def test_an_other_products_device_of_the_same_id_is_not_linked(
    world: dict[str, Any],
) -> None:
    other_device = make_device(world["other"], make_broker(world["other"]), "d9")
    alert_open(product_id=world["product"].pk, key="rule:1", subject="d9", message="")
    html = logged_in(world["users"]["viewer"]).get("/").content.decode()
    assert f"/devices/{other_device.pk}/" not in html
