"""Browser tests: Debian's Chromium driven by Playwright against the portal served
by a real Daphne (HTTP and WebSockets) in this process, with the MQTT runtime in
the same process, as `manage.py serve` runs them.

Daphne's Twisted reactor runs once per process, so the server is session-wide;
each test gets a fresh database (transactional) and its own runtime. Screenshots
go to test-artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from runtime.manager import Runtime
from tests.runtime_support import wait_until  # noqa: F401 (used by the tests)
from tests.services import free_port, missing, wait_for_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"
# Bounded waits for what the page shows (not performance assertions).
UI_TIMEOUT_MS = 15_000


@pytest.fixture(scope="session")
def asgi_server() -> Iterator[str]:
    """The ASGI application under Daphne on a free loopback port."""
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server
    from twisted.internet import reactor

    from mqttadmin.asgi import application

    port = free_port()
    server = Server(
        application=application,
        endpoints=build_endpoint_description_strings(host="127.0.0.1", port=port),
        signal_handlers=False,
        action_logger=None,
        verbosity=0,
    )
    thread = threading.Thread(target=server.run, name="test-daphne", daemon=True)
    thread.start()
    wait_for_port(port, timeout=15)
    yield f"http://127.0.0.1:{port}"
    # twisted types `reactor` as its placeholder module, not the reactor running.
    running: Any = reactor
    running.callFromThread(running.stop)
    thread.join(10)


@pytest.fixture
def runtime(sqlite_readers_do_not_wait: None) -> Iterator[Runtime]:
    started = Runtime("browser-test", poll_interval=0.2)
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def _playwright(django_db_setup: Any) -> Iterator[Any]:
    """Playwright's sync API keeps an event loop running in this thread while it
    lives; Django then refuses ORM calls here unless told they are safe, which they
    are (the test's queries never run on that loop). Set for the browser modules
    only, from after the test database exists until Playwright stops."""
    if not CHROMIUM.exists():
        missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            yield playwright


@pytest.fixture(scope="module")
def chromium(_playwright: Any) -> Iterator[Any]:
    browser = _playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@pytest.fixture
def browser_page(
    chromium: Any,
    asgi_server: str,
    sqlite_readers_do_not_wait: None,
) -> Iterator[Any]:
    """A fresh browser context (no cookies) whose relative URLs go to the server."""
    context = chromium.new_context(
        base_url=asgi_server, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    yield page
    context.close()


def log_in(page: Any, username: str, password: str) -> None:
    """Through the login form, as a person would."""
    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def journey(
    chromium: Any,
    asgi_server: str,
    sqlite_readers_do_not_wait: None,
    request: pytest.FixtureRequest,
    settings: Any,
) -> Iterator[Any]:
    """A fresh browser context at desktop width wrapped in a `Journey`: each
    `step` checks the whole page, console and requests, and screenshots it at
    1,440 and 390 px into test-artifacts/journeys/<test name>/.

    Background work (webhook calls, device imports) runs on this process's
    threads, as in the embedded install: with REDIS_URL set it would wait for a
    Celery worker this suite does not start for browser tests (the worker's own
    path is tested in tests/actions/test_actions_worker.py)."""
    from tests.browser.journey import DESKTOP, Journey

    settings.CELERY_TASK_ALWAYS_EAGER = True

    context = chromium.new_context(base_url=asgi_server, viewport=DESKTOP)
    context.set_default_timeout(UI_TIMEOUT_MS)
    walk = Journey(page=context.new_page(), name=request.node.name)
    yield walk
    context.close()


@pytest.fixture
def other_browser(
    chromium: Any, asgi_server: str, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Any]]:
    """`other_browser("phone")`: a `Journey` in a fresh context (its own cookies),
    for a second person or device in the same test."""
    from tests.browser.journey import Journey

    contexts: list[Any] = []

    def open_one(label: str) -> Journey:
        context = chromium.new_context(base_url=asgi_server)
        context.set_default_timeout(UI_TIMEOUT_MS)
        contexts.append(context)
        return Journey(page=context.new_page(), name=f"{request.node.name}-{label}")

    yield open_one
    for context in contexts:
        context.close()
