"""Broker connections take the usernames and client ids other brokers use
(RabbitMQ's `vhost:user`, whose default vhost is `/`); only MQTT's own rules apply
to them. Mosquitto's ACL rules (no `+`, `#`, `/`) stay on the users and client
ids the portal manages on Mosquitto.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from acl.models import validate_managed_client_id, validate_managed_username
from brokers.models import Broker
from tests.brokers.test_pages import form_data
from tests.clients import as_user, logged_in

pytestmark = pytest.mark.django_db

RABBITMQ_USERNAME = "/:plant-gateway"  # vhost "/" and user "plant-gateway"
CLIENT_ID = "plant/line-1#2"


def test_the_api_saves_a_rabbitmq_username_and_a_foreign_client_id(
    world: dict,
) -> None:
    response = as_user(world["users"]["operator"]).post(
        "/api/v1/brokers/",
        {
            "product": world["product"].pk,
            "name": "RabbitMQ",
            "host": "mqtt.example",
            "username": RABBITMQ_USERNAME,
            "client_id": CLIENT_ID,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    broker = Broker.objects.get(pk=response.json()["id"])
    assert (broker.username, broker.client_id) == (RABBITMQ_USERNAME, CLIENT_ID)


def test_the_form_saves_a_rabbitmq_username(world: dict) -> None:
    client = logged_in(world["users"]["operator"], world["product"])
    client.post(
        "/brokers/new/",
        form_data(world["product"], name="RabbitMQ", username=RABBITMQ_USERNAME),
    )
    assert Broker.objects.get(name="RabbitMQ").username == RABBITMQ_USERNAME


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "plant\x00gateway"),
        ("username", "plant\x07gateway"),
        ("username", "u" * 257),
        ("client_id", "line\x00one"),
        ("client_id", "c" * 129),
    ],
)
def test_a_broker_connection_still_refuses_what_mqtt_forbids(
    world: dict, field: str, value: str
) -> None:
    response = as_user(world["users"]["operator"]).post(
        "/api/v1/brokers/",
        {
            "product": world["product"].pk,
            "name": "Bad",
            "host": "mqtt.example",
            field: value,
        },
        format="json",
    )
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize("value", ["plant/user", "a+b", "a#b"])
def test_users_managed_on_mosquitto_keep_its_acl_rules(value: str) -> None:
    with pytest.raises(ValidationError) as username_error:
        validate_managed_username(value)
    with pytest.raises(ValidationError) as client_id_error:
        validate_managed_client_id(value)
    assert username_error.value.code == client_id_error.value.code == "acl_chars"
