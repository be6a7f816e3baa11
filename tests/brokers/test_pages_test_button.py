"""The broker form's Test button, against a real Mosquitto: wrong and right
passwords, the saved password, without JavaScript, and the role it needs."""

from __future__ import annotations

import re
from typing import Any

import pytest

from brokers.models import Broker
from mqttadmin.models import AuditEntry
from tests.brokers.conftest import MQTT_PASSWORD, MQTT_USER
from tests.brokers.test_pages import _edit_data, form_data
from tests.clients import HTMX, logged_in
from tests.factories import make_broker

pytestmark = pytest.mark.django_db


def _password_broker_form(port: int, password: str, **overrides: Any) -> dict:
    return form_data(port=str(port), username=MQTT_USER, password=password, **overrides)


@pytest.mark.mosquitto
def test_test_button_tells_a_wrong_password(world: dict, password_broker: Any) -> None:
    client = logged_in(world["users"]["operator"])
    data = _password_broker_form(password_broker.port, "wrong", name="")
    data["product"] = world["product"].pk
    response = client.post("/brokers/test/", data, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    # Mosquitto 2.0 refuses a wrong password as "not authorised" (3.1.1 code 5);
    # the page says what that means.
    assert "Not authorised" in html or "Bad username or password" in html
    assert "Bad username or password" in html
    assert not Broker.objects.exists()


@pytest.mark.mosquitto
def test_test_button_succeeds_with_the_right_password(
    world: dict, password_broker: Any
) -> None:
    client = logged_in(world["users"]["operator"])
    data = _password_broker_form(password_broker.port, MQTT_PASSWORD)
    data["product"] = world["product"].pk
    html = client.post("/brokers/test/", data, **HTMX).content.decode()
    assert "Connection works." in html
    assert re.search(r"latency [\d.]+ ms", html)
    assert MQTT_PASSWORD not in html
    assert not Broker.objects.exists()


@pytest.mark.mosquitto
def test_test_button_uses_the_saved_password_when_left_empty(
    world: dict, password_broker: Any
) -> None:
    broker = make_broker(
        world["product"],
        port=password_broker.port,
        username=MQTT_USER,
        password=MQTT_PASSWORD,
    )
    client = logged_in(world["users"]["operator"])
    data = _edit_data(broker, port=str(password_broker.port), password="")
    html = client.post(f"/brokers/{broker.pk}/test/", data, **HTMX).content.decode()
    assert "Connection works." in html
    # Testing saves nothing.
    assert not AuditEntry.objects.filter(action="broker.update").exists()


@pytest.mark.mosquitto
def test_test_button_without_javascript_shows_the_form_again(
    world: dict, password_broker: Any
) -> None:
    client = logged_in(world["users"]["operator"])
    data = _password_broker_form(password_broker.port, "wrong")
    data["product"] = world["product"].pk
    html = client.post("/brokers/test/", data).content.decode()
    assert "<html" in html and 'name="host"' in html
    assert "Bad username or password" in html


def test_test_button_asks_to_fix_fields_first(world: dict) -> None:
    client = logged_in(world["users"]["operator"])
    data = form_data(world["product"], port="99999")
    html = client.post("/brokers/test/", data, **HTMX).content.decode()
    assert "Fix these fields before testing" in html and "65535" in html


@pytest.mark.parametrize(("who", "status"), [("viewer", 403), ("outsider", 404)])
def test_test_button_needs_an_operator(world: dict, who: str, status: int) -> None:
    broker = make_broker(world["product"])
    client = logged_in(world["users"][who])
    assert client.post("/brokers/test/", form_data(world["product"])).status_code == (
        status
    )
    response = client.post(f"/brokers/{broker.pk}/test/", form_data())
    assert response.status_code == status


def test_port_input_carries_the_valid_range(world: dict[str, Any]) -> None:
    client = logged_in(world["users"]["operator"], world["product"])
    html = client.get("/brokers/new/").content.decode()
    assert 'name="port" value="1883" min="1" max="65535"' in html


def test_each_test_replaces_every_fields_feedback(world: dict[str, Any]) -> None:
    """A Test answers with each field's feedback by id: the port's error (named
    by its label) while it is wrong, its help again once it is right, never an
    error from before; a missing name does not stop a test."""
    client = logged_in(world["users"]["operator"])
    wrong = client.post(
        "/brokers/test/", form_data(world["product"], port="99999", name=""), **HTMX
    ).content.decode()
    assert "<li>Port: Ensure this value is less than or equal to 65535.</li>" in wrong
    port_box = re.search(
        r'<div class="field-feedback" id="id_port_feedback"[^>]*>(.*?)</div>', wrong
    )
    assert port_box and "less than or equal to 65535" in port_box.group(1)
    assert 'hx-swap-oob="true"' in port_box.group(0)
    name_box = re.search(r'id="id_name_feedback"[^>]*>(.*?)</div>', wrong)
    assert name_box and "error" not in name_box.group(1)
    right = client.post(
        "/brokers/test/", form_data(world["product"], port="1", name=""), **HTMX
    ).content.decode()
    port_box = re.search(r'id="id_port_feedback"[^>]*>(.*?)</div>', right)
    assert port_box and "error" not in port_box.group(1)
    assert '<div id="form-errors" hx-swap-oob="true"></div>' in right


def test_a_bad_certificate_is_explained_not_quoted(world: dict[str, Any]) -> None:
    client = logged_in(world["users"]["operator"])
    data = form_data(world["product"], use_tls="on", ca_cert="not a certificate")
    html = client.post("/brokers/test/", data, **HTMX).content.decode()
    assert "CA certificate (PEM): Not a PEM certificate bundle: paste one" in html
    assert "cryptography.io" not in html and "MalformedFraming" not in html
