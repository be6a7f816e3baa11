"""acl.lifecycle: the registry the local broker plugs into, the signal method's
guard against stale pid files, commands with a timeout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from acl import lifecycle, services
from acl.lifecycle import CommandMethod, LifecycleOutcome, SignalMethod
from mqttadmin.models import AuditEntry
from tests.factories import make_broker


class FakeLocalBroker:
    name = "local"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def run(self, action: str) -> LifecycleOutcome:
        self.calls.append(action)
        return LifecycleOutcome(action, self.name, True, f"{action}ed the local broker")


@pytest.mark.django_db
def test_a_registered_provider_handles_the_brokers_it_claims(world: dict) -> None:
    mine = make_broker(
        world["product"], name="Local", enabled=False, connect_timeout=3.0
    )
    other = make_broker(
        world["product"],
        name="Elsewhere",
        port=1884,
        enabled=False,
        connect_timeout=3.0,
    )
    local = FakeLocalBroker()

    def provider(broker: Any) -> FakeLocalBroker | None:
        return local if broker.pk == mine.pk else None

    lifecycle.register_lifecycle_provider(provider)
    try:
        outcome = services.broker_lifecycle(
            actor=world["users"]["admin"], broker=mine, action="restart"
        )
        assert (outcome.ok, outcome.method, local.calls) == (True, "local", ["restart"])
        with pytest.raises(lifecycle.LifecycleUnavailable):
            services.broker_lifecycle(
                actor=world["users"]["admin"], broker=other, action="reload"
            )
    finally:
        lifecycle.unregister_lifecycle_provider(provider)
    entry = AuditEntry.objects.filter(action="acl.lifecycle_restart").get()
    assert entry.changes["method"] == [None, "local"]


def test_a_stale_pid_file_naming_another_program_gets_no_signal(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this test runner, not mosquitto
    outcome = SignalMethod(str(pid_file)).run("reload")
    assert not outcome.ok and "not mosquitto" in outcome.detail
    missing = SignalMethod(str(tmp_path / "nope.pid")).run("reload")
    assert not missing.ok and "cannot read the pid file" in missing.detail


def test_commands_are_bounded_by_a_timeout() -> None:
    outcome = CommandMethod("sleep 5", timeout=0.3).run("reload")
    assert not outcome.ok and "did not finish within 0.3s" in outcome.detail
    absent = CommandMethod("/nonexistent/reload-mosquitto").run("reload")
    assert not absent.ok and "command not found" in absent.detail
