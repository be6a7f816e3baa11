"""The Subscriptions tab: the table with counters, the editor that builds actions
from forms (add action, errors at their action), the dry run; with the role matrix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from brokers.models import Broker, Subscription
from tests.brokers.test_pages import error_next_to
from tests.clients import HTMX, logged_in
from tests.factories import make_broker, make_subscription

pytestmark = pytest.mark.django_db

ROLES = [
    ("superuser", 200),
    ("admin", 200),
    ("operator", 200),
    ("viewer", 200),
    ("outsider", 404),
]


def management(total: int) -> dict[str, str]:
    return {
        "actions-TOTAL_FORMS": str(total),
        "actions-INITIAL_FORMS": "0",
        "actions-MIN_NUM_FORMS": "0",
        "actions-MAX_NUM_FORMS": "20",
    }


def subscription_data(**overrides: Any) -> dict[str, str]:
    data = {
        "name": "Temps",
        "description": "",
        "topic_filter": "sensors/+/temp",
        "shared_group": "",
        "qos": "1",
        "enabled": "on",
        "store_messages": "on",
        **management(0),
    }
    data.update(overrides)
    return data


def action_data(index: int, kind: str, **fields: str) -> dict[str, str]:
    base = {
        "type": kind,
        "method": "POST",
        "timeout_s": "10",
        "qos": "0",
        "op": ">",
        "severity": "warning",
    }
    base.update(fields)
    return {f"actions-{index}-{key}": value for key, value in base.items()}


def header_rows(index: int, *rows: tuple[str, str, str]) -> dict[str, str]:
    """What the editor posts for action `index`'s header rows, each (name, value,
    how): "auto" (box untouched: the name decides), "secret", "plain", or "saved"
    (a saved secret left empty: keep it)."""
    data: dict[str, str] = {}
    for n, (name, value, how) in enumerate(rows):
        prefix = f"actions-{index}-header_{n}"
        data[f"{prefix}_name"] = name
        data[f"{prefix}_value"] = value
        data[f"{prefix}_auto"] = "1" if how == "auto" else ""
        data[f"{prefix}_saved"] = "1" if how == "saved" else ""
        if how in ("secret", "saved"):
            data[f"{prefix}_secret"] = "on"
    return data


# --- Role matrix ------------------------------------------------------------------


@pytest.mark.parametrize(("who", "status"), ROLES)
def test_tab_is_scoped_and_read_only_for_viewers(
    world: dict, who: str, status: int
) -> None:
    broker = make_broker(world["product"])
    sub = make_subscription(
        broker, name="Temps", topic_filter="sensors/#", last_error=""
    )
    client = logged_in(world["users"][who])
    response = client.get(f"/brokers/{broker.pk}/?tab=subscriptions")
    assert response.status_code == status
    if status != 200:
        return
    html = response.content.decode()
    assert "Temps" in html
    assert 'hx-trigger="every 5s"' in html
    writes = f"/subscriptions/{sub.pk}/tab-toggle/" in html
    assert writes == (who != "viewer")
    assert ("/subscriptions/new/" in html) == (who != "viewer")
    assert ("hx-confirm" in html) == (who != "viewer")


@pytest.mark.parametrize(("who", "status"), ROLES)
def test_poll_returns_the_table_with_counters(
    world: dict, who: str, status: int
) -> None:
    broker = make_broker(world["product"])
    sub = make_subscription(broker, name="Temps", topic_filter="sensors/#")
    Subscription.objects.filter(pk=sub.pk).update(
        messages_received=4321, actions_failed=7, last_error="boom happened"
    )
    client = logged_in(world["users"][who])
    response = client.get(f"/brokers/{broker.pk}/?tab=subscriptions", **HTMX)
    assert response.status_code == status
    if status == 200:
        html = response.content.decode()
        assert html.lstrip().startswith('<div id="subscription-table"')
        assert "4321" in html and "boom happened" in html


def _writes(broker: Broker) -> dict[str, tuple[str, dict[str, str]]]:
    sub = make_subscription(broker, name="W", topic_filter="w/#")
    base = f"/brokers/{broker.pk}/subscriptions"
    return {
        "new": (f"{base}/new/", subscription_data(name="Created")),
        "edit": (f"{base}/{sub.pk}/edit/", subscription_data(name="W")),
        "dry-run": (f"{base}/{sub.pk}/dry-run/", {"topic": "w/1", "payload": "1"}),
        "toggle": (f"{base}/{sub.pk}/tab-toggle/", {}),
        "delete": (f"{base}/{sub.pk}/tab-delete/", {}),
    }


@pytest.mark.parametrize("write", ["new", "edit", "dry-run", "toggle", "delete"])
@pytest.mark.parametrize(
    ("who", "status"),
    [("operator", (200, 302)), ("viewer", (403,)), ("outsider", (404,))],
)
def test_posts_need_an_operator(
    world: dict, who: str, status: tuple[int, ...], write: str
) -> None:
    broker = make_broker(world["product"])
    url, data = _writes(broker)[write]
    before = list(Subscription.objects.values_list("name", "enabled"))
    response = logged_in(world["users"][who]).post(url, data)
    assert response.status_code in status
    if who != "operator":
        assert list(Subscription.objects.values_list("name", "enabled")) == before


@pytest.mark.parametrize(("who", "status"), [("viewer", 403), ("outsider", 404)])
def test_editor_pages_need_an_operator(world: dict, who: str, status: int) -> None:
    broker = make_broker(world["product"])
    sub = make_subscription(broker, name="Temps", topic_filter="sensors/#")
    client = logged_in(world["users"][who])
    base = f"/brokers/{broker.pk}/subscriptions"
    assert client.get(f"{base}/new/").status_code == status
    assert client.get(f"{base}/{sub.pk}/edit/").status_code == status


def test_toggle_and_delete_from_the_tab(world: dict) -> None:
    broker = make_broker(world["product"])
    sub = make_subscription(broker, name="Temps", topic_filter="sensors/#")
    client = logged_in(world["users"]["operator"])
    base = f"/brokers/{broker.pk}/subscriptions/{sub.pk}"
    response = client.post(f"{base}/tab-toggle/", **HTMX)
    assert 'id="subscription-table"' in response.content.decode()
    sub.refresh_from_db()
    assert sub.enabled is False
    client.post(f"{base}/tab-delete/", **HTMX)
    assert not Subscription.objects.exists()


# --- The editor -------------------------------------------------------------------


def test_create_with_webhook_and_republish_stores_the_actions(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    data = {
        **subscription_data(**management(3)),
        **action_data(
            0,
            "webhook",
            url="https://hooks.example.com/t",
            method="PUT",
            body='{"t": {{ payload.temp }}}',
            timeout_s="5",
            # Fields of other types are not stored.
            topic="ignored",
            subject="ignored",
        ),
        **action_data(
            1,
            "republish",
            topic="derived/{{ topic_levels.1 }}",
            payload="{{ payload.temp }}",
            qos="1",
            retain="on",
        ),
        # X-Token is a secret by its name, X-Site is not.
        **header_rows(0, ("X-Token", "abc", "auto"), ("X-Site", " plant 1 ", "auto")),
        # Ticked for deletion: not stored.
        **action_data(2, "email", to="a@example.com", subject="x", DELETE="on"),
    }
    response = client.post(f"/brokers/{broker.pk}/subscriptions/new/", data)
    assert response.status_code == 302
    sub = Subscription.objects.get(broker=broker)
    assert sub.qos == 1 and sub.topic_filter == "sensors/+/temp"
    assert sub.actions == [
        {
            "type": "webhook",
            "url": "https://hooks.example.com/t",
            "method": "PUT",
            "headers": {"X-Token": "abc", "X-Site": "plant 1"},
            "secret_headers": ["X-Token"],
            "body": '{"t": {{ payload.temp }}}',
            "timeout_s": 5,
        },
        {
            "type": "republish",
            "topic": "derived/{{ topic_levels.1 }}",
            "payload": "{{ payload.temp }}",
            "qos": 1,
            "retain": True,
        },
    ]
    # The edit page shows them again as forms: the secret value never, the plain
    # one as it is.
    edit = client.get(f"/brokers/{broker.pk}/subscriptions/{sub.pk}/edit/")
    html = edit.content.decode()
    assert 'value="X-Token"' in html and 'value="abc"' not in html
    assert 'value="plant 1"' in html
    assert 'value="derived/{{ topic_levels.1 }}"' in html
    # Saving what the page showed (the secret left empty) keeps the stored values.
    stored = sub.actions
    unchanged = {
        **subscription_data(**management(2)),
        **action_data(
            0,
            "webhook",
            url="https://hooks.example.com/t",
            method="PUT",
            body='{"t": {{ payload.temp }}}',
            timeout_s="5",
        ),
        **header_rows(0, ("X-Token", "", "saved"), ("X-Site", "plant 1", "plain")),
        **action_data(
            1,
            "republish",
            topic="derived/{{ topic_levels.1 }}",
            payload="{{ payload.temp }}",
            qos="1",
            retain="on",
        ),
    }
    response = client.post(
        f"/brokers/{broker.pk}/subscriptions/{sub.pk}/edit/", unchanged
    )
    assert response.status_code == 302
    sub.refresh_from_db()
    assert sub.actions == stored


def test_invalid_action_shows_its_error_and_saves_nothing(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    data = {
        **subscription_data(**management(2)),
        **action_data(0, "telemetry"),
        **action_data(1, "webhook", url="ftp://x"),
    }
    response = client.post(f"/brokers/{broker.pk}/subscriptions/new/", data, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "http:// or https://" in error_next_to(html, "actions-1-url")
    assert error_next_to(html, "actions-0-url") == ""
    assert not Subscription.objects.exists()


def test_invalid_action_on_edit_changes_nothing(world: dict) -> None:
    broker = make_broker(world["product"])
    sub = make_subscription(
        broker, name="Temps", topic_filter="sensors/#", actions=[{"type": "telemetry"}]
    )
    client = logged_in(world["users"]["operator"])
    data = {
        **subscription_data(name="Renamed", **management(1)),
        **action_data(0, "alert", value="{{ payload.t }}", threshold=""),
    }
    response = client.post(f"/brokers/{broker.pk}/subscriptions/{sub.pk}/edit/", data)
    assert response.status_code == 200
    assert error_next_to(response.content.decode(), "actions-0-threshold")
    sub.refresh_from_db()
    assert sub.name == "Temps" and sub.actions == [{"type": "telemetry"}]


def test_add_action_renders_one_more_form(world: dict) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    data = {
        **subscription_data(name="Keep me", **management(1)),
        **action_data(0, "webhook", url="https://a.example"),
        "add_action": "1",
    }
    response = client.post(f"/brokers/{broker.pk}/subscriptions/new/", data, **HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="subscription-editor"')
    assert 'name="actions-TOTAL_FORMS" value="2"' in html
    assert 'name="actions-1-type"' in html and 'name="actions-2-type"' not in html
    assert 'value="https://a.example"' in html and 'value="Keep me"' in html
    assert 'class="error"' not in html  # nothing validated yet
    assert not Subscription.objects.exists()


def test_dry_run_shows_the_rendered_webhook_body(world: dict) -> None:
    broker = make_broker(world["product"])
    sub = make_subscription(
        broker,
        name="Temps",
        topic_filter="sensors/#",
        actions=[
            {
                "type": "webhook",
                "url": "https://hooks.example.com/t",
                "body": "temp={{ payload.temp }} at {{ topic }}",
            },
            {
                "type": "alert",
                "value": "{{ payload.temp }}",
                "op": ">",
                "threshold": 30,
            },
        ],
    )
    client = logged_in(world["users"]["operator"])
    edit = client.get(f"/brokers/{broker.pk}/subscriptions/{sub.pk}/edit/")
    assert "Dry run" in edit.content.decode()
    response = client.post(
        f"/brokers/{broker.pk}/subscriptions/{sub.pk}/dry-run/",
        {"topic": "sensors/a/temp", "payload": json.dumps({"temp": 42.5})},
        **HTMX,
    )
    html = response.content.decode()
    assert "temp=42.5 at sensors/a/temp" in html
    assert "The topic matches the filter." in html
    assert "open" in html  # the alert would open


def test_a_masked_header_without_a_saved_value_is_an_error_at_its_action(
    world: dict,
) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"]["operator"])
    data = {
        **subscription_data(**management(1)),
        **action_data(0, "webhook", url="https://hooks.example.com/t"),
        # A forged "keep the saved value" on a new subscription.
        **header_rows(0, ("X-Token", "", "saved")),
    }
    response = client.post(f"/brokers/{broker.pk}/subscriptions/new/", data, **HTMX)
    assert "have no saved value" in error_next_to(
        response.content.decode(), "actions-0-headers"
    )
    assert not Subscription.objects.exists()


def test_dry_run_names_headers_without_their_values(world: dict) -> None:
    broker = make_broker(world["product"])
    sub = make_subscription(
        broker,
        name="Temps",
        topic_filter="sensors/#",
        actions=[
            {
                "type": "webhook",
                "url": "https://hooks.example.com/t",
                "headers": {"Authorization": "Bearer page-dry-run-secret"},
            }
        ],
    )
    client = logged_in(world["users"]["operator"])
    url = f"/brokers/{broker.pk}/subscriptions/{sub.pk}/dry-run/"
    sample = {"topic": "sensors/a/temp", "payload": "1"}
    for extra in ({}, HTMX):
        html = client.post(url, sample, **extra).content.decode()
        assert "Authorization" in html and "page-dry-run-secret" not in html
