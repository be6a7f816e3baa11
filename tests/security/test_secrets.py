"""Secrets never appear in clear: API responses, pages, logs, task messages, tables.

The one documented exception: a `service` member reads its product's broker password
from `GET /api/v1/products/<id>/mqtt-config/` (it connects with it).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from celery import signals
from django.apps import apps
from django.db import connection, models
from django.utils import timezone

from actions.models import ActionRun
from actions.runner import run_action_batch
from brokers.models import Broker, ProductMqttConfig, Subscription
from mqttadmin.pipeline import ReceivedMessage
from runtime.ingest import store_batch
from tests.clients import as_user, logged_in
from tests.security.routes import all_routes, is_page, kwargs_for
from tests.services import missing

pytestmark = pytest.mark.django_db

MQTT_USER = "qxa-service"
BROKER_SECRET = "Qz7-broker-Secret-v4lue"
ADMIN_SECRET = "Qz7-dynsec-Admin-Secret"
HEADER_SECRET = "Bearer Qz7-webhook-Header-Secret"
SECRETS = (BROKER_SECRET, ADMIN_SECRET, HEADER_SECRET)
ROLES = ("superuser", "admin", "operator", "viewer", "service", "outsider")
# The documented exception: the service role's connection settings.
SERVICE_EXCEPTION = {"mqtt-config"}


@pytest.fixture
def secret_broker(mosquitto: Any, tmp_path: Path) -> Any:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        missing("mosquitto_passwd is not installed (apt-get install mosquitto)")
    passwd = tmp_path / "passwd"
    subprocess.run(
        [tool, "-b", "-c", str(passwd), MQTT_USER, BROKER_SECRET],
        check=True,
        capture_output=True,
        timeout=30,
    )
    passwd.chmod(0o644)
    return mosquitto(
        f"listener {{port}} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n",
        name="secret",
    )


def found_in(text: str | bytes, secrets: tuple[str, ...] = SECRETS) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [s for s in secrets if s in text]


@pytest.fixture
def world_with_secrets(
    seeded: dict, secret_broker: Any, http_sink: Any, caplog: Any
) -> dict[str, Any]:
    """A broker with a password, managed with a dynsec admin password, and a
    subscription whose webhook carries a secret header; then the broker is
    connected to and an action runs, with every log record captured."""
    caplog.set_level(logging.DEBUG)
    admin = as_user(seeded["users"]["admin"])
    mine = seeded["mine"]
    response = admin.post(
        "/api/v1/brokers/",
        {
            "product": mine.product.pk,
            "name": "qxa secret broker",
            "host": "127.0.0.1",
            "port": secret_broker.port,
            "username": MQTT_USER,
            "password": BROKER_SECRET,
            "enabled": False,
            "connect_timeout": 3,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert not found_in(response.content)
    broker = Broker.objects.get(pk=response.json()["id"])
    superuser = as_user(seeded["users"]["superuser"])
    response = superuser.put(
        f"/api/v1/brokers/{broker.pk}/management/",
        {
            "management": "dynsec",
            "management_username": "admin",
            "management_password": ADMIN_SECRET,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert not found_in(response.content)
    response = admin.post(
        "/api/v1/subscriptions/",
        {
            "broker": broker.pk,
            "name": "qxa webhook",
            "topic_filter": "qxa/#",
            "actions": [
                {
                    "type": "webhook",
                    "url": http_sink.url + "/hook",
                    "headers": {"Authorization": HEADER_SECRET},
                }
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    subscription_id = response.json()["id"]
    # The product's service connection uses this broker (seed 001's mqtt-config).
    ProductMqttConfig.objects.update_or_create(
        product=mine.product, defaults={"primary_broker": broker}
    )
    # The portal connects with the stored password (a real broker checks it).
    tested = admin.post(f"/api/v1/brokers/{broker.pk}/test/", {}, format="json")
    assert tested.status_code == 200 and tested.json()["ok"], tested.content
    return {
        "broker": broker,
        "subscription_id": subscription_id,
        "sink": http_sink,
        "caplog": caplog,
    }


def test_api_responses_never_carry_secrets_except_the_service_config(
    world_with_secrets: dict, seeded: dict
) -> None:
    mine = seeded["mine"]
    mine.objects["broker"] = world_with_secrets["broker"]
    # Subscription routes (detail, mqtt-config) read the one with the webhook header.
    mine.objects["subscription"] = Subscription.objects.get(
        pk=world_with_secrets["subscription_id"]
    )
    leaks = []
    service_got_password = False
    for role in ROLES:
        client = as_user(seeded["users"][role])
        for route in all_routes():
            if not route.is_api or "get" not in route.methods:
                continue
            if route.name in {"api-session"}:
                continue
            url = route.url(kwargs_for(route, mine, seeded["users"]["viewer"]))
            body = client.get(url).content
            hits = found_in(body)
            if route.name in SERVICE_EXCEPTION and role == "service":
                service_got_password = BROKER_SECRET in hits
                hits = [s for s in hits if s != BROKER_SECRET]
            if hits:
                leaks.append(f"{role} GET {url}: {hits}")
    assert not leaks, "\n".join(leaks)
    assert service_got_password, "the service role must get the broker password"


def test_pages_never_show_secrets(world_with_secrets: dict, seeded: dict) -> None:
    mine = seeded["mine"]
    mine.objects["broker"] = world_with_secrets["broker"]
    # The subscription editor shows the one with the webhook header.
    mine.objects["subscription"] = Subscription.objects.get(
        pk=world_with_secrets["subscription_id"]
    )
    leaks = []
    for role in ("superuser", "admin", "viewer"):
        client = logged_in(seeded["users"][role], mine.product)
        for route in all_routes():
            if not is_page(route) or "get" not in route.methods:
                continue
            if route.name == "logout":
                continue
            url = route.url(kwargs_for(route, mine, seeded["users"]["viewer"]))
            for extra in ("", "?tab=settings", "?tab=acl", "?tab=subscriptions"):
                hits = found_in(client.get(url + extra).content)
                if hits:
                    leaks.append(f"{role} GET {url}{extra}: {hits}")
    # The edit form of the broker shows no password either.
    html = logged_in(seeded["users"]["admin"]).get(
        f"/brokers/{world_with_secrets['broker'].pk}/edit/"
    )
    assert not found_in(html.content)
    assert not leaks, "\n".join(leaks)


def test_logs_and_task_messages_never_carry_secrets(
    world_with_secrets: dict, django_capture_on_commit_callbacks: Any
) -> None:
    caplog = world_with_secrets["caplog"]
    published: list[str] = []

    def on_publish(body: Any = None, headers: Any = None, **_: Any) -> None:
        published.append(repr(body) + repr(headers))

    def on_prerun(args: Any = None, kwargs: Any = None, **_: Any) -> None:
        published.append(repr(args) + repr(kwargs))

    signals.before_task_publish.connect(on_publish, weak=False)
    signals.task_prerun.connect(on_prerun, weak=False)
    try:
        broker = world_with_secrets["broker"]
        with django_capture_on_commit_callbacks(execute=True):
            store_batch(
                [
                    ReceivedMessage(
                        broker.pk, "qxa/boiler", b'{"v": 1}', 1, False, timezone.now()
                    )
                ]
            )
        runs = list(
            ActionRun.objects.filter(
                subscription_id=world_with_secrets["subscription_id"]
            ).values_list("id", flat=True)
        )
        assert runs, "the message did not start the webhook action"
        run_action_batch(runs)
    finally:
        signals.before_task_publish.disconnect(on_publish)
        signals.task_prerun.disconnect(on_prerun)
    sink = world_with_secrets["sink"]
    # The webhook got its header: that is where the secret is meant to go.
    assert any(
        r.headers.get("Authorization") == HEADER_SECRET for r in sink.requests
    ), sink.requests
    logged = "\n".join(
        f"{r.name}: {r.getMessage()} {r.args!r} {r.exc_text or ''}"
        for r in caplog.records
    )
    assert caplog.records, "nothing was logged: the capture is not working"
    assert not found_in(logged), found_in(logged)
    assert not found_in("\n".join(published))


def text_columns() -> list[tuple[str, str]]:
    columns = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        for f in model._meta.concrete_fields:
            # Encrypted fields are TextFields underneath: their raw value is scanned.
            text = isinstance(f, models.CharField | models.TextField | models.JSONField)
            if text or f.get_internal_type() in {"TextField", "CharField"}:
                columns.append((model._meta.db_table, f.column))
    return columns


def scan_tables(secrets: tuple[str, ...]) -> list[str]:
    hits = []
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table, column in text_columns():
            cursor.execute(f"SELECT {quote(column)} FROM {quote(table)}")  # noqa: S608
            for (value,) in cursor.fetchall():
                if value is not None and found_in(str(value), secrets):
                    hits.append(f"{table}.{column}")
    return sorted(set(hits))


def test_broker_secrets_are_stored_encrypted(world_with_secrets: dict) -> None:
    assert scan_tables(SECRETS) == []
    # The scan does see stored values (the username is kept in clear).
    assert scan_tables((MQTT_USER,)) != []


def test_webhook_header_values_are_neither_shown_nor_stored_in_clear(
    world_with_secrets: dict, seeded: dict
) -> None:
    admin = seeded["users"]["admin"]
    subscription_id = world_with_secrets["subscription_id"]
    broker_id = world_with_secrets["broker"].pk
    subscription = f"/api/v1/subscriptions/{subscription_id}/"
    dry_run = {"topic": "qxa/boiler", "payload": {"v": 1}}
    responses: dict[str, Any] = {
        "api": as_user(admin).get(subscription),
        "api dry run": as_user(admin).post(
            subscription + "test/", dry_run, format="json"
        ),
        "api audit": as_user(admin).get("/api/v1/audit/"),
        "audit page": logged_in(admin).get("/audit/"),
        "editor": logged_in(admin).get(
            f"/brokers/{broker_id}/subscriptions/{subscription_id}/edit/"
        ),
        "page dry run": logged_in(admin).post(
            f"/brokers/{broker_id}/subscriptions/{subscription_id}/dry-run/",
            {"topic": "qxa/boiler", "payload": '{"v": 1}'},
        ),
        "django admin": logged_in(seeded["users"]["superuser"]).get(
            f"/admin/brokers/subscription/{subscription_id}/change/"
        ),
    }
    assert {name: r.status_code for name, r in responses.items()} == dict.fromkeys(
        responses, 200
    )
    shown = [
        name for name, r in responses.items() if found_in(r.content, (HEADER_SECRET,))
    ]
    assert shown == [] and scan_tables((HEADER_SECRET,)) == []
    # The names are there, masked: the secret exists and is only hidden.
    assert responses["api"].json()["actions"][0]["headers"] == {"Authorization": "***"}
    assert "Authorization" in responses["django admin"].content.decode()
