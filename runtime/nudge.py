"""The nudge listener: wakes the reconcile loop when a service changed desired state.

Services send {"type": "runtime.nudge"} to the RUNTIME_GROUP after their commit.
The listener is a thread with its own asyncio loop that joins the group on a new
channel. Losing a nudge only costs a poll interval, so errors are logged and
retried with backoff, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from redis.exceptions import TimeoutError as RedisTimeoutError

from mqttadmin.frames import RUNTIME_NUDGE
from mqttadmin.realtime import RUNTIME_GROUP

logger = logging.getLogger(__name__)

# The loop wakes this often even without traffic: the in-memory layer hands
# messages over from other threads without waking this loop (asyncio.Queue is
# not thread-safe), and the stop flag is a threading.Event.
TICK = 0.1
# Group membership expires (group_expiry, a day by default): join again regularly.
REJOIN_EVERY = 60.0
MAX_BACKOFF = 30.0


def listener_layer() -> Any:
    """The layer to listen on.

    The in-memory layer only reaches this process's own instance, so share it. Any
    other layer gets a private instance: channels-redis lets one instance receive
    on one event loop only, and the web server's consumers use the shared one.
    """
    shared = get_channel_layer()
    if shared is None or isinstance(shared, InMemoryChannelLayer):
        return shared
    return channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)


class NudgeListener:
    """Calls `wake` for every runtime nudge until `stop`."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.joined = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="mqtt-runtime-nudge", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the nudge listener did not stop in %ss", timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except Exception:
            logger.exception("the nudge listener stopped on an error")
        finally:
            loop.close()

    async def _main(self) -> None:
        layer = listener_layer()
        if layer is None:
            logger.info("no channel layer: the runtime reconciles on its timer only")
            return
        backoff = 1.0
        try:
            while not self._stopping.is_set():
                channel = ""
                try:
                    channel = await layer.new_channel()
                    await layer.group_add(RUNTIME_GROUP, channel)
                    self.joined.set()
                    backoff = 1.0
                    await self._listen(layer, channel)
                except Exception:
                    self.joined.clear()
                    logger.warning(
                        "runtime nudges unavailable; retrying in %.0fs",
                        backoff,
                        exc_info=True,
                    )
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                finally:
                    if channel:
                        with contextlib.suppress(Exception):
                            await layer.group_discard(RUNTIME_GROUP, channel)
        finally:
            close_pools = getattr(layer, "close_pools", None)
            if close_pools is not None:
                with contextlib.suppress(Exception):
                    await close_pools()

    async def _listen(self, layer: Any, channel: str) -> None:
        receiving: asyncio.Task[Any] | None = None
        joined_at = time.monotonic()
        try:
            while not self._stopping.is_set():
                if receiving is None:
                    receiving = asyncio.ensure_future(layer.receive(channel))
                done, _pending = await asyncio.wait({receiving}, timeout=TICK)
                if receiving in done:
                    task, receiving = receiving, None
                    try:
                        message = task.result()
                    except (TimeoutError, RedisTimeoutError):
                        # redis-py's default 5 s socket timeout can beat
                        # channels-redis's 5 s blocking pop on an idle channel:
                        # nothing is wrong, receive again.
                        logger.debug("idle receive timed out", exc_info=True)
                        continue
                    if message.get("type") == RUNTIME_NUDGE:
                        self._wake()
                if time.monotonic() - joined_at > REJOIN_EVERY:
                    await layer.group_add(RUNTIME_GROUP, channel)
                    joined_at = time.monotonic()
        finally:
            if receiving is not None:
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await receiving

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(TICK)
