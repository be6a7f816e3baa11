"""The one way the portal pushes live frames to browsers and runtimes.

Services, the runtime and its live feed send through `group_send` (at most once,
never raising: live push is best effort by design, and a page re-syncs from the
database). Group names are made here; the frame types and their TypedDicts are in
`mqttadmin.frames`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction
from redis.exceptions import ConnectionError as RedisConnectionError

from mqttadmin.frames import RUNTIME_NUDGE, frame

logger = logging.getLogger(__name__)

# Every runtime joins this group: nudges to reconcile now.
RUNTIME_GROUP = "mqtt.runtime"


def broker_group(broker_id: int) -> str:
    """The group of one broker's pages (status, live messages, clients)."""
    return f"broker.{broker_id}"


def session_group(session_key: str) -> str:
    """The group of one login session's sockets (closed on logout)."""
    digest = hashlib.sha256(session_key.encode()).hexdigest()[:40]
    return f"session.{digest}"


_web_loop: asyncio.AbstractEventLoop | None = None


def register_web_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Remember the event loop the consumers of this process run on.

    The in-memory layer keeps asyncio queues bound to that loop: sending from
    another thread's loop would not wake it (the frame waits for the next unrelated
    event) and is not thread-safe. Consumers call this when they connect.
    """
    global _web_loop
    _web_loop = loop


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def group_send(group: str, message: dict[str, Any], timeout: float = 2.0) -> None:
    """Send from a plain thread (the runtime's), at most once, never raising."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        loop = _web_loop
        if (
            isinstance(layer, InMemoryChannelLayer)
            and loop is not None
            and loop.is_running()
        ):
            if _running_loop() is loop:
                # Called on the loop itself: waiting for the result would hang it.
                loop.create_task(layer.group_send(group, message))
                return
            future = asyncio.run_coroutine_threadsafe(
                layer.group_send(group, message), loop
            )
            future.result(timeout)
        elif _running_loop() is None:
            # A loop of this thread's own, kept: async_to_sync would make a new
            # loop per call, and channels-redis a new connection pool per loop,
            # so every frame would pay for a fresh Redis connection.
            _send_on_thread_loop(layer, group, message, timeout)
        else:
            async_to_sync(layer.group_send)(group, message)
    except Exception:
        logger.warning("live push to %s failed", group, exc_info=True)


_local = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    return loop


def _send_on_thread_loop(
    layer: Any, group: str, message: dict[str, Any], timeout: float
) -> None:
    loop = _thread_loop()
    try:
        loop.run_until_complete(
            asyncio.wait_for(layer.group_send(group, message), timeout)
        )
    except RedisConnectionError:
        # The kept loop keeps its pooled connections: after Redis restarted, the
        # first command on one finds it closed (and the pool drops it). Once more
        # on a fresh connection, or every thread would lose its first frame or
        # nudge after a restart. A Redis that is down fails this try as well.
        loop.run_until_complete(
            asyncio.wait_for(layer.group_send(group, message), timeout)
        )


def broadcast_on_commit(group: str, message: dict[str, Any]) -> None:
    """`group_send` once the current transaction commits (never a frame about
    something that was rolled back)."""
    transaction.on_commit(lambda: group_send(group, message))


def runtime_nudge() -> None:
    """Tell runtimes to reconcile now, once the current transaction commits.

    Best effort: the runtime reconciles on a timer too, so a lost nudge only costs
    latency.
    """
    broadcast_on_commit(RUNTIME_GROUP, frame(RUNTIME_NUDGE))
