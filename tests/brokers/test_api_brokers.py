"""/api/v1/brokers/: the role matrix, validation, secrets, status and control."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from brokers.models import Broker, BrokerStatus
from mqttadmin.models import AuditEntry
from tests.clients import as_user
from tests.factories import make_broker

pytestmark = pytest.mark.django_db

PASSWORD = "pa55-Very-Secret"


def url(broker: Broker | None = None, suffix: str = "") -> str:
    base = "/api/v1/brokers/"
    return f"{base}{broker.pk}/{suffix}" if broker else f"{base}{suffix}"


def broker_state() -> list[tuple[Any, ...]]:
    """Everything about brokers a failed request must leave as it was."""
    return sorted(
        Broker.objects.values_list(
            "pk", "name", "host", "port", "keepalive", "client_id", "password"
        )
    )


# --- Role matrix --------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "sees"),
    [
        ("superuser", {"Line 1", "Elsewhere"}),
        ("admin", {"Line 1"}),
        ("operator", {"Line 1"}),
        ("viewer", {"Line 1"}),
        ("outsider", {"Elsewhere"}),
    ],
)
def test_list_is_scoped_to_membership(world: dict, who: str, sees: set) -> None:
    make_broker(world["product"])
    make_broker(world["other"], name="Elsewhere")
    response = as_user(world["users"][who]).get(url())
    assert response.status_code == 200
    assert {b["name"] for b in response.json()["results"]} == sees


def test_list_filters_by_product(world: dict) -> None:
    make_broker(world["product"])
    make_broker(world["other"], name="Elsewhere")
    client = as_user(world["users"]["superuser"])
    response = client.get(url(), {"product": world["other"].pk})
    assert [b["name"] for b in response.json()["results"]] == ["Elsewhere"]


def test_anonymous_gets_401(world: dict) -> None:
    broker = make_broker(world["product"])
    assert APIClient().get(url()).status_code == 401
    assert APIClient().get(url(broker)).status_code == 401


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
    broker = make_broker(world["product"])
    assert as_user(world["users"][who]).get(url(broker)).status_code == status


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
    response = as_user(world["users"][who]).post(
        url(),
        {"product": world["product"].pk, "name": "New", "host": "mqtt.example"},
        format="json",
    )
    assert response.status_code == status, response.content
    assert Broker.objects.filter(name="New").exists() == (status == 201)
    if status == 400:
        # A product outside the user's products does not exist for them.
        assert "does not exist" in response.json()["product"][0]


def test_create_is_audited_and_generates_a_client_id(world: dict) -> None:
    response = as_user(world["users"]["operator"]).post(
        url(),
        {"product": world["product"].pk, "name": "New", "host": "mqtt.example"},
        format="json",
    )
    data = response.json()
    assert data["client_id"].startswith("mqttadmin") and len(data["client_id"]) == 23
    assert data["address"] == "mqtt://mqtt.example:1883"
    entry = AuditEntry.objects.get(action="broker.create")
    assert entry.actor_name == "oscar" and entry.source == "api"
    assert entry.product == world["product"]
    assert BrokerStatus.objects.filter(broker_id=data["id"]).exists()


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
    broker = make_broker(world["product"])
    response = as_user(world["users"][who]).patch(
        url(broker), {"host": "changed.example"}, format="json"
    )
    assert response.status_code == status
    broker.refresh_from_db()
    assert (broker.host == "changed.example") == (status == 200)


def test_full_update_with_put(world: dict) -> None:
    broker = make_broker(world["product"])
    client = as_user(world["users"]["operator"])
    data = client.get(url(broker)).json()
    data.update({"host": "other.example", "port": 8883})
    response = client.put(url(broker), data, format="json")
    assert response.status_code == 200, response.content
    broker.refresh_from_db()
    assert (broker.host, broker.port) == ("other.example", 8883)


def test_a_broker_cannot_move_to_another_product(world: dict) -> None:
    broker = make_broker(world["product"])
    response = as_user(world["users"]["superuser"]).patch(
        url(broker), {"product": world["other"].pk}, format="json"
    )
    assert response.status_code == 400
    assert "product" in response.json()
    broker.refresh_from_db()
    assert broker.product == world["product"]


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
    broker = make_broker(world["product"])
    assert as_user(world["users"][who]).delete(url(broker)).status_code == status
    assert Broker.objects.filter(pk=broker.pk).exists() == (status != 204)
    assert AuditEntry.objects.filter(action="broker.delete").exists() == (status == 204)


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
def test_status(world: dict, who: str, status: int) -> None:
    broker = make_broker(world["product"])
    response = as_user(world["users"][who]).get(url(broker, "status/"))
    assert response.status_code == status


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 202),
        ("admin", 202),
        ("operator", 202),
        ("viewer", 403),
        ("outsider", 404),
    ],
)
def test_control(world: dict, who: str, status: int) -> None:
    broker = make_broker(world["product"])
    response = as_user(world["users"][who]).post(
        url(broker, "control/"), {"action": "disconnect"}, format="json"
    )
    assert response.status_code == status
    broker.refresh_from_db()
    assert broker.enabled == (status != 202)


# --- Status and control -------------------------------------------------------


def test_status_fields(world: dict) -> None:
    broker = make_broker(world["product"])
    data = as_user(world["users"]["viewer"]).get(url(broker, "status/")).json()
    assert data == {
        "state": "disconnected",
        "connected": False,
        "last_connected_at": None,
        "last_disconnected_at": None,
        "messages_received": 0,
        "subscribed_topics_count": 0,
        "client_id": broker.client_id,
        "connection_error": "",
        "owner": "",
    }


def test_status_row_is_created_for_old_brokers(world: dict) -> None:
    broker = make_broker(world["product"])
    BrokerStatus.objects.filter(broker=broker).delete()
    data = as_user(world["users"]["viewer"]).get(url(broker, "status/")).json()
    assert data["state"] == "disconnected" and data["client_id"] == broker.client_id


def test_control_flips_enabled_and_is_audited(world: dict) -> None:
    broker = make_broker(world["product"])
    client = as_user(world["users"]["operator"])
    response = client.post(
        url(broker, "control/"), {"action": "disconnect"}, format="json"
    )
    assert response.status_code == 202
    assert response.json() == {"action": "disconnect", "enabled": False}
    broker.refresh_from_db()
    assert not broker.enabled
    entry = AuditEntry.objects.get(action="broker.disconnect")
    assert entry.changes == {"enabled": [True, False]} and entry.actor_name == "oscar"

    response = client.post(
        url(broker, "control/"), {"action": "connect"}, format="json"
    )
    assert response.json() == {"action": "connect", "enabled": True}
    broker.refresh_from_db()
    assert broker.enabled
    assert AuditEntry.objects.filter(action="broker.connect").exists()


def test_reconnect_keeps_enabled_and_records_the_request(world: dict) -> None:
    broker = make_broker(world["product"])
    response = as_user(world["users"]["admin"]).post(
        url(broker, "control/"), {"action": "reconnect"}, format="json"
    )
    assert response.status_code == 202
    broker.refresh_from_db()
    assert broker.enabled and broker.reconnect_requested_at is not None
    assert AuditEntry.objects.filter(action="broker.reconnect").exists()


def test_control_rejects_unknown_action(world: dict) -> None:
    broker = make_broker(world["product"])
    response = as_user(world["users"]["admin"]).post(
        url(broker, "control/"), {"action": "explode"}, format="json"
    )
    assert response.status_code == 400
    assert "connect, disconnect, reconnect" in response.json()["action"][0]
    assert not AuditEntry.objects.filter(action__startswith="broker.e").exists()


# --- Validation ---------------------------------------------------------------

BAD_PEM = "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"port": 0}, "port", "greater than or equal to 1"),
        ({"port": 65536}, "port", "less than or equal to 65535"),
        ({"keepalive": 65536}, "keepalive", "less than or equal to 65535"),
        ({"keepalive": -1}, "keepalive", "greater than or equal to 0"),
        # MQTT's own rules; Mosquitto's `+ # /` rule is for managed users only.
        ({"client_id": "a\x01b"}, "client_id", "control characters"),
        ({"client_id": "a\ufffeb"}, "client_id", "non-characters"),
        ({"client_id": "x" * 129}, "client_id", "128"),
        ({"username": "plant\x7fuser"}, "username", "control characters"),
        ({"use_tls": True, "ca_cert": "garbage"}, "ca_cert", "PEM"),
        ({"use_tls": True, "ca_cert": BAD_PEM}, "ca_cert", "PEM"),
        ({"use_tls": True, "client_cert": BAD_PEM}, "client_cert", "PEM"),
        ({"use_tls": True, "client_key": "garbage"}, "client_key", "PEM"),
        ({"ws_path": "mqtt"}, "ws_path", "starts with /"),
        ({"transport": "websockets", "ws_path": ""}, "ws_path", "need a path"),
        ({"fallback_hosts": "nohost"}, "fallback_hosts", "list"),
        ({"fallback_hosts": ["nohost"]}, "fallback_hosts", "host:port"),
        ({"fallback_hosts": ["h:70000"]}, "fallback_hosts", "host:port"),
        ({"tls_insecure": True}, "tls_insecure", "TLS"),
        (
            {"session_expiry_interval": 60, "protocol": "3.1.1"},
            "session_expiry_interval",
            "MQTT 5",
        ),
        ({"protocol": "4"}, "protocol", "valid choice"),
        ({"transport": "udp"}, "transport", "valid choice"),
        ({"password": "x"}, "username", "needs a username"),
        ({"connect_timeout": 0}, "connect_timeout", "greater than or equal to 0.5"),
        ({"max_payload_bytes": 0}, "max_payload_bytes", "greater than or equal to 1"),
        ({"host": ""}, "host", "blank"),
        ({"name": "Line 1"}, "name", "already has a broker"),
    ],
)
def test_invalid_settings_name_the_field_and_change_nothing(
    world: dict, fields: dict, field: str, says: str
) -> None:
    existing = make_broker(world["product"])
    client = as_user(world["users"]["operator"])
    before = broker_state()
    audits = AuditEntry.objects.count()

    body = {"product": world["product"].pk, "name": "New", "host": "h.example"}
    response = client.post(url(), {**body, **fields}, format="json")
    assert response.status_code == 400, response.content
    assert says in " ".join(response.json()[field]), response.json()

    if field != "name":
        response = client.patch(url(existing), fields, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()

    assert broker_state() == before
    assert AuditEntry.objects.count() == audits


def test_valid_websocket_tls_mqtt5_settings_are_saved(world: dict) -> None:
    response = as_user(world["users"]["operator"]).post(
        url(),
        {
            "product": world["product"].pk,
            "name": "Cloud",
            "host": "broker.example",
            "port": 443,
            "transport": "websockets",
            "ws_path": "/mqtt",
            "use_tls": True,
            "protocol": "5",
            "clean_start": False,
            "session_expiry_interval": 3600,
            "client_id": "plant-collector-1",
            "username": "collector",
            "fallback_hosts": ["backup.example:443", "[::1]:8443"],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["address"] == "wss://broker.example:443/mqtt"
    assert data["fallback_hosts"] == ["backup.example:443", "[::1]:8443"]
    assert data["session_expiry_interval"] == 3600


# --- Secrets ------------------------------------------------------------------


@pytest.fixture
def client_pair(tls_material: Any) -> tuple[str, str]:
    """A certificate and its private key (PEM)."""
    return tls_material.server_cert.read_text(), tls_material.server_key.read_text()


def raw_secrets(broker_id: int) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT password, client_key FROM brokers_broker WHERE id = %s",
            [broker_id],
        )
        return cursor.fetchone()


def test_secrets_are_never_returned(world: dict, client_pair: tuple) -> None:
    cert, key = client_pair
    key_body = key.splitlines()[1]
    client = as_user(world["users"]["admin"])
    created = client.post(
        url(),
        {
            "product": world["product"].pk,
            "name": "Secure",
            "host": "h.example",
            "use_tls": True,
            "client_cert": cert,
            "client_key": key,
            "username": "sensor",
            "password": PASSWORD,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    broker_id = created.json()["id"]
    responses = [
        created,
        client.get(url()),
        client.get(f"/api/v1/brokers/{broker_id}/"),
        client.patch(f"/api/v1/brokers/{broker_id}/", {"keepalive": 30}, format="json"),
        client.put(
            f"/api/v1/brokers/{broker_id}/",
            {**created.json(), "password": PASSWORD, "client_key": key},
            format="json",
        ),
    ]
    for response in responses:
        assert response.status_code in (200, 201)
        body = response.content.decode()
        assert PASSWORD not in body and key_body not in body
    data = responses[2].json()
    assert data["password"] == "***" and data["client_key"] == "***"
    assert data["client_cert"] == cert  # certificates are public

    # At rest: Fernet tokens, no clear text.
    password_column, key_column = raw_secrets(broker_id)
    for column in (password_column, key_column):
        assert column.startswith("gAAAAA")
    assert PASSWORD not in password_column and key_body not in key_column
    broker = Broker.objects.get(pk=broker_id)
    assert broker.password == PASSWORD and broker.client_key == key

    # The audit log records that secrets changed, not what they are.
    audit = json.dumps(list(AuditEntry.objects.values_list("changes", flat=True)))
    assert PASSWORD not in audit and key_body not in audit
    assert AuditEntry.objects.get(action="broker.create").changes["password"] == [
        None,
        "***",
    ]


def test_unset_secrets_read_as_null(world: dict) -> None:
    broker = make_broker(world["product"])
    data = as_user(world["users"]["viewer"]).get(url(broker)).json()
    assert data["password"] is None and data["client_key"] is None


def test_secret_kept_when_omitted_or_masked_and_cleared_with_empty(
    world: dict,
) -> None:
    broker = make_broker(world["product"], username="sensor", password=PASSWORD)
    client = as_user(world["users"]["operator"])

    client.patch(url(broker), {"keepalive": 30}, format="json")
    broker.refresh_from_db()
    assert broker.password == PASSWORD and broker.keepalive == 30

    client.patch(url(broker), {"password": "***", "keepalive": 31}, format="json")
    broker.refresh_from_db()
    assert broker.password == PASSWORD and broker.keepalive == 31

    client.patch(url(broker), {"password": "new-one"}, format="json")
    broker.refresh_from_db()
    assert broker.password == "new-one"
    entry = AuditEntry.objects.filter(action="broker.update").first()
    assert entry is not None
    assert entry.changes == {"password": ["***", "***"]}

    response = client.patch(url(broker), {"password": ""}, format="json")
    assert response.json()["password"] is None
    broker.refresh_from_db()
    assert broker.password == ""
    assert raw_secrets(broker.pk)[0] == ""
