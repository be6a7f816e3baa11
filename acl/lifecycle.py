"""Reloading and restarting managed brokers.

A broker is reloaded or restarted by the first method that claims it:

1. Providers registered with `register_lifecycle_provider` (the portal's own local
   Mosquitto registers one: it knows the brokers it spawned and how to signal or
   respawn them);
2. the broker's configured method: SIGHUP to the pid in its pid file, or its reload
   command; restarting needs the restart command.

Commands run without a shell (`shlex.split`), with a timeout, their output captured.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from django.utils.translation import gettext as _

from acl.choices import LifecycleAction, ReloadMethod

if TYPE_CHECKING:
    from acl.models import ManagedBroker
    from brokers.models import Broker

COMMAND_TIMEOUT = 30.0
OUTPUT_LIMIT = 8000


@dataclass
class LifecycleOutcome:
    """What happened when a broker was told to reload or restart."""

    action: str
    method: str
    ok: bool
    detail: str
    output: str = ""
    returncode: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "method": self.method,
            "ok": self.ok,
            "detail": self.detail,
            "output": self.output,
            "returncode": self.returncode,
        }


class LifecycleUnavailable(Exception):
    """No method is configured for this action on this broker (answered 409)."""


class LifecycleMethod(Protocol):
    name: str

    def run(self, action: str) -> LifecycleOutcome: ...


# A provider looks at a broker and returns a method when it manages that broker.
LifecycleProvider = Callable[["Broker"], "LifecycleMethod | None"]
_providers: list[LifecycleProvider] = []


def register_lifecycle_provider(provider: LifecycleProvider) -> None:
    """Let other code (the local broker) reload/restart the brokers it owns."""
    if provider not in _providers:
        _providers.append(provider)


def unregister_lifecycle_provider(provider: LifecycleProvider) -> None:
    if provider in _providers:
        _providers.remove(provider)


def _truncate(text: str) -> str:
    return text if len(text) <= OUTPUT_LIMIT else "…" + text[-OUTPUT_LIMIT:]


@dataclass
class SignalMethod:
    """SIGHUP to the pid in Mosquitto's pid file (reload only)."""

    pid_file: str
    name: str = ReloadMethod.SIGNAL

    def run(self, action: str) -> LifecycleOutcome:
        def failed(detail: str) -> LifecycleOutcome:
            return LifecycleOutcome(action, self.name, False, detail)

        try:
            text = Path(self.pid_file).read_text().strip()
        except OSError as exc:
            return failed(f"cannot read the pid file {self.pid_file}: {exc.strerror}")
        if not text.isdigit() or int(text) <= 1:
            return failed(f"the pid file {self.pid_file} holds no pid: {text[:40]!r}")
        pid = int(text)
        # A stale pid file may name an unrelated process by now: only Mosquitto gets
        # the signal (checked where /proc exists).
        comm = Path(f"/proc/{pid}/comm")
        try:
            name = comm.read_text().strip()
        except FileNotFoundError:
            if Path("/proc/self").exists():
                return failed(f"no process {pid} (from {self.pid_file}) is running")
            name = ""
        except OSError:
            name = ""
        if name and "mosquitto" not in name:
            return failed(f"process {pid} is {name!r}, not mosquitto: stale pid file?")
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            return failed(f"no process {pid} (from {self.pid_file}) is running")
        except PermissionError:
            return failed(f"not permitted to signal process {pid}")
        return LifecycleOutcome(action, self.name, True, f"sent SIGHUP to pid {pid}")


@dataclass
class CommandMethod:
    """A command run without a shell, bounded by a timeout."""

    command: str
    name: str = ReloadMethod.COMMAND
    timeout: float = COMMAND_TIMEOUT

    def run(self, action: str) -> LifecycleOutcome:
        argv = shlex.split(self.command)
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except FileNotFoundError:
            return LifecycleOutcome(
                action, self.name, False, f"command not found: {argv[0]}"
            )
        except PermissionError:
            return LifecycleOutcome(
                action, self.name, False, f"not permitted to run {argv[0]}"
            )
        except subprocess.TimeoutExpired as exc:
            output = (_text(exc.stdout) + _text(exc.stderr)).strip()
            return LifecycleOutcome(
                action,
                self.name,
                False,
                f"{self.command} did not finish within {self.timeout:g}s",
                _truncate(output),
            )
        output = _truncate((done.stdout + done.stderr).strip())
        ok = done.returncode == 0
        detail = (
            f"{self.command} succeeded"
            if ok
            else f"{self.command} exited with {done.returncode}"
        )
        return LifecycleOutcome(action, self.name, ok, detail, output, done.returncode)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def method_for(
    broker: Broker, managed: ManagedBroker | None, action: str
) -> LifecycleMethod:
    """The method that will carry out `action`; LifecycleUnavailable when none."""
    for provider in _providers:
        method = provider(broker)
        if method is not None:
            return method
    if action == LifecycleAction.RESTART:
        if managed is not None and managed.restart_command:
            return CommandMethod(managed.restart_command)
        raise LifecycleUnavailable(
            _(
                "No way to restart this broker is configured: set a restart command "
                "in its management settings."
            )
        )
    if managed is not None:
        if managed.reload_method == ReloadMethod.SIGNAL and managed.pid_file:
            return SignalMethod(managed.pid_file)
        if managed.reload_method == ReloadMethod.COMMAND and managed.reload_command:
            return CommandMethod(managed.reload_command)
    raise LifecycleUnavailable(
        _(
            "No way to reload this broker is configured: set a pid file (signal) or "
            "a reload command in its management settings."
        )
    )


def run_lifecycle(
    broker: Broker, managed: ManagedBroker | None, action: str
) -> LifecycleOutcome:
    """Carry out `action` with the broker's method (raises LifecycleUnavailable)."""
    if action not in LifecycleAction.values:
        raise ValueError(f"unknown lifecycle action {action!r}")
    return method_for(broker, managed, action).run(action)
