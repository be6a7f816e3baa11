"""Helpers for the live (WebSocket) tests: sockets opened through the real ASGI
stack (origin check, cookies, sessions, auth) with a logged-in session."""

from __future__ import annotations

import time
from collections.abc import Callable

from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from tests.clients import logged_in as session_of  # noqa: F401 (re-exported)

ORIGIN = b"http://testserver"
FRAME_TIMEOUT = 5.0


def socket(
    path: str, client: Client | None = None, origin: bytes | None = ORIGIN
) -> WebsocketCommunicator:
    from mqttadmin.asgi import application

    headers = [(b"host", b"testserver")]
    if origin is not None:
        headers.append((b"origin", origin))
    if client is not None:
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def receive_until(
    communicator: WebsocketCommunicator,
    predicate: Callable[[str], bool],
    timeout: float = FRAME_TIMEOUT,
) -> str:
    """Frames until one satisfies `predicate`; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching frame in {timeout}s; got {seen!r}")
        try:
            frame = await communicator.receive_from(timeout=remaining)
            assert isinstance(frame, str)  # the consumers send text frames
        except TimeoutError:
            raise AssertionError(
                f"no matching frame in {timeout}s; got {seen!r}"
            ) from None
        if predicate(frame):
            return frame
        seen.append(frame[:300])


async def closed_with(communicator: WebsocketCommunicator) -> int | None:
    """The close code the server sent next, skipping frames before it."""
    deadline = time.monotonic() + FRAME_TIMEOUT
    while time.monotonic() < deadline:
        output = await communicator.receive_output(timeout=deadline - time.monotonic())
        if output["type"] == "websocket.close":
            return output.get("code")
    raise AssertionError("the socket was not closed")


async def frames_for(communicator: WebsocketCommunicator, seconds: float) -> list[str]:
    """Every frame that arrives within `seconds` (polled: a receive that times out
    would cancel the application)."""
    deadline = time.monotonic() + seconds
    frames: list[str] = []
    while time.monotonic() < deadline:
        if not await communicator.receive_nothing(timeout=0.05):
            frame = await communicator.receive_from(timeout=1)
            assert isinstance(frame, str)  # the consumers send text frames
            frames.append(frame)
    return frames
