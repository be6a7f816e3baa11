"""The OpenAPI document is valid and served with Swagger UI, offline."""

import pytest
import yaml
from django.test import Client
from openapi_spec_validator import validate


@pytest.mark.django_db
def test_schema_is_a_valid_openapi_document() -> None:
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    validate(document)
    assert "/api/v1/products/{id}/members/" in document["paths"]
    assert "/api/v1/auth/token/" in document["paths"]


@pytest.mark.django_db
def test_swagger_ui_uses_no_cdn() -> None:
    html = Client().get("/api/docs/").content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower() and "https://" not in html
