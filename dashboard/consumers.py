"""WebSocket consumers: the shared rules, and the product overview feed.

Every consumer checks the user's login and role before accepting (otherwise it
accepts and closes at once with 4403, so the browser sees why and does not
reconnect), re-checks them on every request of the page and, at most once a second,
on the server's own frames. A logged-out session's sockets are closed: logging out
sends to the session's group, and the periodic re-check finds sessions that ended
any other way (expiry, flush). Group names are built from ids the server looked up,
never from what the client sent.

Frames to the browser are HTML fragments with `hx-swap-oob`, rendered from the same
partial templates the pages include, so there is one rendering path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
)
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from dashboard import selectors
from mqttadmin.frames import SESSION_LOGOUT
from mqttadmin.lib.payloads import parse_json
from mqttadmin.models import Product
from mqttadmin.realtime import (
    broker_group,
    group_send,
    register_web_loop,
    session_group,
)

logger = logging.getLogger(__name__)

# Closed for a missing login, a lost membership or a role too low: like HTTP 403.
CLOSE_FORBIDDEN = 4403
# How often server-pushed frames re-check the session and membership.
RECHECK_EVERY = 1.0
LOGOUT_EVENT = SESSION_LOGOUT
# A page's request frame larger than this is refused unread.
MAX_REQUEST_BYTES = 4096


def close_session_sockets(session_key: str | None) -> None:
    """Ask every socket of this session to close (on logout)."""
    if session_key:
        group_send(session_group(session_key), {"type": LOGOUT_EVENT})


def on_user_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """`user_logged_out` receiver (connected in DashboardConfig.ready)."""
    session = getattr(request, "session", None)
    close_session_sockets(getattr(session, "session_key", None))


def _session_user_valid(session_key: str | None, user_id: int) -> bool:
    """Whether the session still logs in this (active) user, as Django's own
    `get_user` would decide: same user id, same password hash, still active."""
    if not session_key:
        return False
    engine = import_string(settings.SESSION_ENGINE)
    data = engine.SessionStore(session_key=session_key).load()
    if str(data.get(SESSION_KEY, "")) != str(user_id):
        return False
    if BACKEND_SESSION_KEY not in data:
        return False
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    session_hash = data.get(HASH_SESSION_KEY) or ""
    return constant_time_compare(session_hash, user.get_session_auth_hash())


class LiveConsumer(AsyncWebsocketConsumer):
    """The checks every live socket shares; subclasses authorise and join groups."""

    session_key: str | None = None
    user_id: int | None = None

    async def connect(self) -> None:
        register_web_loop(asyncio.get_running_loop())
        self._checked_at = 0.0
        self._closed = False
        user = self.scope.get("user")
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None)
        if user is None or not user.is_authenticated or not self.session_key:
            await self._refuse()
            return
        self.user_id = user.pk
        if not await self.authorize():
            await self._refuse()
            return
        await self.channel_layer.group_add(
            session_group(self.session_key), self.channel_name
        )
        await self.accept()
        await self.joined()

    async def _refuse(self) -> None:
        # Accept first: a refused handshake reaches the browser as a bare 1006.
        await self.accept()
        await self.close(code=CLOSE_FORBIDDEN)
        self._closed = True

    async def disconnect(self, code: int) -> None:
        if self.session_key and self.channel_layer is not None:
            await self.channel_layer.group_discard(
                session_group(self.session_key), self.channel_name
            )
        await self.left()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Every message of the socket and of its groups comes through here.

        A group frame this consumer has no handler for is ignored (logged at
        debug): Channels would raise and close the socket with 1011, and every
        group carries frames meant for other pages (`mqttadmin.frames`). A
        handler that fails on one frame loses that frame, not the socket: live
        push is at most once and the page re-syncs.
        """
        kind = str(message.get("type", ""))
        if kind.startswith("websocket."):
            await super().dispatch(message)
            return
        try:
            name = get_handler_name(message)
        except ValueError:
            name = ""
        if not name or not callable(getattr(self, name, None)):
            logger.debug("%s ignores %r frames", type(self).__name__, kind)
            return
        try:
            await super().dispatch(message)
        except Exception:
            logger.exception(
                "%s could not handle a %r frame", type(self).__name__, kind
            )

    async def receive(
        self, text_data: str | None = None, bytes_data: Any = None
    ) -> None:
        if self._closed:
            return
        # Every request of the page re-checks the session and the role first.
        if not await self.still_allowed(force=True):
            return
        if text_data is None or len(text_data) > MAX_REQUEST_BYTES:
            return
        parsed = parse_json(text_data)
        request = None if parsed is None else parsed.value
        if isinstance(request, dict):
            await self.handle_request(request)

    async def still_allowed(self, force: bool = False) -> bool:
        """Re-check login and membership (every call when `force`, else at most
        once per RECHECK_EVERY); close with 4403 when they are gone."""
        if self._closed:
            return False
        now = time.monotonic()
        if not force and now - self._checked_at < RECHECK_EVERY:
            return True
        self._checked_at = now
        valid = await database_sync_to_async(_session_user_valid)(
            self.session_key, self.user_id or 0
        )
        if valid:
            valid = await self.authorize()
        if not valid:
            await self.close_forbidden()
        return valid

    async def close_forbidden(self) -> None:
        if not self._closed:
            self._closed = True
            await self.close(code=CLOSE_FORBIDDEN)

    async def session_logout(self, event: dict[str, Any]) -> None:
        await self.close_forbidden()

    async def send_html(self, html: str) -> None:
        if html.strip() and not self._closed:
            await self.send(text_data=html)

    @property
    def csrf_token(self) -> str:
        """The page's CSRF secret, for forms inside re-rendered fragments."""
        cookies = self.scope.get("cookies") or {}
        return str(cookies.get(settings.CSRF_COOKIE_NAME, ""))

    # --- for subclasses -------------------------------------------------------

    async def authorize(self) -> bool:
        raise NotImplementedError

    async def joined(self) -> None:
        """Accepted: join groups and send the first sync."""

    async def left(self) -> None:
        """Closed: leave groups, stop timers."""

    async def handle_request(self, request: dict[str, Any]) -> None:
        """A JSON request the page sent (ws-send)."""


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
    """

    REFRESH = 1.0
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
        self._counts: dict[int, int] = {}
        self._rates: dict[int, float] = {}
        self._window_started = time.monotonic()
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
                elapsed = max(now - self._window_started, 1e-3)
                counts, self._counts = self._counts, {}
                self._window_started = now
                rates = {pk: n / elapsed for pk, n in counts.items()}
                # Cards whose rate changed, dropping to 0 included.
                changed = {
                    pk
                    for pk in set(rates) | set(self._rates)
                    if rates.get(pk, 0.0) != self._rates.get(pk, 0.0)
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
        self._counts[broker_id] = self._counts.get(broker_id, 0) + int(
            event.get("count", 0)
        )
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


__all__ = [
    "CLOSE_FORBIDDEN",
    "LiveConsumer",
    "OverviewConsumer",
    "close_session_sockets",
    "session_group",
]
