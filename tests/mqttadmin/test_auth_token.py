"""Token authentication for integrations."""

import pytest
from rest_framework.test import APIClient

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_token_is_issued_for_good_credentials(world: dict) -> None:
    response = APIClient().post(
        "/api/v1/auth/token/",
        {"username": "victor", "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 200
    token = response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    products = client.get("/api/v1/products/").json()["results"]
    assert [p["name"] for p in products] == ["Plant"]


def test_token_is_refused_for_a_bad_password(world: dict) -> None:
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "victor", "password": "nope"}, format="json"
    )
    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_a_wrong_token_is_401() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get("/api/v1/products/").status_code == 401
