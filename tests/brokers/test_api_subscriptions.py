"""/api/v1/subscriptions/: the role matrix and topic filter validation."""

from __future__ import annotations

from typing import Any

import pytest

from brokers.models import Subscription
from mqttadmin.models import AuditEntry
from tests.clients import as_user
from tests.factories import make_broker, make_subscription

pytestmark = pytest.mark.django_db

URL = "/api/v1/subscriptions/"


def detail(subscription: Subscription) -> str:
    return f"{URL}{subscription.pk}/"


def subscription_state() -> list[tuple[Any, ...]]:
    return sorted(
        Subscription.objects.values_list(
            "pk", "broker_id", "name", "topic_filter", "qos", "enabled"
        )
    )


@pytest.mark.parametrize(
    ("who", "sees"),
    [
        ("superuser", {"All", "Far"}),
        ("admin", {"All"}),
        ("operator", {"All"}),
        ("viewer", {"All"}),
        ("outsider", {"Far"}),
    ],
)
def test_list_is_scoped(world: dict, who: str, sees: set) -> None:
    make_subscription(make_broker(world["product"]))
    make_subscription(make_broker(world["other"], name="B"), name="Far")
    response = as_user(world["users"][who]).get(URL)
    assert response.status_code == 200
    assert {s["name"] for s in response.json()["results"]} == sees


def test_list_filters_by_broker(world: dict) -> None:
    first = make_broker(world["product"])
    second = make_broker(world["product"], name="Line 2")
    make_subscription(first)
    make_subscription(second, name="Second")
    client = as_user(world["users"]["viewer"])
    response = client.get(URL, {"broker": second.pk})
    assert [s["name"] for s in response.json()["results"]] == ["Second"]
    # Another product's broker id gives an empty list, not an error.
    other = make_broker(world["other"], name="Far")
    assert client.get(URL, {"broker": other.pk}).json()["results"] == []


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 200),
        ("admin", 200),
        ("operator", 200),
        ("viewer", 200),
        ("outsider", 404),
    ],
)
def test_retrieve(world: dict, who: str, status: int) -> None:
    subscription = make_subscription(make_broker(world["product"]))
    response = as_user(world["users"][who]).get(detail(subscription))
    assert response.status_code == status
    if status == 200:
        assert (
            response.json().items()
            >= {
                "id": subscription.pk,
                "broker": subscription.broker_id,
                "name": "All",
                "topic_filter": "plant/#",
                "qos": 0,
                "enabled": True,
                "store_messages": True,
                "created_at": response.json()["created_at"],
                "updated_at": response.json()["updated_at"],
            }.items()
        )


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 201),
        ("admin", 201),
        ("operator", 201),
        ("viewer", 403),
        ("outsider", 400),
    ],
)
def test_create(world: dict, who: str, status: int) -> None:
    broker = make_broker(world["product"])
    response = as_user(world["users"][who]).post(
        URL,
        {
            "broker": broker.pk,
            "name": "Shared",
            "topic_filter": "$share/workers/plant/+/temp",
            "qos": 1,
            "store_messages": False,
        },
        format="json",
    )
    assert response.status_code == status, response.content
    created = Subscription.objects.filter(name="Shared").first()
    assert (created is not None) == (status == 201)
    if status == 201:
        assert created is not None
        assert (created.qos, created.store_messages) == (1, False)
        entry = AuditEntry.objects.get(action="subscription.create")
        assert entry.product == world["product"] and entry.source == "api"
    if status == 400:
        assert "does not exist" in response.json()["broker"][0]


def test_viewer_gets_403_before_validation(world: dict) -> None:
    broker = make_broker(world["product"])
    response = as_user(world["users"]["viewer"]).post(
        URL, {"broker": broker.pk, "topic_filter": "a/#/b"}, format="json"
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 200),
        ("admin", 200),
        ("operator", 200),
        ("viewer", 403),
        ("outsider", 404),
    ],
)
def test_update(world: dict, who: str, status: int) -> None:
    subscription = make_subscription(make_broker(world["product"]))
    response = as_user(world["users"][who]).patch(
        detail(subscription), {"topic_filter": "plant/+/temp", "qos": 2}, format="json"
    )
    assert response.status_code == status
    subscription.refresh_from_db()
    assert (subscription.topic_filter == "plant/+/temp") == (status == 200)
    assert AuditEntry.objects.filter(action="subscription.update").exists() == (
        status == 200
    )


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 204),
        ("admin", 204),
        ("operator", 204),
        ("viewer", 403),
        ("outsider", 404),
    ],
)
def test_delete(world: dict, who: str, status: int) -> None:
    subscription = make_subscription(make_broker(world["product"]))
    response = as_user(world["users"][who]).delete(detail(subscription))
    assert response.status_code == status
    assert Subscription.objects.filter(pk=subscription.pk).exists() == (status != 204)


def test_a_subscription_cannot_move_to_another_broker(world: dict) -> None:
    subscription = make_subscription(make_broker(world["product"]))
    other = make_broker(world["product"], name="Line 2")
    response = as_user(world["users"]["admin"]).patch(
        detail(subscription), {"broker": other.pk}, format="json"
    )
    assert response.status_code == 400 and "broker" in response.json()


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"topic_filter": "a/#/b"}, "topic_filter", "last level"),
        ({"topic_filter": "a/b#"}, "topic_filter", "last level"),
        ({"topic_filter": "sport+"}, "topic_filter", "whole level"),
        ({"topic_filter": "a/+b/c"}, "topic_filter", "whole level"),
        ({"topic_filter": ""}, "topic_filter", "empty"),
        ({"topic_filter": "a\x00b"}, "topic_filter", "NUL"),
        ({"topic_filter": "x" * 65536}, "topic_filter", "65535"),
        ({"topic_filter": "$share//x"}, "topic_filter", "group"),
        ({"topic_filter": "$share/g+/x"}, "topic_filter", "group"),
        ({"topic_filter": "$share/group"}, "topic_filter", "needs a filter"),
        ({"topic_filter": "$share/group/a/#/b"}, "topic_filter", "last level"),
        ({"topic_filter": 5}, "topic_filter", "string"),
        ({"qos": 3}, "qos", "0, 1 or 2"),
        ({"qos": -1}, "qos", "0, 1 or 2"),
        ({"name": ""}, "name", "blank"),
        ({"name": "All"}, "name", "already has one"),
    ],
)
def test_invalid_subscription_names_the_field_and_changes_nothing(
    world: dict, fields: dict, field: str, says: str
) -> None:
    broker = make_broker(world["product"])
    existing = make_subscription(broker)
    client = as_user(world["users"]["operator"])
    before = subscription_state()
    audits = AuditEntry.objects.count()

    body = {"broker": broker.pk, "name": "New", "topic_filter": "a/b", **fields}
    response = client.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert says in " ".join(response.json()[field]), response.json()

    if field != "name":
        response = client.patch(detail(existing), fields, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()

    assert subscription_state() == before
    assert AuditEntry.objects.count() == audits


@pytest.mark.parametrize(
    "topic_filter",
    ["#", "+", "a/+/c", "a/#", "/", "a//b", "$SYS/#", "$share/g/#", " spaced / x "],
)
def test_valid_filters_are_kept_as_given(
    world: dict, operator_client: Any, topic_filter: str
) -> None:
    broker = make_broker(world["product"])
    response = operator_client.post(
        URL,
        {"broker": broker.pk, "name": "F", "topic_filter": topic_filter},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert Subscription.objects.get().topic_filter == topic_filter


@pytest.fixture
def operator_client(world: dict) -> Any:
    return as_user(world["users"]["operator"])
