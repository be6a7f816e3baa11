"""Which webhook headers are secrets is the user's choice: Authorization, Cookie and
names with key, token or secret start as secrets; only secret values are masked,
and only they are bound to their exact URL. Plain headers are shown and survive a
URL change; a changed URL drops the secret values and says so."""

from __future__ import annotations

import re
from typing import Any

import pytest
from rest_framework.test import APIClient

from brokers.action_headers import mask_headers, secret_by_default
from brokers.models import Broker, BrokerStatus, Subscription
from mqttadmin.models import AuditEntry
from tests.brokers.test_pages import error_next_to
from tests.brokers.test_pages_subscriptions import (
    action_data,
    header_rows,
    management,
    subscription_data,
)
from tests.brokers.test_webhook_header_secrets import run_once
from tests.clients import as_user, htmx_swap, logged_in

pytestmark = pytest.mark.django_db

TOKEN = "Bearer choice-Secret-0001"
SITE = "plant-7"


@pytest.fixture
def broker(world: dict) -> Broker:
    broker = Broker.objects.create(
        product=world["product"], name="b", host="127.0.0.1", port=1
    )
    BrokerStatus.objects.create(broker=broker)
    return broker


@pytest.fixture
def operator(world: dict) -> APIClient:
    return as_user(world["users"]["operator"])


def create(client: APIClient, broker: Broker, action: dict[str, Any]) -> Any:
    return client.post(
        "/api/v1/subscriptions/",
        {
            "broker": broker.pk,
            "name": "s",
            "topic_filter": "plant/#",
            "actions": [action],
        },
        format="json",
    )


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("authorization", True),
        ("Proxy-Authorization", True),
        ("Cookie", True),
        ("X-Api-Key", True),
        ("X-Auth-Token", True),
        ("Client-Secret", True),
        ("X-Site", False),
        ("Content-Type", False),
        ("Accept", False),
    ],
)
def test_the_default_follows_the_name(name: str, secret: bool) -> None:
    assert secret_by_default(name) is secret


def test_without_a_choice_the_name_decides_and_only_secrets_are_masked(
    world: dict, broker: Broker, operator: APIClient
) -> None:
    action = {
        "type": "webhook",
        "url": "https://hooks.example.com/h",
        "headers": {"Authorization": TOKEN, "X-Site": SITE},
    }
    response = create(operator, broker, action)
    assert response.status_code == 201, response.content
    read = as_user(world["users"]["viewer"]).get(
        f"/api/v1/subscriptions/{response.json()['id']}/"
    )
    shown = read.json()["actions"][0]
    assert shown["headers"] == {"Authorization": "***", "X-Site": SITE}
    assert shown["secret_headers"] == ["Authorization"]
    assert TOKEN not in read.content.decode()
    stored = Subscription.objects.get().actions[0]
    assert stored["secret_headers"] == ["Authorization"]


def test_the_users_choice_overrides_the_name(
    broker: Broker, operator: APIClient
) -> None:
    action = {
        "type": "webhook",
        "url": "https://hooks.example.com/h",
        "headers": {"Authorization": "Basic public", "X-Site": SITE},
        "secret_headers": ["X-Site"],
    }
    response = create(operator, broker, action)
    assert response.status_code == 201, response.content
    shown = response.json()["actions"][0]["headers"]
    assert shown == {"Authorization": "Basic public", "X-Site": "***"}


def test_a_secret_list_naming_a_missing_header_is_refused(
    broker: Broker, operator: APIClient
) -> None:
    action = {
        "type": "webhook",
        "url": "https://hooks.example.com/h",
        "headers": {"X-Site": SITE},
        "secret_headers": ["Authorization"],
    }
    response = create(operator, broker, action)
    assert response.status_code == 400
    assert "authorization" in " ".join(response.json()["actions"])
    assert not Subscription.objects.exists()


def test_actions_saved_before_the_choice_keep_every_header_secret(
    broker: Broker,
) -> None:
    legacy = [
        {
            "type": "webhook",
            "url": "https://hooks.example.com/h",
            "headers": {"Authorization": TOKEN, "X-Site": SITE},
        }
    ]
    assert mask_headers(legacy)[0]["headers"] == {
        "Authorization": "***",
        "X-Site": "***",
    }


def test_a_url_change_keeps_plain_headers_and_drops_secrets(
    broker: Broker, operator: APIClient, http_sink: Any
) -> None:
    first = {
        "type": "webhook",
        "url": f"{http_sink.url}/hook",
        "headers": {"Authorization": TOKEN, "X-Site": SITE},
    }
    pk = create(operator, broker, first).json()["id"]
    read = operator.get(f"/api/v1/subscriptions/{pk}/").json()["actions"][0]
    moved = {**read, "url": f"{http_sink.url}/other"}
    refused = operator.patch(
        f"/api/v1/subscriptions/{pk}/", {"actions": [moved]}, format="json"
    )
    assert refused.status_code == 400
    message = " ".join(refused.json()["actions"])
    assert "URL changed" in message and "“Authorization”" in message
    assert "X-Site" not in message  # a plain header moves along
    assert Subscription.objects.get(pk=pk).actions[0]["url"].endswith("/hook")
    # With the secret typed again for the new URL, the plain header came along.
    moved["headers"] = {**moved["headers"], "Authorization": TOKEN + "-new"}
    saved = operator.patch(
        f"/api/v1/subscriptions/{pk}/", {"actions": [moved]}, format="json"
    )
    assert saved.status_code == 200, saved.content
    request, _run = run_once(pk, http_sink)
    assert request.path == "/other"
    assert request.headers["X-Site"] == SITE
    assert request.headers["Authorization"] == TOKEN + "-new"


def test_the_audit_shows_plain_values_and_never_secret_ones(
    broker: Broker, operator: APIClient
) -> None:
    action = {
        "type": "webhook",
        "url": "https://hooks.example.com/h",
        "headers": {"Authorization": TOKEN, "X-Site": SITE},
    }
    create(operator, broker, action)
    entry = AuditEntry.objects.get(action="subscription.create")
    assert entry.changes["actions"][1][0]["headers"] == {
        "Authorization": "***",
        "X-Site": SITE,
    }
    assert TOKEN not in str(entry.changes)


# --- The editor --------------------------------------------------------------------


def _editor_post(world: dict, broker: Broker, sid: int | None, **data: Any) -> str:
    client = logged_in(world["users"]["operator"])
    url = (
        f"/brokers/{broker.pk}/subscriptions/{sid}/edit/"
        if sid
        else f"/brokers/{broker.pk}/subscriptions/new/"
    )
    response = client.post(url, data, **htmx_swap("subscription-editor"))
    return response.content.decode()


def test_the_editor_stores_the_choice_and_shows_only_plain_values(
    world: dict, broker: Broker
) -> None:
    _editor_post(
        world,
        broker,
        None,
        **subscription_data(**management(1)),
        **action_data(0, "webhook", url="https://hooks.example.com/h"),
        **header_rows(
            0,
            ("Authorization", TOKEN, "auto"),
            ("X-Site", SITE, "auto"),
            ("X-Private", "hidden-value-1", "secret"),
        ),
    )
    sub = Subscription.objects.get()
    assert sub.actions[0]["secret_headers"] == ["Authorization", "X-Private"]
    client = logged_in(world["users"]["operator"])
    html = client.get(
        f"/brokers/{broker.pk}/subscriptions/{sub.pk}/edit/"
    ).content.decode()
    assert f'value="{SITE}"' in html
    assert TOKEN not in html and "hidden-value-1" not in html
    assert html.count("saved: leave empty to keep") == 2


def test_the_editor_drops_secrets_on_a_url_change_and_says_so(
    world: dict, broker: Broker
) -> None:
    sub = Subscription.objects.create(
        broker=broker,
        name="s",
        topic_filter="plant/#",
        actions=[
            {
                "type": "webhook",
                "url": "https://hooks.example.com/h",
                "headers": {"Authorization": TOKEN, "X-Site": SITE},
                "secret_headers": ["Authorization"],
            }
        ],
    )
    changed = {
        **subscription_data(topic_filter="plant/#", **management(1)),
        **action_data(0, "webhook", url="https://hooks.example.com/elsewhere"),
    }
    html = _editor_post(
        world,
        broker,
        sub.pk,
        **changed,
        **header_rows(0, ("Authorization", "", "saved"), ("X-Site", SITE, "plain")),
    )
    assert error_next_to(html, "actions-0-headers").count("The URL changed") == 1
    # The row no longer claims a saved value; the plain value is still there.
    assert "saved: leave empty to keep" not in html
    assert not re.search(r'name="actions-0-header_0_saved" value="1"', html)
    assert f'value="{SITE}"' in html and TOKEN not in html
    assert Subscription.objects.get(pk=sub.pk).actions[0]["url"].endswith("/h")
    # Typed again, it saves: the secret for the new URL, the plain header kept.
    _editor_post(
        world,
        broker,
        sub.pk,
        **changed,
        **header_rows(
            0, ("Authorization", "Bearer new", "secret"), ("X-Site", SITE, "plain")
        ),
    )
    action = Subscription.objects.get(pk=sub.pk).actions[0]
    assert action["url"].endswith("/elsewhere")
    assert action["headers"] == {"Authorization": "Bearer new", "X-Site": SITE}


def test_header_rows_that_break_a_rule_say_so_at_the_headers(
    world: dict, broker: Broker
) -> None:
    html = _editor_post(
        world,
        broker,
        None,
        **subscription_data(**management(1)),
        **action_data(0, "webhook", url="https://hooks.example.com/h"),
        **header_rows(
            0,
            ("X-Long", "v" * 8001, "plain"),
            ("", "orphan", "plain"),
            ("X-Empty", "", "plain"),
            ("x-long", "again", "plain"),
        ),
    )
    errors = error_next_to(html, "actions-0-headers")
    assert "Header 1 value" in errors and "8000" in errors
    assert "Header 2 has a value but no name." in errors
    assert "Header “X-Empty” needs a value." in errors
    assert not Subscription.objects.exists()
