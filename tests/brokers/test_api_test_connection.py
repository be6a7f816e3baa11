"""POST /api/v1/brokers/test/ and /api/v1/brokers/{id}/test/ against real Mosquitto."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from brokers.models import Broker
from mqttadmin.models import AuditEntry
from tests.brokers.conftest import MQTT_PASSWORD, MQTT_USER
from tests.clients import as_user
from tests.factories import make_broker, make_user
from tests.services import free_port

pytestmark = [pytest.mark.django_db, pytest.mark.mosquitto]

TEST_URL = "/api/v1/brokers/test/"


def saved_url(broker: Broker) -> str:
    return f"/api/v1/brokers/{broker.pk}/test/"


def try_settings(world: dict, who: str = "operator", **settings: Any) -> Any:
    return as_user(world["users"][who]).post(TEST_URL, settings, format="json")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


# --- Unsaved settings ---------------------------------------------------------


# Mosquitto 2.0 refuses a wrong password as "not authorised" (5 / 135); other
# brokers (and Mosquitto with some auth plugins) say "bad username or password"
# (4 / 134). Either way the reason says what to check.
BAD_CREDENTIAL_CODES = {"3.1.1": {4, 5}, "5": {134, 135}}


def assert_bad_credentials(data: dict, protocol: str) -> None:
    assert data["ok"] is False
    assert data["reason_code"] in BAD_CREDENTIAL_CODES[protocol]
    assert data["error"] in {"bad_credentials", "not_authorized"}
    assert "username or password" in data["reason"].lower()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_wrong_password_is_told_apart(
    world: dict, password_broker: Any, protocol: str
) -> None:
    response = try_settings(
        world,
        host="127.0.0.1",
        port=password_broker.port,
        protocol=protocol,
        username=MQTT_USER,
        password="wrong-Pa55",
    )
    assert response.status_code == 200
    assert_bad_credentials(response.json(), protocol)
    assert set(response.json()) == {
        "ok",
        "reason_code",
        "reason",
        "latency_ms",
        "error",
    }
    assert "wrong-Pa55" not in response.content.decode()


@pytest.mark.parametrize(("protocol", "code"), [("3.1.1", 5), ("5", 135)])
def test_anonymous_on_a_password_broker_is_not_authorised(
    world: dict, password_broker: Any, protocol: str, code: int
) -> None:
    data = try_settings(
        world, host="127.0.0.1", port=password_broker.port, protocol=protocol
    ).json()
    assert data["ok"] is False
    assert (data["reason_code"], data["error"]) == (code, "not_authorized")
    assert data["reason"] == "Not authorised"


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_correct_credentials_connect(
    world: dict, password_broker: Any, protocol: str
) -> None:
    data = try_settings(
        world,
        host="127.0.0.1",
        port=password_broker.port,
        protocol=protocol,
        username=MQTT_USER,
        password=MQTT_PASSWORD,
    ).json()
    assert data["ok"] is True, data
    assert data["reason_code"] == 0 and data["error"] == ""
    assert 0 < data["latency_ms"] < 5000


def test_refused(world: dict) -> None:
    port = free_port()
    data = try_settings(world, host="127.0.0.1", port=port).json()
    assert data["ok"] is False and data["error"] == "refused"
    assert f"127.0.0.1:{port}" in data["reason"]


def test_name_not_resolved(world: dict) -> None:
    data = try_settings(world, host="no-such-host.invalid").json()
    assert data["ok"] is False and data["error"] == "dns"
    assert "no-such-host.invalid" in data["reason"]
    assert data["latency_ms"] is None


def test_timeout_within_the_connect_timeout(world: dict, silent_port: int) -> None:
    started = time.monotonic()
    data = try_settings(
        world, host="127.0.0.1", port=silent_port, connect_timeout=0.5
    ).json()
    assert time.monotonic() - started < 2.0
    assert data["ok"] is False and data["error"] == "timeout"


def test_tls_with_the_wrong_ca_names_the_certificate_problem(
    world: dict, tls_broker: Any, tls_material: Any
) -> None:
    data = try_settings(
        world,
        host="127.0.0.1",
        port=tls_broker.port,
        use_tls=True,
        ca_cert=tls_material.other_ca_pem,
    ).json()
    assert data["ok"] is False and data["error"] == "tls"
    assert "certificate" in data["reason"].lower()


def test_tls_with_the_right_ca_connects(
    world: dict, tls_broker: Any, tls_material: Any
) -> None:
    data = try_settings(
        world,
        host="127.0.0.1",
        port=tls_broker.port,
        use_tls=True,
        ca_cert=tls_material.ca_pem,
    ).json()
    assert data["ok"] is True, data


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"host": "127.0.0.1", "port": 0}, "port"),
        ({"host": "127.0.0.1", "tls_insecure": True}, "tls_insecure"),
        ({"host": "127.0.0.1", "username": "a\x00b"}, "username"),
        ({"host": "127.0.0.1", "use_tls": True, "ca_cert": "x"}, "ca_cert"),
        ({"port": 1883}, "host"),
    ],
)
def test_invalid_settings_are_400(world: dict, body: dict, field: str) -> None:
    response = try_settings(world, **body)
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 200),
        ("admin", 200),
        ("operator", 200),
        ("viewer", 403),
        # An admin of another product may test settings too.
        ("outsider", 200),
    ],
)
def test_unsaved_test_needs_operator_somewhere(
    world: dict, plain_broker: Any, who: str, status: int
) -> None:
    response = try_settings(world, who, host="127.0.0.1", port=plain_broker.port)
    assert response.status_code == status
    if status == 200:
        assert response.json()["ok"] is True


def test_users_without_products_cannot_test(world: dict) -> None:
    client = as_user(make_user("loner"))
    response = client.post(TEST_URL, {"host": "127.0.0.1"}, format="json")
    assert response.status_code == 403


# --- Saved brokers ------------------------------------------------------------


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
def test_saved_test_roles(
    world: dict, plain_broker: Any, who: str, status: int
) -> None:
    broker = make_broker(world["product"], port=plain_broker.port)
    response = as_user(world["users"][who]).post(saved_url(broker), {}, format="json")
    assert response.status_code == status
    if status == 200:
        assert response.json()["ok"] is True


def test_saved_test_uses_saved_credentials_and_overrides(
    world: dict, password_broker: Any
) -> None:
    broker = make_broker(
        world["product"],
        port=password_broker.port,
        username=MQTT_USER,
        password="stale",
        protocol="3.1.1",
    )
    client = as_user(world["users"]["operator"])

    assert_bad_credentials(
        client.post(saved_url(broker), {}, format="json").json(), "3.1.1"
    )

    # The edit form tests a changed password before saving it.
    data = client.post(
        saved_url(broker), {"password": MQTT_PASSWORD}, format="json"
    ).json()
    assert data["ok"] is True, data

    # Testing saves nothing and audits nothing.
    broker.refresh_from_db()
    assert broker.password == "stale"
    assert not AuditEntry.objects.filter(action="broker.update").exists()


def test_saved_password_is_used_when_left_out(
    world: dict, password_broker: Any
) -> None:
    broker = make_broker(
        world["product"],
        port=password_broker.port,
        username=MQTT_USER,
        password=MQTT_PASSWORD,
        protocol="5",
    )
    client = as_user(world["users"]["operator"])
    for body in ({}, {"password": "***"}, {"keepalive": 30}):
        data = client.post(saved_url(broker), body, format="json").json()
        assert data["ok"] is True, data
    data = client.post(saved_url(broker), {"password": "wrong"}, format="json").json()
    assert_bad_credentials(data, "5")


def test_saved_password_does_not_follow_another_port(
    world: dict, password_broker: Any
) -> None:
    """The stored password is bound to the host:port it was saved with: another
    port needs it again (tests/security/test_secret_binding.py has the attack)."""
    broker = make_broker(
        world["product"],
        port=free_port(),
        username=MQTT_USER,
        password=MQTT_PASSWORD,
        protocol="5",
    )
    client = as_user(world["users"]["operator"])
    assert client.post(saved_url(broker), {}, format="json").json()["error"] == (
        "refused"
    )
    for body in (
        {"port": password_broker.port},
        {"port": password_broker.port, "password": "***"},
    ):
        response = client.post(saved_url(broker), body, format="json")
        assert response.status_code == 400
        assert "password" in response.json()
    data = client.post(
        saved_url(broker),
        {"port": password_broker.port, "password": MQTT_PASSWORD},
        format="json",
    ).json()
    assert data["ok"] is True, data


def test_saved_test_overrides_are_validated_with_saved_fields(world: dict) -> None:
    broker = make_broker(world["product"], protocol="5", session_expiry_interval=60)
    response = as_user(world["users"]["operator"]).post(
        saved_url(broker), {"protocol": "3.1.1"}, format="json"
    )
    assert response.status_code == 400
    assert "session_expiry_interval" in response.json()
