"""The live sockets' shared rules: the base every WebSocket consumer extends.

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
import datetime
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
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from mqttadmin.frames import SESSION_LOGOUT
from mqttadmin.lib.payloads import parse_json
from mqttadmin.realtime import (
    group_send,
    register_web_loop,
    session_group,
)
from mqttadmin.timezones import TIME_ZONE_COOKIE, zone_for

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
    # The zone the page was rendered in (`mqttadmin.timezones`): fragments this
    # socket sends write times as the page does.
    time_zone: datetime.tzinfo | None = None

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
        cookies = self.scope.get("cookies") or {}
        self.time_zone = await database_sync_to_async(zone_for)(
            user, cookies.get(TIME_ZONE_COOKIE)
        )
        # This message (the connect) began before the zone was known: joined()
        # renders the first fragments below, in it.
        timezone.activate(self.time_zone)
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
        # Fragments answer the page and the groups alike: write their times in
        # the zone the page was rendered in (set on connect).
        if self.time_zone is None:
            await self._dispatch(message)
            return
        with timezone.override(self.time_zone):
            await self._dispatch(message)

    async def _dispatch(self, message: dict[str, Any]) -> None:
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
