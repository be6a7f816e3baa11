"""Webhook header values are secrets: a Fernet token in the column, "***" in the API,
the pages, the Django admin and the audit log; "***" written back keeps the stored
value, and only the webhook itself receives the value in clear."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.test import APIClient

from actions.runner import run_action_batch
from brokers.models import Broker, BrokerStatus, Subscription
from mqttadmin.lib import crypto
from mqttadmin.models import AuditEntry
from tests.actions.test_actions import deliver
from tests.brokers.test_admin import _posted
from tests.clients import as_user, logged_in

pytestmark = pytest.mark.django_db

SECRET = "Bearer hdr-Secret-0001"
NEW_SECRET = "Bearer hdr-Secret-0002"
SITE = "plant-1-site-value"
ALL_VALUES = (SECRET, NEW_SECRET, SITE)


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


def webhook(url: str, **headers: str) -> dict[str, Any]:
    """A webhook whose headers the user all marked secret (X-Site included, which
    is not a secret by its name)."""
    headers = headers or {"Authorization": SECRET, "X-Site": SITE}
    return {
        "type": "webhook",
        "url": url,
        "headers": headers,
        "secret_headers": list(headers),
    }


def create(client: APIClient, broker: Broker, actions: list[Any]) -> Any:
    return client.post(
        "/api/v1/subscriptions/",
        {
            "broker": broker.pk,
            "name": "s",
            "topic_filter": "plant/#",
            "actions": actions,
        },
        format="json",
    )


def created(client: APIClient, broker: Broker, actions: list[Any]) -> int:
    response = create(client, broker, actions)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def patch_actions(client: APIClient, pk: int, actions: list[Any]) -> Any:
    return client.patch(
        f"/api/v1/subscriptions/{pk}/", {"actions": actions}, format="json"
    )


def shows_a_value(content: bytes | str) -> list[str]:
    text = content.decode() if isinstance(content, bytes) else content
    return [value for value in ALL_VALUES if value in text]


def run_once(pk: int, http_sink: Any) -> tuple[Any, int]:
    """Deliver one matching message and run its actions; the request the sink got
    and the run id."""
    runs = deliver(Subscription.objects.get(pk=pk), "plant/boiler", b'{"v": 1}')
    assert run_action_batch(runs) == {"executed": 1, "failed": 0}
    return http_sink.requests[-1], runs[0]


def raw_actions(pk: int) -> tuple[str, list[Any]]:
    """The actions column as stored (text, parsed), past the model field."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT actions FROM brokers_subscription WHERE id = %s", [pk])
        (value,) = cursor.fetchone()
    text = value if isinstance(value, str) else json.dumps(value)
    return text, json.loads(text)


# --- API ------------------------------------------------------------------------


def test_reads_show_header_names_with_masked_values(
    world: dict, broker: Broker, operator: APIClient
) -> None:
    response = create(operator, broker, [webhook("https://hooks.example.com/h")])
    assert response.status_code == 201
    masked = {"Authorization": "***", "X-Site": "***"}
    assert response.json()["actions"][0]["headers"] == masked
    pk = response.json()["id"]
    viewer = as_user(world["users"]["viewer"])
    detail = viewer.get(f"/api/v1/subscriptions/{pk}/")
    listed = viewer.get("/api/v1/subscriptions/")
    assert detail.json()["actions"][0]["headers"] == masked
    assert listed.json()["results"][0]["actions"][0]["headers"] == masked
    for body in (response.content, detail.content, listed.content):
        assert shows_a_value(body) == []
    # Python code (the runner) sees the values themselves.
    stored = Subscription.objects.get(pk=pk).actions[0]["headers"]
    assert stored == {"Authorization": SECRET, "X-Site": SITE}


def test_writing_back_what_was_read_keeps_the_secrets(
    broker: Broker, operator: APIClient, http_sink: Any
) -> None:
    pk = created(operator, broker, [webhook(f"{http_sink.url}/hook")])
    read = operator.get(f"/api/v1/subscriptions/{pk}/").json()
    response = operator.put(f"/api/v1/subscriptions/{pk}/", read, format="json")
    assert response.status_code == 200, response.content
    assert shows_a_value(response.content) == []
    # Nothing changed, so nothing is audited as an update.
    assert not AuditEntry.objects.filter(action="subscription.update").exists()
    request, run = run_once(pk, http_sink)
    assert request.path == "/hook"
    assert request.headers["Authorization"] == SECRET
    assert request.headers["X-Site"] == SITE
    assert request.headers["Idempotency-Key"] == f"{run}-0"


def test_a_new_value_replaces_the_stored_one(
    broker: Broker, operator: APIClient, http_sink: Any
) -> None:
    url = f"{http_sink.url}/hook"
    pk = created(operator, broker, [webhook(url)])
    response = patch_actions(
        operator, pk, [webhook(url, Authorization=NEW_SECRET, **{"X-Site": "***"})]
    )
    assert response.status_code == 200, response.content
    assert shows_a_value(response.content) == []
    request, _run = run_once(pk, http_sink)
    assert request.headers["Authorization"] == NEW_SECRET
    assert request.headers["X-Site"] == SITE
    entry = AuditEntry.objects.get(action="subscription.update")
    # The header is named as changed; both values are masked.
    assert entry.changes == {"actions[0].headers.Authorization": ["***", "***"]}


def test_a_header_left_out_is_removed(
    broker: Broker, operator: APIClient, http_sink: Any
) -> None:
    url = f"{http_sink.url}/hook"
    pk = created(operator, broker, [webhook(url)])
    response = patch_actions(operator, pk, [webhook(url, **{"X-Site": "***"})])
    assert response.status_code == 200, response.content
    assert Subscription.objects.get(pk=pk).actions[0]["headers"] == {"X-Site": SITE}
    request, _run = run_once(pk, http_sink)
    assert "Authorization" not in request.headers and request.headers["X-Site"] == SITE
    changes = AuditEntry.objects.get(action="subscription.update").changes
    assert changes["actions[0].headers.Authorization"] == ["***", None]
    assert changes["actions"][1][0]["headers"] == {"X-Site": "***"}
    assert shows_a_value(json.dumps(changes)) == []


def test_a_mask_without_a_stored_value_is_refused(
    broker: Broker, operator: APIClient
) -> None:
    response = create(
        operator, broker, [webhook("https://hooks.example.com/h", Authorization="***")]
    )
    assert response.status_code == 400
    assert "actions[0].headers" in " ".join(response.json()["actions"])
    assert not Subscription.objects.exists()


def test_a_secret_does_not_follow_its_action_to_another_url(
    broker: Broker, operator: APIClient, http_sink: Any
) -> None:
    pk = created(operator, broker, [webhook(f"{http_sink.url}/hook")])
    masked = {"Authorization": "***", "X-Site": "***"}
    elsewhere = patch_actions(
        operator, pk, [webhook("https://attacker.example/collect", **masked)]
    )
    assert elsewhere.status_code == 400
    assert "were dropped" in " ".join(elsewhere.json()["actions"])
    # Another path or query on the same server is another URL: the secret stays
    # behind too (a receiver may route by path, or log it).
    for url in (f"{http_sink.url}/other", f"{http_sink.url}/hook?to=me"):
        moved = patch_actions(operator, pk, [webhook(url, **masked)])
        assert moved.status_code == 400, moved.content
        assert "were dropped" in " ".join(moved.json()["actions"])
    assert Subscription.objects.get(pk=pk).actions[0]["url"] == f"{http_sink.url}/hook"
    # Re-entered, the path change goes through.
    moved = patch_actions(
        operator,
        pk,
        [
            webhook(
                f"{http_sink.url}/other", Authorization=NEW_SECRET, **{"X-Site": SITE}
            )
        ],
    )
    assert moved.status_code == 200, moved.content
    request, _run = run_once(pk, http_sink)
    assert request.path == "/other" and request.headers["Authorization"] == NEW_SECRET


def test_reordered_actions_keep_their_own_secrets(
    broker: Broker, operator: APIClient
) -> None:
    first = webhook("https://hooks.example.com/a", Authorization=SECRET)
    second = webhook("https://hooks.example.com/b", Authorization=NEW_SECRET)
    pk = created(operator, broker, [first, second])
    read = operator.get(f"/api/v1/subscriptions/{pk}/").json()["actions"]
    response = patch_actions(operator, pk, [read[1], read[0]])
    assert response.status_code == 200, response.content
    stored = Subscription.objects.get(pk=pk).actions
    assert [(a["url"][-1], a["headers"]["Authorization"]) for a in stored] == [
        ("b", NEW_SECRET),
        ("a", SECRET),
    ]


def test_values_a_header_cannot_carry_are_refused_without_echo(
    broker: Broker, operator: APIClient
) -> None:
    bad = "Bearer x\r\nInjected: hdr-Secret-0003"
    response = create(
        operator, broker, [webhook("https://hooks.example.com/h", Authorization=bad)]
    )
    assert response.status_code == 400
    assert "actions[0].headers" in " ".join(response.json()["actions"])
    assert b"hdr-Secret-0003" not in response.content


def test_the_api_dry_run_names_headers_without_their_values(
    broker: Broker, operator: APIClient, http_sink: Any
) -> None:
    pk = created(operator, broker, [webhook(f"{http_sink.url}/hook")])
    response = operator.post(
        f"/api/v1/subscriptions/{pk}/test/",
        {"topic": "plant/boiler", "payload": {"v": 1}},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["actions"][0]["headers"] == ["Authorization", "X-Site"]
    assert shows_a_value(response.content) == []
    assert http_sink.requests == []


def test_a_send_error_never_quotes_a_header_value(
    broker: Broker, http_sink: Any
) -> None:
    # Stored past validation (an old row, the shell): the HTTP library refuses the
    # line break and its error would quote the value.
    subscription = Subscription.objects.create(
        broker=broker,
        name="s",
        topic_filter="plant/#",
        actions=[webhook(f"{http_sink.url}/hook", Authorization=SECRET + "\n")],
    )
    runs = deliver(subscription, "plant/boiler", b"1")
    assert run_action_batch(runs) == {"executed": 0, "failed": 1}
    subscription.refresh_from_db()
    assert subscription.last_error
    assert "hdr-Secret" not in subscription.last_error
    assert "hdr-Secret" not in subscription.action_runs.get().error


# --- Audit log and storage -------------------------------------------------------


def test_the_audit_log_names_headers_never_values(
    world: dict, broker: Broker, operator: APIClient
) -> None:
    pk = created(operator, broker, [webhook("https://hooks.example.com/h")])
    entry = AuditEntry.objects.get(action="subscription.create")
    assert entry.changes["actions"][1][0]["headers"] == {
        "Authorization": "***",
        "X-Site": "***",
    }
    assert entry.changes["actions[0].headers.Authorization"] == [None, "***"]
    operator.delete(f"/api/v1/subscriptions/{pk}/")
    logged = json.dumps(list(AuditEntry.objects.values_list("changes", flat=True)))
    assert shows_a_value(logged) == []
    page = logged_in(world["users"]["admin"]).get("/audit/")
    assert "Authorization" in page.content.decode()
    assert shows_a_value(page.content) == []


def test_the_column_holds_fernet_tokens_in_place_of_values(
    broker: Broker, operator: APIClient
) -> None:
    pk = created(operator, broker, [webhook("https://hooks.example.com/h")])
    text, actions = raw_actions(pk)
    assert shows_a_value(text) == []
    # Names, URL and type stay readable; each value is a token of its own.
    headers = actions[0]["headers"]
    assert actions[0]["url"] == "https://hooks.example.com/h"
    assert set(headers) == {"Authorization", "X-Site"}
    assert all(token.startswith("gAAAAA") for token in headers.values())
    assert crypto.decrypt(headers["Authorization"]) == SECRET
    assert crypto.decrypt(headers["X-Site"]) == SITE


def test_queryset_updates_are_encrypted_too(broker: Broker) -> None:
    subscription = Subscription.objects.create(
        broker=broker, name="s", topic_filter="#"
    )
    Subscription.objects.filter(pk=subscription.pk).update(
        actions=[webhook("https://hooks.example.com/h")]
    )
    assert shows_a_value(raw_actions(subscription.pk)[0]) == []
    subscription.refresh_from_db()
    assert subscription.actions[0]["headers"]["Authorization"] == SECRET


def test_the_migration_encrypts_values_stored_in_clear(broker: Broker) -> None:
    migration = importlib.import_module(
        "brokers.migrations.0007_encrypt_webhook_header_values"
    )
    before = MigrationExecutor(connection).loader.project_state(
        ("brokers", "0006_history_without_fk_check_and_runtime_workers")
    )
    old_model = before.apps.get_model("brokers", "Subscription")
    clear = [webhook("https://hooks.example.com/h"), {"type": "telemetry"}]
    pk = old_model.objects.create(
        broker_id=broker.pk, name="old", topic_filter="#", actions=clear
    ).pk
    assert SECRET in raw_actions(pk)[0]  # as rows were before the migration

    migration.encrypt_header_values(before.apps, None)
    assert shows_a_value(raw_actions(pk)[0]) == []
    assert Subscription.objects.get(pk=pk).actions == clear

    # And back: the reverse migration leaves clear values for the old code.
    migration.decrypt_header_values(before.apps, None)
    assert raw_actions(pk)[1] == clear


# --- Django admin ------------------------------------------------------------------


def test_the_admin_shows_masks_and_saving_them_keeps_the_secrets(
    world: dict, broker: Broker, operator: APIClient
) -> None:
    pk = created(operator, broker, [webhook("https://hooks.example.com/h")])
    root = logged_in(world["users"]["superuser"])
    page = root.get(f"/admin/brokers/subscription/{pk}/change/")
    assert page.status_code == 200
    assert shows_a_value(page.content) == []
    data = _posted(page.context["adminform"].form)
    assert json.loads(data["actions"])[0]["headers"]["Authorization"] == "***"
    data["name"] = "renamed"
    response = root.post(f"/admin/brokers/subscription/{pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    subscription = Subscription.objects.get(pk=pk)
    assert subscription.name == "renamed"
    assert subscription.actions[0]["headers"] == {
        "Authorization": SECRET,
        "X-Site": SITE,
    }
    entry = AuditEntry.objects.get(action="subscription.update", source="admin")
    assert entry.changes == {"name": ["s", "renamed"]}
