"""Reads for the overview page and its live fragments, across the apps a user can see.

The page and the WebSocket consumer render the same partials from the same data:
`overview_for` builds the page's context, `overview_fragments` the out-of-band
fragments the consumer sends when something changed.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.template.loader import render_to_string
from django.utils import timezone

from alerts.models import Alert, AlertState
from alerts.selectors import alerts_for, with_subject_links
from brokers.models import Broker, BrokerStatus
from brokers.selectors import BrokerWithStatus, brokers_for, status_of
from devices import selectors as device_selectors
from devices import selectors as devices_selectors
from devices.models import Device
from history.models import StoredMessage
from mqttadmin.models import Product
from mqttadmin.roles import Role

OVERVIEW_DEVICES = 24
# The throughput chart opens on the last hour from the history, a point a minute,
# and continues live with the overview socket's samples.
THROUGHPUT_HISTORY = datetime.timedelta(hours=1)
THROUGHPUT_BUCKET_S = 60
# Live rates (broker cards, the chart's live part) average this many seconds.
RATE_WINDOW_S = 10.0
OVERVIEW_ALERTS = 10
# Device tiles re-rendered per live refresh, at most (the rest wait for the next).
LIVE_DEVICES = 100


@dataclass(frozen=True)
class BrokerHealth:
    """A broker's card: its status, connected clients and live message rate.

    `rate` (messages/s received by the portal) is None until the live feed measured
    it; `clients` counts the clients the broker's log announced (Clients tab).
    """

    broker: Broker
    status: BrokerStatus
    clients: int | None = None
    rate: float | None = None


def visible_broker_ids(user: Any, product: Product | None) -> set[int]:
    return set(brokers_for(user, product).values_list("pk", flat=True))


def broker_health(
    user: Any,
    product: Product | None,
    broker_ids: set[int] | None = None,
    rates: dict[int, float] | None = None,
) -> list[BrokerHealth]:
    """Health cards of the product's brokers the user sees (all, or `broker_ids`)."""
    brokers = brokers_for(user, product).annotate(clients=Count("connected_clients"))
    if broker_ids is not None:
        brokers = brokers.filter(pk__in=broker_ids)
    rates = rates or {}
    return [
        BrokerHealth(
            broker,
            status_of(broker),
            broker.clients,
            rates.get(broker.pk, 0.0) if rates or broker_ids is not None else None,
        )
        for broker in brokers
    ]


def overview_devices(
    user: Any, product: Product | None, broker_ids: set[int] | None = None
) -> list[Device]:
    if product is None:
        return []
    devices = device_selectors.devices_for(user, product)
    if broker_ids is not None:
        devices = devices.filter(broker_id__in=broker_ids)
        return list(devices[:LIVE_DEVICES])
    return list(devices[:OVERVIEW_DEVICES])


def open_alerts(user: Any, product: Product | None) -> list[Alert]:
    if product is None:
        return []
    return with_subject_links(
        alerts_for(user, product=product.pk, state=AlertState.OPEN)[:OVERVIEW_ALERTS]
    )


def throughput_history(
    broker_ids: set[int], now: datetime.datetime | None = None
) -> list[list[float]]:
    """Messages per second of each complete minute of the last hour, summed over
    the brokers, then of the current minute so far (once it is 5 s old):
    [[epoch seconds of the span's middle, rate], ...], oldest first, minutes
    without messages as 0.

    It counts the stored history (messages a subscription keeps; `$SYS` is not
    traffic), grouped by minute in SQL over the (broker, received_at) index: at
    most 60 rows leave the database. A complete minute does not change, so those
    are cached until the next minute starts; the current minute's count is read
    each time (under a minute of rows).
    """
    if not broker_ids:
        return []
    now = now or timezone.now()
    end = now.replace(second=0, microsecond=0)
    start = end - THROUGHPUT_HISTORY
    # A product may have many brokers; cache keys stay short (memcached: 250).
    brokers = hashlib.blake2b(
        ",".join(str(pk) for pk in sorted(broker_ids)).encode(), digest_size=12
    ).hexdigest()
    key = f"overview-throughput:{brokers}:{int(end.timestamp())}"
    counts: dict[int, int] | None = cache.get(key)
    if counts is None:
        rows = (
            StoredMessage.objects.filter(
                broker_id__in=broker_ids, received_at__gte=start, received_at__lt=end
            )
            .annotate(minute=TruncMinute("received_at"))
            .order_by()
            .values("minute")
            .annotate(n=Count("id"))
            .values_list("minute", "n")
        )
        counts = {int(minute.timestamp()): n for minute, n in rows}
        cache.set(key, counts, THROUGHPUT_BUCKET_S)
    first = int(start.timestamp())
    half = THROUGHPUT_BUCKET_S / 2
    points = [
        [at + half, round(counts.get(at, 0) / THROUGHPUT_BUCKET_S, 3)]
        for at in range(first, int(end.timestamp()), THROUGHPUT_BUCKET_S)
    ]
    elapsed = (now - end).total_seconds()
    if elapsed >= 5:
        current = StoredMessage.objects.filter(
            broker_id__in=broker_ids, received_at__gte=end, received_at__lte=now
        ).count()
        points.append([end.timestamp() + elapsed / 2, round(current / elapsed, 3)])
    return points


def overview_for(user: Any, product: Product | None) -> dict[str, Any]:
    """What the overview shows for `user`, centred on the current product."""
    products = Product.objects.for_user(user).order_by("name")
    devices = overview_devices(user, product)
    broker_cards = broker_health(user, product)
    return {
        "products": products,
        "product": product,
        # Health cards of the current product's brokers the user can see.
        "broker_cards": broker_cards,
        "throughput_history": throughput_history(
            {card.broker.pk for card in broker_cards}
        ),
        "tiles": devices_selectors.device_tiles(devices),
        "device_count": (
            device_selectors.devices_for(user, product).count() if product else 0
        ),
        "alerts": open_alerts(user, product),
        "can_add_broker": product is not None and product.allows(user, Role.OPERATOR),
    }


def overview_fragments(
    user: Any,
    product: Product | None,
    *,
    view: str,
    broker_ids: set[int],
    device_broker_ids: set[int] | None,
    alerts: bool,
    rates: dict[int, float],
    csrf_token: str,
    throughput: float | None,
) -> str:
    """Out-of-band fragments for a live page (`view`: overview, brokers, devices):
    the named brokers' cards or rows, the tiles of devices on `device_broker_ids`
    (None: all), the open alerts, and a throughput sample for the chart."""
    if product is None:
        return ""
    parts: list[str] = []
    context = {"oob": True, "csrf_token": csrf_token}
    if broker_ids and view in ("overview", "brokers"):
        can_operate = product.allows(user, Role.OPERATOR)
        for row in broker_health(user, product, broker_ids, rates):
            if view == "overview":
                parts.append(
                    render_to_string(
                        "brokers/partials/broker_card.html", {**context, "row": row}
                    )
                )
            else:
                parts.append(
                    render_to_string(
                        "brokers/partials/broker_row.html",
                        {
                            **context,
                            "row": BrokerWithStatus(row.broker, row.status),
                            "can_operate": can_operate,
                        },
                    )
                )
    if view in ("overview", "devices") and (
        device_broker_ids is None or device_broker_ids
    ):
        devices = overview_devices(user, product, device_broker_ids)
        for tile in devices_selectors.device_tiles(devices):
            parts.append(
                render_to_string(
                    "devices/partials/tile.html", {**context, "tile": tile}
                )
            )
    if alerts and view == "overview":
        parts.append(
            render_to_string(
                "dashboard/partials/open_alerts.html",
                {**context, "alerts": open_alerts(user, product)},
            )
        )
    if throughput is not None and view == "overview":
        parts.append(
            render_to_string(
                "dashboard/partials/throughput_sample.html",
                {**context, "throughput": throughput},
            )
        )
    return "".join(parts)
