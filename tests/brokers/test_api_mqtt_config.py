"""The product MQTT configuration API of seed 001, and service accounts."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from brokers.models import Broker, Subscription
from tests.brokers.conftest import MQTT_PASSWORD, MQTT_USER
from tests.clients import as_user

pytestmark = pytest.mark.django_db

BROKER = {
    "host": "127.0.0.1",
    "port": 8889,
    "use_tls": False,
    "verify_cert": True,
    "username": "habit-bre-tyres",
    "password": "pa55-word",
    "keep_alive": 60,
    "clean_session": True,
}
TOPICS = {
    "prefix": "/v3/applications",
    "pattern": "{application_id}/business-events",
    "use_shared": True,
    "shared_group": "bre",
    "qos": 1,
}


def url(world: dict, tail: str = "") -> str:
    return f"/api/v1/products/{world['product'].pk}/mqtt-config/{tail}"


def service_client(world: dict) -> APIClient:
    out = StringIO()
    call_command(
        "create_service_account", world["product"].slug, "listener", stdout=out
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip()}")
    return client


def test_unconfigured_product_answers_null(world: dict) -> None:
    body = as_user(world["users"]["viewer"]).get(url(world)).json()
    assert body == {
        "product_id": world["product"].pk,
        "mqtt_config": None,
        "message": "MQTT not configured for this product",
    }


@pytest.mark.parametrize(
    ("who", "status"), [("operator", 200), ("viewer", 403), ("outsider", 404)]
)
def test_put_creates_the_primary_broker(world: dict, who: str, status: int) -> None:
    response = as_user(world["users"][who]).put(
        url(world), {"broker": BROKER, "topics": TOPICS}, format="json"
    )
    assert response.status_code == status
    assert Broker.objects.filter(product=world["product"]).exists() == (status == 200)
    if status == 200:
        body = response.json()
        assert body["requires_restart"] is True
        assert body["mqtt_config"]["broker"]["password"] == "***"
        assert body["mqtt_config"]["topics"] == TOPICS
        broker = Broker.objects.get(product=world["product"])
        assert broker.keepalive == 60 and broker.password == "pa55-word"


def test_topic_only_change_needs_no_restart(world: dict) -> None:
    client = as_user(world["users"]["operator"])
    client.put(url(world), {"broker": BROKER, "topics": TOPICS}, format="json")
    response = client.put(url(world), {"topics": {"qos": 0}}, format="json")
    assert response.json()["requires_restart"] is False
    response = client.put(url(world), {"broker": {"keep_alive": 30}}, format="json")
    assert response.json()["requires_restart"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"broker": {**BROKER, "port": 70000}}, "broker.port"),
        ({"broker": {**BROKER, "colour": "red"}}, "broker.colour"),
        (
            {"broker": BROKER, "topics": {"use_shared": True, "shared_group": ""}},
            "topics.shared_group",
        ),
        ({"broker": BROKER, "topics": {"shared_group": "a/b"}}, "topics.shared_group"),
    ],
)
def test_bad_settings_name_the_field_and_change_nothing(
    world: dict, body: dict, field: str
) -> None:
    response = as_user(world["users"]["operator"]).put(url(world), body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Broker.objects.filter(product=world["product"]).exists()


def test_only_service_accounts_receive_the_password(world: dict) -> None:
    as_user(world["users"]["operator"]).put(
        url(world), {"broker": BROKER}, format="json"
    )
    service = service_client(world)
    assert (
        service.get(url(world)).json()["mqtt_config"]["broker"]["password"]
        == "pa55-word"
    )
    for who in ("superuser", "admin", "viewer"):
        body = as_user(world["users"][who]).get(url(world)).json()
        assert body["mqtt_config"]["broker"]["password"] == "***"


def test_the_service_role_is_refused_to_people(world: dict) -> None:
    response = as_user(world["users"]["admin"]).post(
        f"/api/v1/products/{world['product'].pk}/members/",
        {"username": "olga", "role": "service"},
        format="json",
    )
    assert response.status_code == 400 and "token-only" in response.json()["role"][0]


def test_service_accounts_cannot_log_in_to_pages(world: dict) -> None:
    service_client(world)
    user = get_user_model().objects.get(username="listener")
    assert not user.has_usable_password()


def test_subscriptions_listed_and_toggled(world: dict) -> None:
    client = as_user(world["users"]["operator"])
    client.put(url(world), {"broker": BROKER}, format="json")
    broker = Broker.objects.get(product=world["product"])
    sub = Subscription.objects.create(broker=broker, name="events", topic_filter="a/#")
    listed = as_user(world["users"]["viewer"]).get(url(world, "subscriptions/")).json()
    assert [s["name"] for s in listed] == ["events"]
    response = client.put(
        url(world, f"subscriptions/{sub.pk}/"), {"enabled": False}, format="json"
    )
    assert response.status_code == 200 and response.json()["enabled"] is False
    assert (
        as_user(world["users"]["viewer"])
        .put(url(world, f"subscriptions/{sub.pk}/"), {"enabled": True}, format="json")
        .status_code
        == 403
    )


def test_reconnect_and_status_reports(world: dict) -> None:
    as_user(world["users"]["operator"]).put(
        url(world), {"broker": BROKER}, format="json"
    )
    assert (
        as_user(world["users"]["operator"]).post(url(world, "reconnect/")).status_code
        == 202
    )
    service = service_client(world)
    report = {"connected": True, "messages_received": 42, "client_id": "bre-1"}
    assert service.post(url(world, "status/"), report, format="json").status_code == 201
    body = as_user(world["users"]["viewer"]).get(url(world, "status/")).json()
    assert body["service"]["messages_received"] == 42
    assert body["service"]["reported_by"] == "listener"
    assert body["runtime"]["state"] == "disconnected"
    denied = as_user(world["users"]["viewer"]).post(
        url(world, "status/"), report, format="json"
    )
    assert denied.status_code == 403
    bad = service.post(url(world, "status/"), {"mood": "happy"}, format="json")
    assert bad.status_code == 400 and "mood" in bad.json()


@pytest.mark.mosquitto
def test_connection_test_tells_a_wrong_password(world: dict, password_broker) -> None:
    client = as_user(world["users"]["operator"])
    body = {"host": "127.0.0.1", "port": password_broker.port, "username": MQTT_USER}
    wrong = client.post(
        url(world, "test/"), {**body, "password": "nope"}, format="json"
    ).json()
    assert wrong["status"] == "error" and wrong["connected"] is False
    # Mosquitto answers a wrong password with "not authorised" (3.1.1 code 5).
    assert wrong["reason_code"] in (4, 5)
    assert wrong["error"] == f"Connection failed with code {wrong['reason_code']}"
    assert "username or password" in wrong["details"]
    right = client.post(
        url(world, "test/"), {**body, "password": MQTT_PASSWORD}, format="json"
    )
    assert right.json()["connected"] is True
