"""/api/v1/brokers/{id}/ mqtt-users, mqtt-roles, acl/sync, acl/export, management
and lifecycle: the role matrix, validation, secrets and the sync state."""

from __future__ import annotations

import json
from typing import Any

import pytest

from acl import services
from acl.models import ManagedBroker, MqttUser
from mqttadmin.models import AuditEntry
from tests.acl.conftest import ManagedProcess, connack
from tests.clients import as_user
from tests.factories import make_broker

pytestmark = pytest.mark.django_db

PASSWORD = "api-Pa55-word"


def url(broker: Any, suffix: str) -> str:
    return f"/api/v1/brokers/{broker.pk}/{suffix}"


@pytest.fixture
def unmanaged(world: dict) -> Any:
    """A broker the portal does not manage: changes are kept, not applied."""
    return make_broker(
        world["product"], name="Unmanaged", enabled=False, connect_timeout=3.0
    )


# --- Role matrix ----------------------------------------------------------------

READ_STATUS = {
    "superuser": 200,
    "admin": 200,
    "operator": 200,
    "viewer": 200,
    "outsider": 404,
}
WRITE_STATUS = {
    "superuser": 201,
    "admin": 201,
    "operator": 403,
    "viewer": 403,
    "outsider": 404,
}


@pytest.mark.parametrize("who", list(READ_STATUS))
def test_members_read_users_and_roles(world: dict, unmanaged: Any, who: str) -> None:
    client = as_user(world["users"][who])
    for suffix in ("mqtt-users/", "mqtt-roles/"):
        assert client.get(url(unmanaged, suffix)).status_code == READ_STATUS[who]
    # The management settings name files and commands on the portal's host.
    admins_only = {"superuser": 200, "admin": 200, "outsider": 404}.get(who, 403)
    assert client.get(url(unmanaged, "management/")).status_code == admins_only


@pytest.mark.parametrize("who", list(WRITE_STATUS))
def test_only_admins_and_superusers_write(
    world: dict, unmanaged: Any, who: str
) -> None:
    client = as_user(world["users"][who])
    role = client.post(
        url(unmanaged, "mqtt-roles/"),
        {"name": f"r-{who}", "rules": [{"topic": "a/#", "access": "read"}]},
        format="json",
    )
    assert role.status_code == WRITE_STATUS[who], role.content
    user = client.post(
        url(unmanaged, "mqtt-users/"),
        {"username": f"u-{who}", "password": PASSWORD},
        format="json",
    )
    assert user.status_code == WRITE_STATUS[who], user.content
    expected = 200 if WRITE_STATUS[who] == 201 else WRITE_STATUS[who]
    assert client.post(url(unmanaged, "acl/sync/"), {}).status_code == expected
    management = client.put(
        url(unmanaged, "management/"), {"management": "none"}, format="json"
    )
    assert management.status_code == expected
    export = client.get(url(unmanaged, "acl/export/"))
    assert export.status_code == expected  # hashes are for admins only


def test_writes_on_existing_objects_follow_the_matrix(
    world: dict, unmanaged: Any
) -> None:
    admin = world["users"]["admin"]
    user, _result = services.mqtt_user_create(
        actor=admin, broker=unmanaged, username="dev", password=PASSWORD
    )
    detail = url(unmanaged, f"mqtt-users/{user.pk}/")
    for who, code in (("viewer", 403), ("operator", 403), ("outsider", 404)):
        client = as_user(world["users"][who])
        assert client.patch(detail, {"enabled": False}, format="json").status_code == (
            code
        )
        assert client.delete(detail).status_code == code
    assert as_user(admin).delete(detail).status_code == 200


# --- Answers, validation, secrets ---------------------------------------------------


def test_an_unmanaged_broker_keeps_the_change_and_says_why_it_was_not_applied(
    world: dict, unmanaged: Any
) -> None:
    answer = as_user(world["users"]["admin"]).post(
        url(unmanaged, "mqtt-users/"),
        {"username": "dev", "password": PASSWORD, "client_id": "dev-1"},
        format="json",
    )
    assert answer.status_code == 201
    body = answer.json()
    assert body["sync"]["state"] == "failed"
    assert "not managed" in body["sync"]["error"]
    assert body["password"] == "***"
    assert MqttUser.objects.filter(username="dev", client_id="dev-1").exists()


@pytest.mark.parametrize("username", ["a+b", "a#", "plant/dev", "a:b", ""])
def test_usernames_mosquitto_cannot_hold_are_refused(
    world: dict, unmanaged: Any, username: str
) -> None:
    answer = as_user(world["users"]["admin"]).post(
        url(unmanaged, "mqtt-users/"),
        {"username": username, "password": PASSWORD},
        format="json",
    )
    assert answer.status_code == 400
    assert list(answer.json()) == ["username"]


@pytest.mark.parametrize("client_id", ["a+b", "x#", "dev/1"])
def test_client_ids_with_wildcards_or_slashes_are_refused(
    world: dict, unmanaged: Any, client_id: str
) -> None:
    answer = as_user(world["users"]["admin"]).post(
        url(unmanaged, "mqtt-users/"),
        {"username": "dev", "password": PASSWORD, "client_id": client_id},
        format="json",
    )
    assert answer.status_code == 400
    assert list(answer.json()) == ["client_id"]


@pytest.mark.parametrize(
    "topic", ["a/#/b", "a+/b", "$share/g/a/#", "", "a/%u-x", "plant\n#"]
)
def test_invalid_rule_filters_are_refused_naming_the_row(
    world: dict, unmanaged: Any, topic: str
) -> None:
    answer = as_user(world["users"]["admin"]).post(
        url(unmanaged, "mqtt-roles/"),
        {
            "name": "plant",
            "rules": [
                {"topic": "ok/#", "access": "read"},
                {"topic": topic, "access": "read"},
            ],
        },
        format="json",
    )
    assert answer.status_code == 400
    assert list(answer.json()) == ["rules[1].topic"]


def test_bad_access_and_duplicate_filters_are_refused(
    world: dict, unmanaged: Any
) -> None:
    client = as_user(world["users"]["admin"])
    answer = client.post(
        url(unmanaged, "mqtt-roles/"),
        {"name": "r", "rules": [{"topic": "a", "access": "sometimes"}]},
        format="json",
    )
    assert list(answer.json()) == ["rules[0].access"]
    answer = client.post(
        url(unmanaged, "mqtt-roles/"),
        {
            "name": "r",
            "rules": [
                {"topic": "a", "access": "read"},
                {"topic": "a", "access": "deny"},
            ],
        },
        format="json",
    )
    assert answer.status_code == 400
    assert list(answer.json()) == ["rules[1].topic"]


def test_roles_are_named_and_rules_replaced(world: dict, unmanaged: Any) -> None:
    client = as_user(world["users"]["admin"])
    created = client.post(
        url(unmanaged, "mqtt-roles/"),
        {"name": "plant", "rules": [{"topic": "plant/#", "access": "read"}]},
        format="json",
    ).json()
    user = client.post(
        url(unmanaged, "mqtt-users/"),
        {"username": "dev", "password": PASSWORD, "roles": ["plant"]},
        format="json",
    ).json()
    assert user["roles"] == ["plant"]
    changed = client.put(
        url(unmanaged, f"mqtt-roles/{created['id']}/"),
        {"rules": [{"topic": "plant/+/temp", "access": "write", "priority": 3}]},
        format="json",
    ).json()
    assert changed["rules"] == [
        {"topic": "plant/+/temp", "access": "write", "priority": 3}
    ]
    assert changed["users"] == ["dev"]
    unknown = client.post(
        url(unmanaged, "mqtt-users/"),
        {"username": "dev2", "password": PASSWORD, "roles": ["nope"]},
        format="json",
    )
    assert list(unknown.json()) == ["roles"]


def test_the_password_is_write_only_and_only_its_hash_is_kept(
    world: dict, unmanaged: Any
) -> None:
    client = as_user(world["users"]["admin"])
    created = client.post(
        url(unmanaged, "mqtt-users/"),
        {"username": "dev", "password": PASSWORD},
        format="json",
    )
    user = MqttUser.objects.get(username="dev")
    assert user.password_hash.startswith("$7$101$")
    assert PASSWORD not in json.dumps(created.json())
    first_hash = user.password_hash
    # Writing back what was read keeps the password.
    client.put(
        url(unmanaged, f"mqtt-users/{user.pk}/"),
        {**created.json(), "enabled": False},
        format="json",
    )
    user.refresh_from_db()
    assert user.password_hash == first_hash and not user.enabled
    missing = client.post(
        url(unmanaged, "mqtt-users/"), {"username": "x"}, format="json"
    )
    assert list(missing.json()) == ["password"]
    renamed = client.patch(
        url(unmanaged, f"mqtt-users/{user.pk}/"), {"username": "y"}, format="json"
    )
    assert list(renamed.json()) == ["username"]
    entries = AuditEntry.objects.filter(action__startswith="mqtt_user.")
    assert entries.exists()
    assert PASSWORD not in json.dumps(list(entries.values_list("changes", flat=True)))
    assert first_hash not in json.dumps(list(entries.values_list("changes", flat=True)))


def test_export_shows_hashes_never_plain_passwords(world: dict, unmanaged: Any) -> None:
    client = as_user(world["users"]["admin"])
    client.post(
        url(unmanaged, "mqtt-roles/"),
        {"name": "plant", "rules": [{"topic": "plant/#", "access": "readwrite"}]},
        format="json",
    )
    client.post(
        url(unmanaged, "mqtt-users/"),
        {"username": "dev", "password": PASSWORD, "roles": ["plant"]},
        format="json",
    )
    answer = client.get(url(unmanaged, "acl/export/"))
    text = answer.content.decode()
    assert PASSWORD not in text
    body = answer.json()
    assert body["files"]["password_file"]["content"].startswith("dev:$7$101$")
    assert "topic readwrite plant/#" in body["files"]["acl_file"]["content"]
    create = [c for c in body["dynsec"]["commands"] if c["command"] == "createClient"]
    assert create[0]["password_hash"].startswith("$7$") and "password" not in create[0]


# --- Management settings ----------------------------------------------------------


def test_management_password_is_never_returned(world: dict, unmanaged: Any) -> None:
    client = as_user(world["users"]["admin"])
    answer = client.put(
        url(unmanaged, "management/"),
        {
            "management": "dynsec",
            "management_username": "ctl",
            "management_password": "ctl-Secret-1",
        },
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["management_password"] == "***"
    stored = ManagedBroker.objects.get(broker=unmanaged)
    assert stored.management_password == "ctl-Secret-1"
    read = client.get(url(unmanaged, "management/"))
    assert read.json()["management_password"] == "***"
    entry = AuditEntry.objects.get(action="acl.management_update")
    assert entry.changes["management_password"] == [None, "***"]
    # "***" written back keeps it.
    client.put(url(unmanaged, "management/"), read.json(), format="json")
    stored.refresh_from_db()
    assert stored.management_password == "ctl-Secret-1"


def test_files_and_commands_on_the_portal_host_need_a_superuser(
    world: dict, unmanaged: Any
) -> None:
    body = {
        "management": "files",
        "password_file": "/tmp/mqttadmin-test-passwd",
        "acl_file": "/tmp/mqttadmin-test-acl",
        "reload_method": "command",
        "reload_command": "true",
    }
    denied = as_user(world["users"]["admin"]).put(
        url(unmanaged, "management/"), body, format="json"
    )
    assert denied.status_code == 403
    assert "superusers" in denied.json()["detail"]
    allowed = as_user(world["users"]["superuser"]).put(
        url(unmanaged, "management/"), body, format="json"
    )
    assert allowed.status_code == 200, allowed.content


def test_management_settings_are_checked(world: dict, unmanaged: Any) -> None:
    client = as_user(world["users"]["superuser"])
    answer = client.put(
        url(unmanaged, "management/"),
        {"management": "files", "password_file": "relative/passwd"},
        format="json",
    )
    assert answer.status_code == 400
    assert list(answer.json()) == ["password_file"]
    answer = client.put(
        url(unmanaged, "management/"),
        {"management": "files", "password_file": "/etc/mosquitto/passwd"},
        format="json",
    )
    assert list(answer.json()) == ["acl_file", "pid_file"]
    answer = client.put(
        url(unmanaged, "management/"),
        {"reload_method": "command", "reload_command": "systemctl 'reload"},
        format="json",
    )
    assert list(answer.json()) == ["reload_command"]


# --- Lifecycle --------------------------------------------------------------------


def test_lifecycle_without_a_method_is_409_and_audited(
    world: dict, unmanaged: Any
) -> None:
    client = as_user(world["users"]["admin"])
    for action in ("reload", "restart"):
        answer = client.post(url(unmanaged, "lifecycle/"), {"action": action})
        assert answer.status_code == 409
        assert "configured" in answer.json()["detail"]
    bad = client.post(url(unmanaged, "lifecycle/"), {"action": "explode"})
    assert list(bad.json()) == ["action"]
    assert AuditEntry.objects.filter(action__startswith="acl.lifecycle_").count() == 2
    viewer = as_user(world["users"]["viewer"])
    assert viewer.post(
        url(unmanaged, "lifecycle/"), {"action": "reload"}
    ).status_code == (403)


def test_lifecycle_commands_run_without_a_shell_and_report_their_output(
    world: dict, unmanaged: Any
) -> None:
    services.management_update(
        actor=world["users"]["superuser"],
        broker=unmanaged,
        reload_method="command",
        reload_command="echo reloaded; false",
        restart_command="sh -c 'echo restarting >&2; exit 3'",
    )
    client = as_user(world["users"]["admin"])
    reload = client.post(url(unmanaged, "lifecycle/"), {"action": "reload"})
    assert reload.status_code == 200
    # No shell: "; false" are arguments of echo.
    assert reload.json()["output"] == "reloaded; false"
    restart = client.post(url(unmanaged, "lifecycle/"), {"action": "restart"})
    assert restart.status_code == 502
    assert restart.json() | {"detail": ""} == {
        "action": "restart",
        "method": "command",
        "ok": False,
        "detail": "",
        "output": "restarting",
        "returncode": 3,
    }
    entries = AuditEntry.objects.filter(action__startswith="acl.lifecycle_")
    assert sorted(e.action for e in entries) == [
        "acl.lifecycle_reload",
        "acl.lifecycle_restart",
    ]


@pytest.mark.mosquitto
def test_lifecycle_reload_by_signal(files_broker: ManagedProcess, world: dict) -> None:
    answer = as_user(world["users"]["admin"]).post(
        url(files_broker.broker, "lifecycle/"), {"action": "reload"}
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["detail"].startswith("sent SIGHUP to pid")


# --- The sync state in answers, against a real broker ------------------------------


@pytest.mark.mosquitto
def test_the_answer_carries_failed_while_the_broker_is_down_and_sync_recovers(
    dynsec_broker: ManagedProcess, world: dict
) -> None:
    client = as_user(world["users"]["admin"])
    broker = dynsec_broker.broker
    created = client.post(
        url(broker, "mqtt-users/"),
        {"username": "dev", "password": PASSWORD},
        format="json",
    ).json()
    assert created["sync"] == {"state": "applied", "error": None}
    assert connack(dynsec_broker.port, "dev", PASSWORD) == 0

    dynsec_broker.process.stop()
    changed = client.patch(
        url(broker, f"mqtt-users/{created['id']}/"), {"enabled": False}, format="json"
    ).json()
    assert changed["sync"]["state"] == "failed"
    assert changed["sync"]["error"]
    assert changed["enabled"] is False

    dynsec_broker.process.start()
    synced = client.post(url(broker, "acl/sync/"), {}, format="json").json()
    assert synced["sync"] == {"state": "applied", "error": None}
    assert synced["drift"]["differences"] == [
        {
            "kind": "user",
            "name": "dev",
            "field": "disabled",
            "broker": False,
            "portal": True,
        }
    ]
    assert connack(dynsec_broker.port, "dev", PASSWORD) in (134, 135)
    management = client.get(url(broker, "management/")).json()
    assert management["last_sync_state"] == "applied"
