"""API throttles: per token, 429 with Retry-After, rates from settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from mqttadmin.security import token_issue
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def low_rates(settings: Any) -> Iterator[None]:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token": "3/minute", "anonymous": "2/minute"},
    }
    cache.clear()
    yield
    cache.clear()


def with_token(user: Any) -> APIClient:
    client = APIClient()
    key = token_issue(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_token_past_its_rate_gets_429_with_retry_after(low_rates: None) -> None:
    client = with_token(make_user())
    statuses = [client.get("/api/v1/products/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.get("/api/v1/products/")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert "throttled" in response.json()["detail"].lower()


def test_each_token_has_its_own_budget(low_rates: None) -> None:
    first, second = with_token(make_user()), with_token(make_user())
    for _ in range(3):
        first.get("/api/v1/products/")
    assert first.get("/api/v1/products/").status_code == 429
    assert second.get("/api/v1/products/").status_code == 200


def test_anonymous_calls_are_limited_per_address(low_rates: None) -> None:
    anonymous = APIClient()
    url = "/api/v1/auth/token/"
    body = {"username": "nobody", "password": "x"}
    assert anonymous.post(url, body, format="json").status_code == 400
    assert anonymous.post(url, body, format="json").status_code == 400
    assert anonymous.post(url, body, format="json").status_code == 429
    elsewhere = APIClient(REMOTE_ADDR="192.0.2.50")
    assert elsewhere.post(url, body, format="json").status_code == 400


def test_default_rates_come_from_the_environment_settings() -> None:
    from django.conf import settings

    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    assert rates == {
        "token": settings.MQTTADMIN_API_RATE,
        "anonymous": settings.MQTTADMIN_API_ANON_RATE,
    }


def test_a_malformed_rate_stops_start_up_naming_the_variable(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=Path(__file__).resolve().parents[2],
        env={
            "PATH": os.environ["PATH"],
            "MQTTADMIN_VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "mqttadmin.settings",
            "MQTTADMIN_API_RATE": "lots",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "MQTTADMIN_API_RATE" in result.stderr
