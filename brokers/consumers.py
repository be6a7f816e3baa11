"""`ws/brokers/<id>/`: a broker's status and its live messages, as HTML fragments.

The page asks for the feed with `{"action": "feed", "filter": "...", "paused":
false}` when its socket opens (also after a reconnect): the answer re-syncs the
feed from the history (the last LIVE_RESYNC stored messages matching the filter),
then live frames follow, newest first. Live push is at most once: a frame lost
while the socket was down is in the history, which the next re-sync shows.
A `{"action": "publish", ...}` request is a write and needs the operator role.
A page without the status block (every tab but Overview) opens the socket with
`?status=0`: pushing the block there would leave htmx with no target for it.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

from channels.db import database_sync_to_async
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

from brokers import selectors, services
from brokers.client import PublishError
from brokers.feed import LIVE_PREVIEW_CHARS, LiveRow, feed_history, topic_updates
from brokers.models import Broker
from brokers.tabs import render_live_tab
from mqttadmin.lib.topics import parse_topic_filter, topic_matches
from mqttadmin.live import LiveConsumer
from mqttadmin.realtime import broker_group
from mqttadmin.roles import Role

# Stored messages a (re)connecting feed starts from.
LIVE_RESYNC = 50
# The topic explorer's counts and last values: refreshed at most this often, for
# at most this many topics (those seen since the last refresh).
TOPICS_EVERY = 1.0
TOPICS_MAX = 200
# The Clients tab's table: re-rendered at most this often while clients come and go.
CLIENTS_EVERY = 0.2
# Overlap between refreshes: a batch committed late carries an earlier time.
TOPICS_OVERLAP = datetime.timedelta(seconds=2)


def render_live_rows(rows: list[LiveRow], swap: str) -> str:
    """The feed's rows, to put before the shown ones (`afterbegin`) or instead of
    them (`innerHTML`); the page includes the same partial."""
    return render_to_string(
        "brokers/partials/live_rows.html", {"live_rows": rows, "swap": swap}
    )


# The live publish box's fields by their labels: errors name what the user sees.
LIVE_PUBLISH_LABELS = {
    "topic": _l("Topic"),
    "payload": _l("Payload"),
    "qos": _l("QoS"),
    "retain": _l("Retain"),
}


def _live_label(field: str) -> str:
    """ "Topic: " for a field the box shows, "" for the request as a whole."""
    if field == NON_FIELD_ERRORS:
        return ""
    label = LIVE_PUBLISH_LABELS.get(field) or field.replace("_", " ").capitalize()
    return f"{label}: "


class BrokerConsumer(LiveConsumer):
    """One broker's live socket; viewers read, operators may also publish."""

    broker: Broker | None = None

    async def authorize(self) -> bool:
        broker_id = self.scope["url_route"]["kwargs"]["broker_id"]
        self.broker, self.role = await database_sync_to_async(self._lookup)(
            int(broker_id)
        )
        return self.broker is not None

    def _lookup(self, broker_id: int) -> tuple[Broker | None, Role | None]:
        # AuthMiddlewareStack's lazy proxy of the User (typed as the proxy).
        user: Any = self.scope["user"]
        broker = (
            Broker.objects.for_user(user)
            .select_related("product")
            .filter(pk=broker_id)
            .first()
        )
        if broker is None:
            return None, None
        return broker, broker.product.role_of(user)

    async def joined(self) -> None:
        assert self.broker is not None
        self.feed_on = False
        self.paused = False
        self.topic_filter = ""
        self.shown = 0
        self.skipped = 0
        self.not_shown = 0
        self.topics_on = False
        self.clients_on = False
        self._clients_task: asyncio.Future[None] | None = None
        self._topics_since = timezone.now()
        self._topics_sent_at = 0.0
        self._topics_task: asyncio.Future[None] | None = None
        # Group name from the row the server looked up, never from the client.
        self.group = broker_group(self.broker.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        if self.status_on:
            await self.send_html(await database_sync_to_async(self._render_status)())

    @property
    def status_on(self) -> bool:
        query = self.scope.get("query_string", b"").decode("latin-1")
        return "status=0" not in query.split("&")

    async def left(self) -> None:
        for name in ("_topics_task", "_clients_task"):
            task = getattr(self, name, None)
            if task is not None:
                task.cancel()
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    # --- requests of the page ---------------------------------------------------

    async def handle_request(self, request: dict[str, Any]) -> None:
        action = request.get("action")
        if action == "feed":
            await self._feed(request)
        elif action == "publish":
            await self._publish(request)
        elif action == "topics":
            # The topic explorer is open: keep its counts and last values current.
            self.topics_on = True
        elif action == "clients":
            # The Clients tab is open: push its table when clients come and go.
            self.clients_on = True
            await self._send_clients()

    async def _feed(self, request: dict[str, Any]) -> None:
        topic_filter = str(request.get("filter") or "").strip()
        if topic_filter:
            try:
                parsed = parse_topic_filter(topic_filter)
                if parsed.share_group:
                    raise ValidationError(_("A feed filter takes no $share prefix."))
            except ValidationError as exc:
                # Nothing changes: the feed keeps its previous filter.
                await self.send_html(
                    self._state_html(
                        error=_("Topic filter: %(rule)s")
                        % {"rule": " ".join(exc.messages)}
                    )
                )
                return
        self.topic_filter = topic_filter
        self.feed_on = True
        self.paused = bool(request.get("paused"))
        if self.paused:
            await self.send_html(self._state_html())
            return
        self.skipped = 0
        self.not_shown = 0
        rows = await database_sync_to_async(self._resync_rows)()
        self.shown = len(rows)
        await self.send_html(render_live_rows(rows, "innerHTML") + self._state_html())

    def _resync_rows(self) -> list[LiveRow]:
        assert self.broker is not None
        return feed_history(
            self.broker.pk, self.topic_filter, LIVE_RESYNC, LIVE_PREVIEW_CHARS
        )

    async def _publish(self, request: dict[str, Any]) -> None:
        if self.role is None or not self.role.allows(Role.OPERATOR):
            await self.send_html(
                self._publish_result(
                    error=_("Publishing needs the operator role in this product.")
                )
            )
            return
        html = await database_sync_to_async(self._do_publish)(request)
        await self.send_html(html)

    def _do_publish(self, request: dict[str, Any]) -> str:
        assert self.broker is not None
        try:
            qos = int(request.get("qos") or 0)
        except (TypeError, ValueError):
            return self._publish_result(error=_("QoS: must be 0, 1 or 2."))
        publish = services.PublishRequest(
            topic=str(request.get("topic") or ""),
            payload=str(request.get("payload") or ""),
            qos=qos,
            retain=str(request.get("retain") or "") in ("on", "true", "1"),
        )
        try:
            services.broker_publish(
                actor=self.scope["user"], broker=self.broker, requests=[publish]
            )
        except ValidationError as exc:
            return self._publish_result(
                error="; ".join(
                    f"{_live_label(field)}{' '.join(errors)}"
                    for field, errors in exc.message_dict.items()
                )
            )
        except PublishError as exc:
            return self._publish_result(error=str(exc))
        return self._publish_result(done=_("Published to %s.") % publish.topic)

    # --- group events -----------------------------------------------------------

    async def broker_status(self, event: dict[str, Any]) -> None:
        if not self.status_on or not await self.still_allowed():
            return
        await self.send_html(await database_sync_to_async(self._render_status)())

    async def broker_messages(self, event: dict[str, Any]) -> None:
        if not await self.still_allowed():
            return
        if self.topics_on and self._topics_task is None:
            delay = max(0.0, self._topics_sent_at + TOPICS_EVERY - time.monotonic())
            self._topics_task = asyncio.ensure_future(self._send_topics_later(delay))
        if not self.feed_on:
            return
        items = event.get("messages") or []
        if self.topic_filter:
            items = [i for i in items if topic_matches(self.topic_filter, i["topic"])]
            # The skipped count is the runtime's, before this page's filter.
            skipped = int(event.get("skipped", 0)) if items else 0
        else:
            skipped = int(event.get("skipped", 0))
        if self.paused:
            self.not_shown += len(items) + skipped
            await self.send_html(self._state_html())
            return
        if not items:
            return
        rows = [LiveRow.from_frame(item) for item in reversed(items)]
        self.shown += len(rows)
        self.skipped += skipped
        await self.send_html(render_live_rows(rows, "afterbegin") + self._state_html())

    async def broker_clients(self, event: dict[str, Any]) -> None:
        """Clients connected or left: re-render the table, at most every
        CLIENTS_EVERY seconds (a burst of connects is one frame)."""
        if not self.clients_on or self._clients_task is not None:
            return
        if not await self.still_allowed():
            return
        self._clients_task = asyncio.ensure_future(self._send_clients_later())

    async def _send_clients_later(self) -> None:
        try:
            await asyncio.sleep(CLIENTS_EVERY)
            await self._send_clients()
        finally:
            self._clients_task = None

    async def _send_clients(self) -> None:
        await self.send_html(await database_sync_to_async(self._render_clients)())

    def _render_clients(self) -> str:
        assert self.broker is not None
        current = Broker.objects.select_related("product").filter(pk=self.broker.pk)
        broker = current.first()
        if broker is None:
            return ""
        # The Clients tab's app renders its table (brokers.tabs).
        return render_live_tab(
            "clients", self.scope["user"], broker, csrf_token=self.csrf_token, oob=True
        )

    async def _send_topics_later(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            self._topics_sent_at = time.monotonic()
            await self.send_html(await database_sync_to_async(self._render_topics)())
        finally:
            self._topics_task = None

    # --- rendering --------------------------------------------------------------

    def _render_topics(self) -> str:
        """Counts and last values of the topics seen since the last refresh, as
        the Topics tab's tree shows them, swapped by id (brokers.feed)."""
        assert self.broker is not None
        since, self._topics_since = self._topics_since, timezone.now()
        return topic_updates(self.broker.pk, since - TOPICS_OVERLAP, TOPICS_MAX)

    def _render_status(self) -> str:
        assert self.broker is not None
        broker = Broker.objects.select_related("product").filter(pk=self.broker.pk)
        current = broker.first()
        if current is None:
            return ""
        can_operate = self.role is not None and self.role.allows(Role.OPERATOR)
        return render_to_string(
            "brokers/partials/status_block.html",
            {
                "broker": current,
                "status": selectors.status_of(current),
                "can_operate": can_operate,
                "csrf_token": self.csrf_token,
                "oob": True,
            },
        )

    def _state_html(self, error: str = "") -> str:
        return render_to_string(
            "brokers/partials/live_state.html",
            {
                "paused": self.paused,
                "topic_filter": self.topic_filter,
                "shown": self.shown,
                "skipped": self.skipped,
                "not_shown": self.not_shown,
                "error": error,
                "oob": True,
            },
        )

    def _publish_result(self, error: str = "", done: str = "") -> str:
        return render_to_string(
            "brokers/partials/live_publish_result.html",
            {"error": error, "done": done, "oob": True},
        )
