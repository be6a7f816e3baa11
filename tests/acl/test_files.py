"""The files backend against a real Mosquitto reading the files the portal writes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from acl import services
from acl.backends.base import DesiredState, RoleSpec, RuleSpec, UserSpec
from acl.backends.files import (
    FileValidationError,
    parse_acl_file,
    parse_password_file,
    render_acl_file,
    render_password_file,
    write_atomically,
)
from acl.hashing import make_password_hash
from acl.models import MqttRole
from tests.acl.conftest import (
    ManagedProcess,
    assert_allowed_and_denied,
    connack,
    wait_until,
)

pytestmark = pytest.mark.django_db

REFUSED = (134, 135)
PASSWORD = "alice-Pa55-word"
OBSERVER, OBSERVER_PASSWORD = "observer", "observer-Pa55"


def observer_user(actor: Any, broker: Any) -> None:
    """A portal user that reads everything: the portal owns the whole ACL file."""
    everything, _result = services.mqtt_role_create(
        actor=actor,
        broker=broker,
        name="everything",
        rules=[{"topic": "#", "access": "read", "priority": 0}],
    )
    services.mqtt_user_create(
        actor=actor,
        broker=broker,
        username=OBSERVER,
        password=OBSERVER_PASSWORD,
        roles=[everything],
    )


def plant_role(actor: Any, broker: Any) -> MqttRole:
    role, result = services.mqtt_role_create(
        actor=actor,
        broker=broker,
        name="plant",
        rules=[
            {"topic": "plant/#", "access": "readwrite", "priority": 0},
            {"topic": "plant/secret/#", "access": "deny", "priority": 0},
            {"topic": "devices/%u/#", "access": "write", "priority": 0},
        ],
    )
    assert result.applied, result.error
    return role


def accepts(port: int, username: str, password: str) -> bool:
    """Whether the broker lets the user in, once the reload has been processed
    (SIGHUP is handled in the broker's main loop, a moment later)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if connack(port, username, password) == 0:
            return True
        time.sleep(0.05)
    return False


def refuses(port: int, username: str, password: str) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if connack(port, username, password) in REFUSED:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.mosquitto
def test_user_publishes_where_its_role_allows_and_not_elsewhere(
    files_broker: ManagedProcess, world: dict, observe: Any
) -> None:
    admin = world["users"]["admin"]
    broker = files_broker.broker
    observer_user(admin, broker)
    role = plant_role(admin, broker)
    _user, result = services.mqtt_user_create(
        actor=admin, broker=broker, username="alice", password=PASSWORD, roles=[role]
    )
    assert result.applied, result.error
    port = files_broker.port
    assert accepts(port, "alice", PASSWORD)
    observer = observe(port, OBSERVER, OBSERVER_PASSWORD)
    assert_allowed_and_denied(observer, port, "alice", PASSWORD, "plant/a", "other/a")
    # deny lines come first: plant/secret/# loses to nothing in the block.
    assert_allowed_and_denied(
        observer, port, "alice", PASSWORD, "plant/b", "plant/secret/x"
    )
    # %u became a pattern line.
    assert_allowed_and_denied(
        observer, port, "alice", PASSWORD, "devices/alice/t", "devices/bob/t"
    )


@pytest.mark.mosquitto
def test_a_password_line_written_by_the_portal_is_accepted_by_mosquitto(
    files_broker: ManagedProcess, world: dict
) -> None:
    services.mqtt_user_create(
        actor=world["users"]["admin"],
        broker=files_broker.broker,
        username="bob",
        password="b0b-Secret",
    )
    line = (files_broker.directory / "passwd").read_text()
    assert line.startswith("bob:$7$101$") and "b0b-Secret" not in line
    assert accepts(files_broker.port, "bob", "b0b-Secret")
    assert connack(files_broker.port, "bob", "wrong") in REFUSED


@pytest.mark.mosquitto
def test_disabling_or_deleting_a_user_refuses_it_after_the_reload(
    files_broker: ManagedProcess, world: dict
) -> None:
    admin = world["users"]["admin"]
    port = files_broker.port
    user, _result = services.mqtt_user_create(
        actor=admin, broker=files_broker.broker, username="carol", password=PASSWORD
    )
    assert accepts(port, "carol", PASSWORD)
    user, result = services.mqtt_user_update(actor=admin, user=user, enabled=False)
    assert result.applied, result.error
    assert "carol" not in (files_broker.directory / "passwd").read_text()
    assert refuses(port, "carol", PASSWORD)
    user, _result = services.mqtt_user_update(actor=admin, user=user, enabled=True)
    assert accepts(port, "carol", PASSWORD)
    result = services.mqtt_user_delete(actor=admin, user=user)
    assert result.applied, result.error
    assert refuses(port, "carol", PASSWORD)


@pytest.mark.mosquitto
def test_files_are_replaced_atomically_with_a_backup(
    files_broker: ManagedProcess, world: dict
) -> None:
    admin = world["users"]["admin"]
    passwd = files_broker.directory / "passwd"
    services.mqtt_user_create(
        actor=admin, broker=files_broker.broker, username="dan", password=PASSWORD
    )
    first = passwd.read_text()
    passwd.chmod(0o600)
    services.mqtt_user_create(
        actor=admin, broker=files_broker.broker, username="erin", password=PASSWORD
    )
    assert (files_broker.directory / "passwd.bak").read_text() == first
    assert passwd.stat().st_mode & 0o777 == 0o600  # the mode is kept
    assert sorted(parse_password_file(passwd.read_text())) == ["dan", "erin"]
    temporary = [
        p.name
        for p in files_broker.directory.iterdir()
        if p.name.startswith(".passwd.") and not p.name.endswith(".lock")
    ]
    assert temporary == []


@pytest.mark.mosquitto
def test_sync_reports_hand_edits_and_restores_the_files(
    files_broker: ManagedProcess, world: dict
) -> None:
    admin = world["users"]["admin"]
    services.mqtt_user_create(
        actor=admin, broker=files_broker.broker, username="fay", password=PASSWORD
    )
    passwd = files_broker.directory / "passwd"
    passwd.write_text(f"intruder:{make_password_hash('x')}\n")
    report = services.acl_sync(actor=admin, broker=files_broker.broker)
    assert report.sync.applied, report.sync.error
    assert report.drift is not None
    assert report.drift["unknown_users"] == ["intruder"]
    assert report.drift["missing_users"] == ["fay"]
    assert report.pruned == ["user intruder"]
    assert refuses(files_broker.port, "intruder", "x")
    assert accepts(files_broker.port, "fay", PASSWORD)


@pytest.mark.mosquitto
def test_a_failed_reload_is_reported_and_sync_fixes_it(
    files_broker: ManagedProcess, world: dict
) -> None:
    admin = world["users"]["admin"]
    files_broker.process.stop()
    _user, result = services.mqtt_user_create(
        actor=admin, broker=files_broker.broker, username="gus", password=PASSWORD
    )
    assert result.state == "failed"
    assert "reloading failed" in result.error
    files_broker.process.start()
    wait_until(files_broker.process.pid_path.exists)
    report = services.acl_sync(actor=admin, broker=files_broker.broker)
    assert report.sync.applied, report.sync.error
    assert accepts(files_broker.port, "gus", PASSWORD)


# --- Rendering and validation (no broker) ---------------------------------------


def state() -> DesiredState:
    plant = RoleSpec(
        "plant",
        (
            RuleSpec("plant/#", "read", 0),
            RuleSpec("plant/valves/#", "write", 5),
            RuleSpec("plant/secret/#", "deny", 0),
            RuleSpec("devices/%c/#", "readwrite", 0),
        ),
    )
    ops = RoleSpec("ops", (RuleSpec("plant/#", "read", 0), RuleSpec("ops/#", "write")))
    return DesiredState(
        users=(
            UserSpec("alice", make_password_hash("a"), True, "", ("ops", "plant")),
            UserSpec("bob", make_password_hash("b"), False, "", ("plant",)),
        ),
        roles=(ops, plant),
    )


def test_the_acl_file_puts_deny_first_then_priority_and_patterns_globally() -> None:
    text = render_acl_file(state())
    patterns, blocks = parse_acl_file(text)
    assert patterns == ["pattern readwrite devices/%c/#"]
    assert blocks == {
        "alice": [
            "topic deny plant/secret/#",
            "topic write plant/valves/#",
            "topic read plant/#",
            "topic write ops/#",
        ]
    }
    assert "bob" not in text  # disabled users are left out of both files
    assert list(parse_password_file(render_password_file(state()))) == ["alice"]


def test_validation_refuses_what_mosquitto_would_not_read(tmp_path: Path) -> None:
    with pytest.raises(FileValidationError, match="12"):
        parse_password_file("u:$7$101$AAAA$" + "A" * 88 + "\n")
    with pytest.raises(FileValidationError, match="bad access"):
        parse_acl_file("user u\ntopic sometimes a/b\n")
    target = tmp_path / "acl"
    target.write_text("old\n")
    with pytest.raises(FileValidationError):
        write_atomically(target, "user u\ntopic read a/#/b\n", parse_acl_file, 0o644)
    assert target.read_text() == "old\n"  # nothing replaced
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left
