"""A user's journey through the portal in Chromium, held to what a person sees.

Every step checks the whole page is there (header, nav, title, main: never a bare
fragment swapped into `<body>`), that nothing was logged to the console as an
error, that no request failed, and screenshots it at a desktop and a phone width
into test-artifacts/journeys/<journey>/.

A request a step expects to be refused (a viewer's 403, a form's 422) is named
with `expect_status`; any other answer of 400 or above fails the step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

JOURNEYS = Path(settings.BASE_DIR) / "test-artifacts" / "journeys"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class Journey:
    """Wraps a Playwright page; `step` is called after each thing the user does."""

    page: Any
    name: str
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    expected: list[tuple[re.Pattern[str], int]] = field(default_factory=list)
    steps: int = 0

    def __post_init__(self) -> None:
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self.console_errors.append(str(error)))
        self.page.on("requestfailed", self._on_request_failed)
        self.page.on("response", self._on_response)

    def _on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        # Chromium logs "Failed to load resource" for each refused request; the
        # response handler judges those (expected or not), but it never sees
        # some (the favicon), so those are kept here.
        if message.text.startswith("Failed to load resource") and (
            self._expected(url) or any(url in line for line in self.failed_requests)
        ):
            return
        self.console_errors.append(f"{message.text} ({url})")

    def _expected(self, url: str, status: int | None = None) -> bool:
        return any(
            pattern.search(url) and status in (None, expected_status)
            for pattern, expected_status in self.expected
        )

    def _on_request_failed(self, request: Any) -> None:
        failure = request.failure or ""
        # A navigation away aborts what the old page still had in flight
        # (an SSE or a poll); that is the browser's doing, not a fault.
        if "ERR_ABORTED" in failure:
            return
        self.failed_requests.append(f"{request.method} {request.url}: {failure}")

    def _on_response(self, response: Any) -> None:
        if response.status < 400:
            return
        if self._expected(response.url, response.status):
            return
        self.failed_requests.append(
            f"{response.request.method} {response.url}: {response.status}"
        )

    def expect_status(self, url_pattern: str, status: int) -> None:
        """Answers with this status from matching URLs are part of the journey."""
        self.expected.append((re.compile(url_pattern), status))

    def goto(self, url: str, title: str | None = None) -> None:
        self.page.goto(url)
        self.step(url.strip("/").replace("/", "-") or "home", title=title)

    def step(self, label: str, title: str | None = None) -> None:
        """The page as a whole is there, with no error so far; screenshots it."""
        page = self.page
        page.wait_for_load_state("load")
        # Let htmx finish what the step started before looking.
        page.wait_for_function(
            "() => !document.querySelector('.htmx-request')", timeout=15_000
        )
        page.locator("header.topbar nav").wait_for()
        assert page.locator("main").count() == 1, f"{label}: no single <main>"
        page_title = page.title()
        assert page_title.endswith("MQTT Admin"), f"{label}: title {page_title!r}"
        if title is not None:
            assert title in page_title, f"{label}: title {page_title!r}, not {title!r}"
        self.steps += 1
        self._screenshot(f"{self.steps:02d}-{_slug(label)}")
        self.assert_clean(label)

    def assert_clean(self, label: str = "end") -> None:
        assert not self.console_errors, f"{label}: console errors {self.console_errors}"
        assert not self.failed_requests, f"{label}: failed {self.failed_requests}"

    def _screenshot(self, stem: str) -> None:
        folder = JOURNEYS / self.name
        folder.mkdir(parents=True, exist_ok=True)
        page = self.page
        for width_name, size in (("1440", DESKTOP), ("390", PHONE)):
            page.set_viewport_size(size)
            shot = folder / f"{stem}-{width_name}.png"
            page.screenshot(path=str(shot), full_page=True)
            # Wide tables may scroll inside their own box; the page never does.
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            if overflow > 1:
                wide = page.evaluate(
                    "() => [...document.querySelectorAll('body *')]"
                    ".filter(e => e.getBoundingClientRect().right > innerWidth + 1)"
                    ".slice(0, 5).map(e => e.outerHTML.slice(0, 80))"
                )
                raise AssertionError(f"{stem}: sideways at {width_name}: {wide}")
        page.set_viewport_size(DESKTOP)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "step"
