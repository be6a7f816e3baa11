"""Django admin for the acl models: pages load, changes are audited with secrets
masked, the sync action reports."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from acl import services
from acl.models import ManagedBroker, MqttRole, MqttUser
from mqttadmin.models import AuditEntry
from tests.factories import make_broker

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(world: dict) -> Client:
    client = Client()
    client.force_login(world["users"]["superuser"])
    return client


def test_the_admin_lists_every_acl_model(root: Client, world: dict) -> None:
    broker = make_broker(
        world["product"], name="Line 1", enabled=False, connect_timeout=3.0
    )
    role, _r = services.mqtt_role_create(
        actor=None,
        broker=broker,
        name="plant",
        rules=[{"topic": "a", "access": "read"}],
    )
    user, _r = services.mqtt_user_create(
        actor=None, broker=broker, username="dev", password="pw-1", roles=[role]
    )
    services.management_update(actor=world["users"]["superuser"], broker=broker)
    for path in (
        "/admin/acl/managedbroker/",
        f"/admin/acl/managedbroker/{broker.pk}/change/",
        "/admin/acl/mqttrole/",
        f"/admin/acl/mqttrole/{role.pk}/change/",
        "/admin/acl/mqttuser/",
        f"/admin/acl/mqttuser/{user.pk}/change/",
    ):
        page = root.get(path)
        assert page.status_code == 200, path
        assert user.password_hash not in page.content.decode()


def test_admin_changes_are_audited_with_the_password_masked(
    root: Client, world: dict
) -> None:
    broker = make_broker(
        world["product"], name="Line 1", enabled=False, connect_timeout=3.0
    )
    answer = root.post(
        "/admin/acl/managedbroker/add/",
        {
            "broker": broker.pk,
            "management": "dynsec",
            "management_username": "ctl",
            "management_password": "very-Secret-3",
            "reload_method": "signal",
        },
    )
    assert answer.status_code == 302, answer.content.decode()[-2000:]
    assert ManagedBroker.objects.get(broker=broker).management_password == (
        "very-Secret-3"
    )
    entry = AuditEntry.objects.get(action="managedbroker.create")
    assert "very-Secret-3" not in json.dumps(entry.changes)
    assert entry.changes["management_password"] == [None, "***"]


def test_the_sync_action_reports_per_broker(root: Client, world: dict) -> None:
    broker = make_broker(
        world["product"], name="Line 1", enabled=False, connect_timeout=3.0
    )
    services.management_update(actor=world["users"]["superuser"], broker=broker)
    answer = root.post(
        "/admin/acl/managedbroker/",
        {"action": "sync_selected", "_selected_action": [broker.pk]},
        follow=True,
    )
    assert "Line 1: failed" in answer.content.decode()
    assert AuditEntry.objects.filter(action="acl.sync").exists()


def test_models_know_their_product(world: dict) -> None:
    broker = make_broker(
        world["product"], name="Line 1", enabled=False, connect_timeout=3.0
    )
    role = MqttRole.objects.create(broker=broker, name="r")
    user = MqttUser.objects.create(broker=broker, username="u")
    viewer: Any = world["users"]["viewer"]
    outsider: Any = world["users"]["outsider"]
    assert list(MqttUser.objects.for_user(viewer)) == [user]
    assert list(MqttRole.objects.for_user(outsider)) == []
    assert role.product == user.product == world["product"]
