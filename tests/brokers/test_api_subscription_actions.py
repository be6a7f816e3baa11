"""Subscriptions with actions through the API: validation, counters, dry run."""

from __future__ import annotations

import pytest

from brokers.models import Broker, Subscription
from tests.clients import as_user

pytestmark = pytest.mark.django_db

WEBHOOK = {
    "type": "webhook",
    "url": "http://127.0.0.1:9/hook",
    "method": "POST",
    "headers": {"X-Token": "t"},
    "body": '{"t": "{{ topic }}", "v": {{ payload.value }}}',
    "timeout_s": 5,
}


@pytest.fixture
def broker(world: dict) -> Broker:
    return Broker.objects.create(product=world["product"], name="b", host="127.0.0.1")


def test_create_with_actions_and_shared_group(world: dict, broker: Broker) -> None:
    response = as_user(world["users"]["operator"]).post(
        "/api/v1/subscriptions/",
        {
            "broker": broker.pk,
            "name": "events",
            "description": "Business events",
            "topic_filter": "apps/+/events",
            "shared_group": "bre",
            "qos": 1,
            "actions": [
                WEBHOOK,
                {"type": "republish", "topic": "out/{{ topic_levels.1 }}"},
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["shared_group"] == "bre" and len(body["actions"]) == 2
    assert body["messages_received"] == 0 and body["last_error"] == ""
    subscription = Subscription.objects.get(pk=body["id"])
    assert subscription.subscribe_filter == "$share/bre/apps/+/events"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"actions": [{"type": "webhook", "url": "nope"}]}, "actions[0].url"),
        ({"actions": [{"type": "sms"}]}, "actions[0].type"),
        ({"actions": "webhook"}, "list"),
        ({"shared_group": "a/b"}, "group"),
    ],
)
def test_bad_actions_are_refused_naming_the_field(
    world: dict, broker: Broker, payload: dict, needle: str
) -> None:
    response = as_user(world["users"]["operator"]).post(
        "/api/v1/subscriptions/",
        {"broker": broker.pk, "name": "x", "topic_filter": "a/#", **payload},
        format="json",
    )
    assert response.status_code == 400
    field = next(iter(payload))
    assert needle in " ".join(response.json()[field])
    assert not Subscription.objects.exists()


def test_counters_are_read_only(world: dict, broker: Broker) -> None:
    subscription = Subscription.objects.create(
        broker=broker, name="s", topic_filter="#"
    )
    response = as_user(world["users"]["operator"]).patch(
        f"/api/v1/subscriptions/{subscription.pk}/",
        {"messages_received": 99, "enabled": False},
        format="json",
    )
    assert response.status_code == 200
    subscription.refresh_from_db()
    assert subscription.messages_received == 0 and subscription.enabled is False


def test_dry_run_renders_without_doing(world: dict, broker: Broker, http_sink) -> None:
    hook = {**WEBHOOK, "url": f"{http_sink.url}/hook"}
    subscription = Subscription.objects.create(
        broker=broker,
        name="s",
        topic_filter="plant/#",
        actions=[
            hook,
            {
                "type": "alert",
                "value": "{{ payload.value }}",
                "op": ">=",
                "threshold": 10,
            },
            {"type": "email", "to": "ops@example.com", "subject": "{% if %}"},
        ],
    )
    url = f"/api/v1/subscriptions/{subscription.pk}/test/"
    sample = {"topic": "plant/boiler", "payload": {"value": 12}}
    assert (
        as_user(world["users"]["viewer"]).post(url, sample, format="json").status_code
        == 403
    )
    body = as_user(world["users"]["operator"]).post(url, sample, format="json").json()
    assert body["matches"] is True
    webhook, alert, email = body["actions"]
    assert webhook["body"] == '{"t": "plant/boiler", "v": 12}' and webhook["ok"]
    assert alert["crossed"] is True and alert["would"] == "open"
    assert email["ok"] is False and "template error" in email["error"]
    assert http_sink.requests == []  # nothing was called
    bad = as_user(world["users"]["operator"]).post(
        url, {"topic": "plant/#", "payload": "x"}, format="json"
    )
    assert bad.status_code == 400 and "topic" in bad.json()
