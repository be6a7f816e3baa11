"""Requests schemathesis once found answered with a 500, kept as fixed examples:
each must be a clear 4xx (or a normal answer) and change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from acl.models import MqttUser
from tests.clients import as_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "since", ["0483-03-22T03:24:27.488+22:32", "1756-07-13T17:32:31+16:22"]
)
def test_an_offset_postgresql_cannot_store_is_read_in_utc(
    seeded: dict[str, Any], since: str
) -> None:
    """Python accepts offsets up to ±23:59, PostgreSQL only up to ±15:59."""
    client = as_user(seeded["users"]["admin"])
    device = seeded["mine"]["device"]
    for url in ("/api/v1/audit/", f"/api/v1/devices/{device.pk}/telemetry/"):
        response = client.get(url, {"since": since})
        assert response.status_code == 200, (url, response.content[:300])


def test_a_role_name_with_nul_is_refused_naming_roles(seeded: dict[str, Any]) -> None:
    user = seeded["mine"]["mqtt_user"]
    broker = seeded["mine"]["broker"]
    response = as_user(seeded["users"]["admin"]).put(
        f"/api/v1/brokers/{broker.pk}/mqtt-users/{user.pk}/",
        {"roles": ["a\x00b"]},
        format="json",
    )
    assert response.status_code == 400
    assert "roles" in response.json()
    assert list(MqttUser.objects.get(pk=user.pk).roles.all()) == []


def test_a_token_request_with_an_overlong_username_is_a_400(
    seeded: dict[str, Any],
) -> None:
    """No account has a 300-character name; django-axes could not even record
    the failed attempt (its column holds 255)."""
    from rest_framework.test import APIClient

    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "u" * 300, "password": "x"}, format="json"
    )
    assert response.status_code == 400
    assert "username" in response.json()


def test_a_limit_past_64_bits_is_served_as_the_ceiling(seeded: dict[str, Any]) -> None:
    broker = seeded["mine"]["broker"]
    response = as_user(seeded["users"]["admin"]).get(
        f"/api/v1/brokers/{broker.pk}/mqtt-roles/",
        {"limit": "40221727013868561502779824144384", "offset": "-1"},
    )
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1
