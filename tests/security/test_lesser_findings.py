"""Lesser findings, each performed as the lowest role that could try it:

- a client id pin the files backend cannot enforce is refused (API, page, Django
  admin, switching a broker with pinned users to the files backend), and a sync
  reports a pin found all the same;
- a secret webhook header does not follow its action to another URL on the same
  server (page editor, Django admin; the API is in
  tests/brokers/test_webhook_header_secrets.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from acl import services as acl_services
from acl.models import ManagedBroker, MqttUser
from brokers.models import Broker, BrokerStatus, Subscription
from mqttadmin.models import AuditEntry
from tests.acl.conftest import (  # noqa: F401 (fixtures)
    ManagedProcess,
    connack,
    files_broker,
)
from tests.brokers.test_admin import _posted
from tests.brokers.test_pages import error_next_to
from tests.brokers.test_pages_subscriptions import (
    action_data,
    header_rows,
    management,
    subscription_data,
)
from tests.clients import HTMX, as_user, logged_in
from tests.factories import make_broker

pytestmark = pytest.mark.django_db

PASSWORD = "pinned-Pa55-word"
REFUSED = (134, 135)


def users_url(broker: Broker) -> str:
    return f"/api/v1/brokers/{broker.pk}/mqtt-users/"


def password_file(files: ManagedProcess) -> str:
    return (files.directory / "passwd").read_text()


# --- Client id pins with the files backend ------------------------------------------


@pytest.mark.mosquitto
def test_the_api_refuses_a_client_id_the_files_cannot_enforce(
    world: dict,
    files_broker: ManagedProcess,  # noqa: F811
) -> None:
    admin = as_user(world["users"]["admin"])
    before = password_file(files_broker)
    answer = admin.post(
        users_url(files_broker.broker),
        {"username": "dev", "password": PASSWORD, "client_id": "dev-1"},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == ["client_id"]
    assert "files backend cannot enforce" in answer.json()["client_id"][0]
    assert not MqttUser.objects.filter(username="dev").exists()
    assert password_file(files_broker) == before
    assert connack(files_broker.port, "dev", PASSWORD, client_id="dev-1") in REFUSED

    # Without the pin the user is created; pinning it afterwards is refused too.
    created = admin.post(
        users_url(files_broker.broker),
        {"username": "dev", "password": PASSWORD},
        format="json",
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    pinned = admin.patch(
        f"{users_url(files_broker.broker)}{pk}/", {"client_id": "dev-1"}, format="json"
    )
    assert pinned.status_code == 400 and list(pinned.json()) == ["client_id"]
    assert MqttUser.objects.get(pk=pk).client_id == ""
    assert not AuditEntry.objects.filter(action="mqtt_user.update").exists()


@pytest.mark.mosquitto
def test_the_page_refuses_it_next_to_the_field(
    world: dict,
    files_broker: ManagedProcess,  # noqa: F811
) -> None:
    client = logged_in(world["users"]["admin"])
    answer = client.post(
        f"/brokers/{files_broker.broker.pk}/acl/users/new/",
        {
            "username": "dev",
            "password": PASSWORD,
            "client_id": "dev-1",
            "enabled": "on",
        },
    )
    assert answer.status_code == 200
    assert "files backend cannot enforce" in error_next_to(
        answer.content.decode(), "client_id"
    )
    assert not MqttUser.objects.filter(username="dev").exists()
    assert "dev:" not in password_file(files_broker)


@pytest.mark.mosquitto
def test_the_django_admin_refuses_it(
    world: dict,
    files_broker: ManagedProcess,  # noqa: F811
) -> None:
    root = logged_in(world["users"]["superuser"])
    user, _result = acl_services.mqtt_user_create(
        actor=world["users"]["superuser"],
        broker=files_broker.broker,
        username="dev",
        password=PASSWORD,
    )
    url = f"/admin/acl/mqttuser/{user.pk}/change/"
    data = _posted(root.get(url).context["adminform"].form)
    data["client_id"] = "dev-1"
    answer = root.post(url, data)
    assert answer.status_code == 200
    assert "files backend cannot enforce" in answer.content.decode()
    user.refresh_from_db()
    assert user.client_id == ""


def test_switching_pinned_users_to_the_files_backend_is_refused(
    world: dict, tmp_path: Any
) -> None:
    broker = make_broker(
        world["product"], name="Pinned", enabled=False, connect_timeout=3.0
    )
    acl_services.mqtt_user_create(
        actor=world["users"]["admin"],
        broker=broker,
        username="dev",
        password=PASSWORD,
        client_id="dev-1",
    )
    answer = as_user(world["users"]["superuser"]).put(
        f"/api/v1/brokers/{broker.pk}/management/",
        {
            "management": "files",
            "password_file": str(tmp_path / "passwd"),
            "acl_file": str(tmp_path / "acl"),
            "reload_method": "command",
            "reload_command": "true",
        },
        format="json",
    )
    assert answer.status_code == 400, answer.content
    assert "management" in answer.json()
    assert "dev" in " ".join(answer.json()["management"])
    assert not ManagedBroker.objects.filter(broker=broker, management="files").exists()
    assert not (tmp_path / "passwd").exists()


@pytest.mark.mosquitto
def test_a_sync_reports_a_pin_saved_before_the_rule(
    world: dict,
    files_broker: ManagedProcess,  # noqa: F811
) -> None:
    user, _result = acl_services.mqtt_user_create(
        actor=world["users"]["admin"],
        broker=files_broker.broker,
        username="dev",
        password=PASSWORD,
    )
    MqttUser.objects.filter(pk=user.pk).update(client_id="dev-1")  # an old row
    answer = as_user(world["users"]["admin"]).post(
        f"/api/v1/brokers/{files_broker.broker.pk}/acl/sync/", {}, format="json"
    )
    assert answer.status_code in (200, 201), answer.content
    assert "client_id 'dev-1' is not enforced" in json.dumps(answer.json())
    # What it says is true: another client id logs in as this user.
    assert connack(files_broker.port, "dev", PASSWORD, client_id="spoofed") == 0


# --- Secret headers follow only the exact URL ----------------------------------------

SECRET = "Bearer lesser-Secret-0001"


@pytest.fixture
def hooked(world: dict) -> Subscription:
    broker = Broker.objects.create(
        product=world["product"], name="b", host="127.0.0.1", port=1
    )
    BrokerStatus.objects.create(broker=broker)
    return Subscription.objects.create(
        broker=broker,
        name="Temps",
        topic_filter="sensors/#",
        actions=[
            {
                "type": "webhook",
                "url": "https://hooks.example.com/in",
                "headers": {"Authorization": SECRET},
            }
        ],
    )


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/collect", "https://hooks.example.com/in?x=1"]
)
def test_the_page_editor_refuses_a_masked_secret_on_another_url(
    world: dict, hooked: Subscription, url: str
) -> None:
    client = logged_in(world["users"]["operator"])
    data = {
        **subscription_data(topic_filter="sensors/#", **management(1)),
        **action_data(0, "webhook", url=url),
        **header_rows(0, ("Authorization", "", "saved")),
    }
    response = client.post(
        f"/brokers/{hooked.broker_id}/subscriptions/{hooked.pk}/edit/", data, **HTMX
    )
    assert "were dropped" in error_next_to(
        response.content.decode(), "actions-0-headers"
    )
    hooked.refresh_from_db()
    assert hooked.actions[0]["url"] == "https://hooks.example.com/in"
    assert hooked.actions[0]["headers"] == {"Authorization": SECRET}


def test_the_admin_refuses_a_masked_secret_on_another_path(
    world: dict, hooked: Subscription
) -> None:
    root = logged_in(world["users"]["superuser"])
    url = f"/admin/brokers/subscription/{hooked.pk}/change/"
    data = _posted(root.get(url).context["adminform"].form)
    actions = json.loads(data["actions"])
    actions[0]["url"] = "https://hooks.example.com/collect"
    data["actions"] = json.dumps(actions)
    response = root.post(url, data)
    assert response.status_code == 200
    assert "were dropped" in response.content.decode()
    hooked.refresh_from_db()
    assert hooked.actions[0]["url"] == "https://hooks.example.com/in"
    assert SECRET not in response.content.decode()
