"""The alerts page: filters, the HTMX table, acknowledging."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert
from tests.clients import HTMX, logged_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def alerts(world: dict[str, Any]) -> dict[str, Alert]:
    plant, other = world["product"], world["other"]
    return {
        "open": Alert.objects.create(
            product=plant,
            rule_key="rule:1",
            subject="boiler-1",
            severity="critical",
            message="Boiler: temperature is 95",
        ),
        "resolved": Alert.objects.create(
            product=plant,
            rule_key="rule:1",
            subject="pump-7",
            state="resolved",
            resolved_at=timezone.now(),
        ),
        "theirs": Alert.objects.create(
            product=other, rule_key="rule:9", subject="elsewhere"
        ),
    }


def get(
    world: dict[str, Any], query: str = "", who: str = "viewer", **extra: Any
) -> str:
    client = logged_in(world["users"][who], world["product"])
    response = client.get(f"/alerts/?{query}", **extra)
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_shows_open_alerts_of_the_current_product(
    world: dict[str, Any], alerts: dict[str, Alert]
) -> None:
    html = get(world)
    assert "boiler-1" in html and "Boiler: temperature is 95" in html
    assert "pump-7" not in html and "elsewhere" not in html
    assert ">Acknowledge</button>" not in html  # viewers cannot


def test_filters_widen_and_narrow(
    world: dict[str, Any], alerts: dict[str, Alert]
) -> None:
    assert "pump-7" in get(world, "state=resolved")
    everything = get(world, "state=all&product=all")
    assert "boiler-1" in everything and "pump-7" in everything
    assert "elsewhere" not in everything  # not a member there
    assert "boiler-1" not in get(world, "severity=info")


def test_the_table_alone_for_htmx(
    world: dict[str, Any], alerts: dict[str, Alert]
) -> None:
    html = get(world, "state=all", **HTMX)
    assert html.lstrip().startswith('<div id="alerts-table"')
    assert "<html" not in html


def test_operators_acknowledge_from_the_page(
    world: dict[str, Any], alerts: dict[str, Alert]
) -> None:
    operator = world["users"]["operator"]
    client = logged_in(operator, world["product"])
    assert ">Acknowledge</button>" in get(world, who="operator")

    response = client.post(
        f"/alerts/{alerts['open'].pk}/ack/", {"state": "open"}, **HTMX
    )

    assert response.status_code == 200
    assert operator.username in response.content.decode()
    alert = Alert.objects.get(pk=alerts["open"].pk)
    assert alert.acknowledged_by == operator
    redirect = client.post(f"/alerts/{alerts['resolved'].pk}/ack/", {"state": "all"})
    assert redirect.status_code == 302 and redirect["Location"] == "/alerts/?state=all"


@pytest.mark.parametrize(("who", "status"), [("viewer", 403), ("outsider", 404)])
def test_others_cannot_acknowledge(
    world: dict[str, Any], alerts: dict[str, Alert], who: str, status: int
) -> None:
    client = logged_in(world["users"][who], world["product"])
    assert client.post(f"/alerts/{alerts['open'].pk}/ack/").status_code == status
    assert Alert.objects.get(pk=alerts["open"].pk).acknowledged_at is None
