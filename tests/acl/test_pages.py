"""The broker page's Users & ACL tab: who sees what, the forms, sync, export,
lifecycle."""

from __future__ import annotations

from typing import Any

import pytest

from acl import services
from acl.backends.dynsec import DynsecSession, admin_settings
from acl.models import ManagedBroker, MqttRole, MqttUser
from tests.acl.conftest import ManagedProcess
from tests.clients import HTMX, logged_in
from tests.factories import make_broker

pytestmark = pytest.mark.django_db

PASSWORD = "page-Pa55-word"


@pytest.fixture
def broker(world: dict) -> Any:
    broker = make_broker(
        world["product"], name="Line 1", enabled=False, connect_timeout=3.0
    )
    admin = world["users"]["admin"]
    role, _result = services.mqtt_role_create(
        actor=admin,
        broker=broker,
        name="plant",
        rules=[{"topic": "plant/#", "access": "readwrite", "priority": 0}],
    )
    services.mqtt_user_create(
        actor=admin, broker=broker, username="sensor-1", password=PASSWORD, roles=[role]
    )
    return broker


def tab_url(broker: Any, suffix: str = "") -> str:
    return f"/brokers/{broker.pk}/acl/{suffix}"


def test_the_broker_page_has_the_tab(world: dict, broker: Any) -> None:
    page = logged_in(world["users"]["viewer"]).get(f"/brokers/{broker.pk}/?tab=acl")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Users &amp; ACL" in html
    assert f'hx-get="{tab_url(broker)}"' in html  # the panel loads itself


def test_viewers_see_users_and_roles_without_write_controls(
    world: dict, broker: Any
) -> None:
    for who in ("viewer", "operator"):
        html = logged_in(world["users"][who]).get(tab_url(broker)).content.decode()
        assert "sensor-1" in html and "plant/#" in html
        assert "Add user" not in html and "Add role" not in html
        for write_url in ("users/", "roles/", "lifecycle/", "sync/", "management/"):
            assert tab_url(broker, write_url) not in html


def test_admins_see_the_write_controls(world: dict, broker: Any) -> None:
    html = logged_in(world["users"]["admin"]).get(tab_url(broker)).content.decode()
    for text in ("Add user", "Add role", "/toggle/", "/sync/", "/export/"):
        assert text in html
    assert "hx-confirm=" in html and 'value="restart"' in html


def test_operators_and_viewers_cannot_write(world: dict, broker: Any) -> None:
    user = MqttUser.objects.get(username="sensor-1")
    for who in ("operator", "viewer"):
        client = logged_in(world["users"][who])
        assert client.get(tab_url(broker, "users/new/")).status_code == 403
        assert client.post(tab_url(broker, f"users/{user.pk}/toggle/")).status_code == (
            403
        )
        assert client.post(tab_url(broker, "sync/")).status_code == 403
        assert client.post(
            tab_url(broker, "lifecycle/"), {"action": "reload"}
        ).status_code == (403)
        assert client.get(tab_url(broker, "export/")).status_code == 403
    assert MqttUser.objects.get(pk=user.pk).enabled


def test_outsiders_do_not_find_the_broker(world: dict, broker: Any) -> None:
    client = logged_in(world["users"]["outsider"])
    assert client.get(tab_url(broker)).status_code == 404
    assert client.get(tab_url(broker, "users/new/")).status_code == 404


def test_an_admin_creates_and_edits_a_user_with_the_form(
    world: dict, broker: Any
) -> None:
    client = logged_in(world["users"]["admin"])
    role = MqttRole.objects.get(name="plant")
    answer = client.post(
        tab_url(broker, "users/new/"),
        {"username": "dev/1", "password": "", "roles": ["plant"], "enabled": "on"},
    )
    html = answer.content.decode()
    assert answer.status_code == 200
    assert "must not contain +, # or /" in html and "needs a password" in html
    answer = client.post(
        tab_url(broker, "users/new/"),
        {
            "username": "dev-1",
            "password": PASSWORD,
            "roles": ["plant"],
            "enabled": "on",
        },
    )
    assert answer.status_code == 302
    user = MqttUser.objects.get(username="dev-1")
    assert list(user.roles.all()) == [role]
    first_hash = user.password_hash

    edit = client.get(tab_url(broker, f"users/{user.pk}/")).content.decode()
    assert PASSWORD not in edit and first_hash not in edit
    client.post(
        tab_url(broker, f"users/{user.pk}/"),
        {"username": "ignored", "password": "", "client_id": "dev-1"},
    )
    user.refresh_from_db()
    assert user.password_hash == first_hash  # empty keeps the password
    assert (user.username, user.client_id, user.enabled) == ("dev-1", "dev-1", False)
    assert list(user.roles.all()) == []


def test_the_toggle_answers_htmx_with_the_panel(world: dict, broker: Any) -> None:
    user = MqttUser.objects.get(username="sensor-1")
    answer = logged_in(world["users"]["admin"]).post(
        tab_url(broker, f"users/{user.pk}/toggle/"), **HTMX
    )
    html = answer.content.decode()
    assert html.lstrip().startswith('<section id="acl-panel">')
    assert "User sensor-1 disabled." in html
    assert "Not applied to the broker" in html and "not managed" in html
    assert not MqttUser.objects.get(pk=user.pk).enabled


def test_the_role_form_adds_and_removes_rule_rows(world: dict, broker: Any) -> None:
    client = logged_in(world["users"]["admin"])
    role = MqttRole.objects.get(name="plant")
    form = client.get(tab_url(broker, f"roles/{role.pk}/")).content.decode()
    assert 'value="plant/#"' in form
    data = {
        "name": "plant",
        "rules-TOTAL_FORMS": "2",
        "rules-INITIAL_FORMS": "1",
        "rules-0-topic": "plant/#",
        "rules-0-access": "readwrite",
        "rules-0-priority": "0",
        "rules-1-topic": "plant/secret/#",
        "rules-1-access": "deny",
        "rules-1-priority": "5",
    }
    grown = client.post(tab_url(broker, f"roles/{role.pk}/"), {**data, "add_rule": "1"})
    assert 'name="rules-2-topic"' in grown.content.decode()
    bad = client.post(
        tab_url(broker, f"roles/{role.pk}/"), {**data, "rules-1-topic": "a/#/b"}
    )
    assert "# must be the last level" in bad.content.decode()
    saved = client.post(
        tab_url(broker, f"roles/{role.pk}/"), {**data, "rules-0-DELETE": "on"}
    )
    assert saved.status_code == 302
    rules = [(r.topic, r.access, r.priority) for r in role.rules.all()]
    assert rules == [("plant/secret/#", "deny", 5)]


def test_the_management_form_hides_secrets_and_host_settings_from_admins(
    world: dict, broker: Any
) -> None:
    services.management_update(
        actor=world["users"]["superuser"],
        broker=broker,
        management="dynsec",
        management_username="ctl",
        management_password="ctl-Secret-9",
        pid_file="/run/mosquitto/mosquitto.pid",
    )
    client = logged_in(world["users"]["admin"])
    html = client.get(tab_url(broker, "management/")).content.decode()
    assert "ctl-Secret-9" not in html
    assert 'name="pid_file"' in html and "disabled" in html
    answer = client.post(
        tab_url(broker, "management/"),
        {
            "management": "dynsec",
            "management_username": "ctl2",
            "management_password": "",
            "reload_method": "signal",
            "pid_file": "/tmp/elsewhere.pid",  # disabled: ignored
        },
    )
    assert answer.status_code == 302
    managed = ManagedBroker.objects.get(broker=broker)
    assert managed.management_username == "ctl2"
    assert managed.management_password == "ctl-Secret-9"
    assert managed.pid_file == "/run/mosquitto/mosquitto.pid"


def test_export_shows_hashes(world: dict, broker: Any) -> None:
    html = logged_in(world["users"]["admin"]).get(tab_url(broker, "export/"))
    text = html.content.decode()
    assert "sensor-1:$7$101$" in text and PASSWORD not in text
    assert "topic readwrite plant/#" in text and "createClient" in text


def test_lifecycle_without_a_method_says_so(world: dict, broker: Any) -> None:
    html = (
        logged_in(world["users"]["admin"])
        .post(tab_url(broker, "lifecycle/"), {"action": "reload"}, **HTMX)
        .content.decode()
    )
    assert "No way to reload this broker is configured" in html


@pytest.mark.mosquitto
def test_sync_shows_the_drift_found(dynsec_broker: ManagedProcess, world: dict) -> None:
    with DynsecSession(admin_settings(dynsec_broker.managed), timeout=5) as session:
        session.check(
            [{"command": "createClient", "username": "intruder", "password": "x"}]
        )
    html = (
        logged_in(world["users"]["admin"])
        .post(tab_url(dynsec_broker.broker, "sync/"), **HTMX)
        .content.decode()
    )
    assert "Applied to the broker." in html
    assert "Users on the broker unknown here:" in html and "intruder" in html
