"""GET /api/v1/alerts/ with filters; POST /api/v1/alerts/{id}/ack/ by operators."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert
from tests.clients import as_user

pytestmark = pytest.mark.django_db

URL = "/api/v1/alerts/"


@pytest.fixture
def alerts(world: dict[str, Any]) -> dict[str, Alert]:
    plant, other = world["product"], world["other"]
    return {
        "open": Alert.objects.create(
            product=plant, rule_key="rule:1", subject="d1", severity="critical"
        ),
        "resolved": Alert.objects.create(
            product=plant,
            rule_key="rule:1",
            subject="d2",
            state="resolved",
            resolved_at=timezone.now(),
        ),
        "theirs": Alert.objects.create(product=other, rule_key="rule:9", subject="x"),
    }


def ids(world: dict[str, Any], query: str = "", who: str = "viewer") -> list[int]:
    response = as_user(world["users"][who]).get(f"{URL}?{query}")
    assert response.status_code == 200
    return sorted(a["id"] for a in response.json()["results"])


def test_alerts_are_listed_per_product_and_state(
    world: dict[str, Any], alerts: dict[str, Alert]
) -> None:
    mine = sorted([alerts["open"].pk, alerts["resolved"].pk])
    assert ids(world) == mine
    assert ids(world, "state=open") == [alerts["open"].pk]
    assert ids(world, "state=resolved") == [alerts["resolved"].pk]
    assert ids(world, f"product={world['product'].pk}&severity=critical") == [
        alerts["open"].pk
    ]
    assert ids(world, f"product={world['other'].pk}") == []
    assert ids(world, who="outsider") == [alerts["theirs"].pk]
    assert as_user(world["users"]["viewer"]).get(f"{URL}?state=x").status_code == 400


def test_an_alert_reads_with_its_timestamps(
    world: dict[str, Any], alerts: dict[str, Alert]
) -> None:
    body = as_user(world["users"]["viewer"]).get(f"{URL}{alerts['resolved'].pk}/")
    data = body.json()
    assert data["state"] == "resolved" and data["resolved_at"]
    assert data["opened_at"] and data["acknowledged_by"] is None


@pytest.mark.parametrize(
    ("who", "status"),
    [("superuser", 200), ("admin", 200), ("operator", 200), ("viewer", 403)],
)
def test_operators_acknowledge(
    world: dict[str, Any], alerts: dict[str, Alert], who: str, status: int
) -> None:
    response = as_user(world["users"][who]).post(f"{URL}{alerts['open'].pk}/ack/")
    assert response.status_code == status
    alert = Alert.objects.get(pk=alerts["open"].pk)
    if status == 200:
        assert response.json()["acknowledged_by"] == world["users"][who].username
        assert alert.acknowledged_by == world["users"][who]
        assert alert.acknowledged_at is not None
    else:
        assert alert.acknowledged_at is None


def test_outsiders_cannot_acknowledge(
    world: dict[str, Any], alerts: dict[str, Alert]
) -> None:
    client = as_user(world["users"]["outsider"])
    assert client.post(f"{URL}{alerts['open'].pk}/ack/").status_code == 404


def test_acknowledging_twice_keeps_the_first(
    world: dict[str, Any], alerts: dict[str, Alert]
) -> None:
    url = f"{URL}{alerts['open'].pk}/ack/"
    as_user(world["users"]["operator"]).post(url)
    second = as_user(world["users"]["admin"]).post(url)
    assert second.status_code == 200
    assert second.json()["acknowledged_by"] == world["users"]["operator"].username
    assert ids(world, "acknowledged=true") == [alerts["open"].pk]


def test_alerts_cannot_be_written_through_the_api(
    world: dict[str, Any], alerts: dict[str, Alert]
) -> None:
    client = as_user(world["users"]["superuser"])
    assert client.post(URL, {}, format="json").status_code == 405
    assert client.delete(f"{URL}{alerts['open'].pk}/").status_code == 405
