"""The Django admin of the brokers app: lists, read-only runtime rows, audited
changes with secrets kept out of the page and the log."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from brokers import services
from brokers.models import Broker
from mqttadmin.models import AuditEntry
from runtime.models import RuntimeLease
from tests.brokers.test_pages import STORED_PASSWORD
from tests.clients import logged_in
from tests.factories import make_broker

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(world: dict) -> Client:
    return logged_in(world["users"]["superuser"])


@pytest.fixture
def broker(world: dict) -> Broker:
    broker = make_broker(
        world["product"], name="Admin line", username="sensor", password=STORED_PASSWORD
    )
    services.subscription_create(
        actor=None, broker=broker, name="all", topic_filter="#"
    )
    services.publish_template_save(
        actor=None, broker=broker, name="Ping", topic="a/b", payload="x"
    )
    RuntimeLease.objects.create(
        broker=broker,
        owner="host:1",
        expires_at=timezone.now(),
        acquired_at=timezone.now(),
    )
    return broker


@pytest.mark.parametrize(
    "model",
    [
        "brokers/broker",
        "brokers/brokerstatus",
        "brokers/subscription",
        "brokers/publishtemplate",
        "runtime/runtimelease",
    ],
)
def test_changelists_render_with_search(
    root: Client, broker: Broker, model: str
) -> None:
    response = root.get(f"/admin/{model}/?q=a")
    assert response.status_code == 200
    response = root.get(f"/admin/{model}/?q=line")
    assert response.status_code == 200
    assert "Admin line" in response.content.decode()


@pytest.mark.parametrize("model", ["brokers/brokerstatus", "runtime/runtimelease"])
def test_runtime_rows_are_read_only(root: Client, broker: Broker, model: str) -> None:
    assert root.get(f"/admin/{model}/add/").status_code == 403
    page = root.get(f"/admin/{model}/{broker.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()


def _posted(form: Any) -> dict[str, Any]:
    """What a browser posts for `form` as rendered (unticked boxes are absent)."""
    data: dict[str, Any] = {}
    for name in form.fields:
        value = form[name].value()
        if value is True:
            data[form.add_prefix(name)] = "on"
        elif value is not None and value is not False:
            data[form.add_prefix(name)] = value
    return data


def _change_form_data(client: Client, broker: Broker) -> dict[str, Any]:
    """What the admin's change form posts when nothing is touched."""
    response = client.get(f"/admin/brokers/broker/{broker.pk}/change/")
    data = _posted(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        data |= _posted(inline.formset.management_form)
        for sub_form in inline.formset.initial_forms:
            data |= _posted(sub_form)
    return data


def test_change_page_never_shows_the_secrets(root: Client, broker: Broker) -> None:
    html = root.get(f"/admin/brokers/broker/{broker.pk}/change/").content.decode()
    assert STORED_PASSWORD not in html
    assert 'name="password"' in html and 'name="clear_password"' in html


def test_admin_change_is_audited_without_the_password(
    root: Client, broker: Broker
) -> None:
    data = _change_form_data(root, broker)
    assert "password" not in data  # nothing to post back
    data.update(port="1884", password="n3w-Secret")
    response = root.post(f"/admin/brokers/broker/{broker.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    broker.refresh_from_db()
    assert broker.port == 1884 and broker.password == "n3w-Secret"
    entry = AuditEntry.objects.get(action="broker.update", source="admin")
    assert entry.changes["port"] == [1883, 1884]
    assert entry.changes["password"] == ["***", "***"]
    logged = str(entry.changes)
    assert "n3w-Secret" not in logged and STORED_PASSWORD not in logged


def test_admin_change_with_empty_password_keeps_it(
    root: Client, broker: Broker
) -> None:
    data = _change_form_data(root, broker)
    data["name"] = "Renamed"
    response = root.post(f"/admin/brokers/broker/{broker.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    broker.refresh_from_db()
    assert broker.name == "Renamed" and broker.password == STORED_PASSWORD
    entry = AuditEntry.objects.get(action="broker.update", source="admin")
    assert entry.changes == {"name": ["Admin line", "Renamed"]}


def test_admin_clear_removes_the_password(root: Client, broker: Broker) -> None:
    data = _change_form_data(root, broker)
    data["clear_password"] = "on"
    root.post(f"/admin/brokers/broker/{broker.pk}/change/", data)
    broker.refresh_from_db()
    assert broker.password == ""
    entry = AuditEntry.objects.get(action="broker.update", source="admin")
    assert entry.changes["password"] == ["***", None]


def test_admin_validates_like_the_pages(root: Client, broker: Broker) -> None:
    data = _change_form_data(root, broker)
    data["client_id"] = "bad\x07id"
    response = root.post(f"/admin/brokers/broker/{broker.pk}/change/", data)
    assert response.status_code == 200
    assert "must not contain control characters" in response.content.decode()
    broker.refresh_from_db()
    assert broker.client_id != "bad\x07id"
    assert not AuditEntry.objects.filter(source="admin").exists()
