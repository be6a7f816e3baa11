"""The product overview's live feed (see mqttadmin.live for the rules every
socket follows)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from channels.db import database_sync_to_async

from dashboard import selectors
from dashboard.selectors import RATE_WINDOW_S
from mqttadmin.live import LiveConsumer
from mqttadmin.models import Product
from mqttadmin.realtime import (
    broker_group,
)

logger = logging.getLogger(__name__)


def _current_product(user: Any, session: Any) -> Product | None:
    """The product the pages show (as CurrentProductMiddleware picks it)."""
    from mqttadmin.middleware import SESSION_PRODUCT_KEY

    visible = Product.objects.for_user(user)
    product_id = session.get(SESSION_PRODUCT_KEY) if session is not None else None
    product = visible.filter(pk=product_id).first() if product_id else None
    return product or visible.order_by("name").first()


class OverviewConsumer(LiveConsumer):
    """`ws/overview/?view=overview|brokers|devices`: the current product's broker
    states and counters, device tiles and open alerts, for the page that asked.

    Status frames re-render at once; message traffic is summed and shown at most
    once per REFRESH seconds (rates, tiles), alerts every ALERTS_EVERY seconds.

    A rate is the messages of the last RATE_WINDOW seconds over that window (over
    the time since the socket opened, while that is shorter): the live feed sends
    a broker's messages in frames of up to ten a second, so counting one second
    at a time flips between 0 and a burst.
    """

    REFRESH = 1.0
    RATE_WINDOW = RATE_WINDOW_S
    DEVICES_EVERY = 2.0
    ALERTS_EVERY = 5.0
    GROUPS_EVERY = 5.0

    async def authorize(self) -> bool:
        user = self.scope["user"]
        self.product, self.broker_ids = await database_sync_to_async(self._visible)(
            user
        )
        return True

    def _visible(self, user: Any) -> tuple[Product | None, set[int]]:
        product = _current_product(user, self.scope.get("session"))
        return product, selectors.visible_broker_ids(user, product)

    @property
    def view(self) -> str:
        query = self.scope.get("query_string", b"").decode("latin-1")
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if name == "view" and value in ("overview", "brokers", "devices"):
                return value
        return "overview"

    async def joined(self) -> None:
        self._groups: set[int] = set()
        await self._sync_groups()
        # (arrival time, broker id, messages) of the last RATE_WINDOW seconds.
        self._arrivals: deque[tuple[float, int, int]] = deque()
        self._rates: dict[int, float] = {}
        self._opened_at = time.monotonic()
        self._dirty_devices: set[int] = set()
        self._task = asyncio.ensure_future(self._ticker())
        await self.send_html(
            await database_sync_to_async(self._render_all)(self.scope["user"])
        )

    async def left(self) -> None:
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()
        for broker_id in getattr(self, "_groups", set()):
            await self.channel_layer.group_discard(
                broker_group(broker_id), self.channel_name
            )

    async def _sync_groups(self) -> None:
        for broker_id in self.broker_ids - self._groups:
            await self.channel_layer.group_add(
                broker_group(broker_id), self.channel_name
            )
        for broker_id in self._groups - self.broker_ids:
            await self.channel_layer.group_discard(
                broker_group(broker_id), self.channel_name
            )
        self._groups = set(self.broker_ids)

    async def _ticker(self) -> None:
        """Rates every REFRESH s; devices, alerts and the group list less often."""
        last = {"devices": 0.0, "alerts": time.monotonic(), "groups": 0.0}
        try:
            while not self._closed:
                await asyncio.sleep(self.REFRESH)
                now = time.monotonic()
                if now - last["groups"] >= self.GROUPS_EVERY:
                    last["groups"] = now
                    # Also the periodic session check: a logout ends the loop.
                    if not await self.still_allowed(force=True):
                        return
                    await self._sync_groups()
                rates = self._windowed_rates(now)
                # Cards whose shown rate (one decimal) changed, to 0 included.
                changed = {
                    pk
                    for pk in set(rates) | set(self._rates)
                    if round(rates.get(pk, 0.0), 1)
                    != round(self._rates.get(pk, 0.0), 1)
                }
                self._rates = rates
                devices = set()
                if now - last["devices"] >= self.DEVICES_EVERY:
                    last["devices"] = now
                    devices, self._dirty_devices = self._dirty_devices, set()
                alerts = now - last["alerts"] >= self.ALERTS_EVERY
                if alerts:
                    last["alerts"] = now
                html = await database_sync_to_async(self._render_tick)(
                    self.scope["user"], changed, devices, alerts
                )
                await self.send_html(html)
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("overview ticker stopped")

    def _windowed_rates(self, now: float) -> dict[int, float]:
        """Messages per second of each broker over the last RATE_WINDOW seconds."""
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] < now - self.RATE_WINDOW:
            arrivals.popleft()
        span = max(min(now - self._opened_at, self.RATE_WINDOW), self.REFRESH)
        counts: dict[int, int] = {}
        for _at, broker_id, count in arrivals:
            counts[broker_id] = counts.get(broker_id, 0) + count
        return {pk: n / span for pk, n in counts.items()}

    # --- group events ---------------------------------------------------------

    async def broker_status(self, event: dict[str, Any]) -> None:
        if not await self.still_allowed():
            return
        broker_id = event.get("broker_id")
        if broker_id not in self.broker_ids:
            return
        html = await database_sync_to_async(self._render_brokers)(
            self.scope["user"], {broker_id}
        )
        await self.send_html(html)

    async def broker_messages(self, event: dict[str, Any]) -> None:
        if not await self.still_allowed():
            return
        broker_id = event.get("broker_id")
        if broker_id not in self.broker_ids:
            return
        self._arrivals.append((time.monotonic(), broker_id, int(event.get("count", 0))))
        self._dirty_devices.add(broker_id)

    # --- rendering (sync, in a thread) ---------------------------------------

    def _render_all(self, user: Any) -> str:
        return selectors.overview_fragments(
            user,
            self.product,
            view=self.view,
            broker_ids=self.broker_ids,
            device_broker_ids=None,
            alerts=True,
            rates={},
            csrf_token=self.csrf_token,
            throughput=None,
        )

    def _render_brokers(self, user: Any, broker_ids: set[int]) -> str:
        return selectors.overview_fragments(
            user,
            self.product,
            view=self.view,
            broker_ids=broker_ids,
            device_broker_ids=set(),
            alerts=False,
            rates=self._rates,
            csrf_token=self.csrf_token,
            throughput=None,
        )

    def _render_tick(
        self, user: Any, changed: set[int], devices: set[int], alerts: bool
    ) -> str:
        return selectors.overview_fragments(
            user,
            self.product,
            view=self.view,
            broker_ids=changed,
            device_broker_ids=devices,
            alerts=alerts,
            rates=self._rates,
            csrf_token=self.csrf_token,
            throughput=sum(self._rates.values()),
        )
