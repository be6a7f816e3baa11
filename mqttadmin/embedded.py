"""Parts that run inside `manage.py serve` beside the web server.

Apps register a starter with `register(name, start)`; `start` receives the serve
options and returns a callable that stops what it started (or None when it decided
not to run). Keeping the list here lets `serve` stay ignorant of brokers and demos.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedOptions:
    local_broker: bool = True
    demo: bool = True
    runtime: bool = True
    stdout: Any = None

    def say(self, message: str) -> None:
        if self.stdout is not None:
            self.stdout.write(message)
        else:
            logger.info(message)


Stopper = Callable[[], None]
Starter = Callable[[EmbeddedOptions], Stopper | None]

_starters: list[tuple[str, Starter]] = []
_running: list[tuple[str, Stopper]] = []


def register(name: str, start: Starter) -> None:
    """Add a part started by `serve`, in registration order."""
    if all(existing != name for existing, _ in _starters):
        _starters.append((name, start))


def start_all(options: EmbeddedOptions) -> None:
    for name, start in _starters:
        stop = start(options)
        if stop is not None:
            _running.append((name, stop))


def stop_all() -> None:
    """Stop in reverse order of start; one failing stop does not keep others up."""
    while _running:
        name, stop = _running.pop()
        try:
            stop()
        except Exception:
            logger.exception("stopping %s failed", name)
