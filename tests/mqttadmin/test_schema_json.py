"""`/api/schema/?format=json` answers the OpenAPI document as JSON, YAML stays the
default (the site's own route)."""

from __future__ import annotations

import json

import pytest
import yaml
from django.test import Client

pytestmark = pytest.mark.django_db


def test_format_json_answers_json() -> None:
    response = Client().get("/api/schema/?format=json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    assert "/api/v1/auth/token/" in document["paths"]


@pytest.mark.parametrize("query", ["", "?format=yaml"])
def test_yaml_stays_the_default(query: str) -> None:
    response = Client().get(f"/api/schema/{query}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert "/api/v1/auth/token/" in yaml.safe_load(response.content)["paths"]


def test_accept_json_still_answers_json() -> None:
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert json.loads(response.content)["openapi"].startswith("3.")
