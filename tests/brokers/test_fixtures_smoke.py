"""The test brokers themselves behave: a plain, a password and a TLS Mosquitto."""

import pytest

from brokers.client import ConnectionSettings, probe_connection
from tests.brokers.conftest import MQTT_PASSWORD, MQTT_USER

pytestmark = pytest.mark.mosquitto


def test_plain_broker_accepts_anonymous(plain_broker) -> None:
    result = probe_connection(
        ConnectionSettings(host="127.0.0.1", port=plain_broker.port)
    )
    assert result.ok, result


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_password_broker_tells_bad_credentials(password_broker, protocol) -> None:
    good = ConnectionSettings(
        host="127.0.0.1",
        port=password_broker.port,
        username=MQTT_USER,
        password=MQTT_PASSWORD,
        protocol=protocol,
    )
    assert probe_connection(good).ok
    bad = probe_connection(
        ConnectionSettings(
            host="127.0.0.1",
            port=password_broker.port,
            username=MQTT_USER,
            password="wrong",
            protocol=protocol,
        )
    )
    assert not bad.ok and bad.error in {"bad_credentials", "not_authorized"}
    assert bad.reason_code in ({4, 5} if protocol == "3.1.1" else {134, 135})


def test_tls_broker_verifies_against_its_ca(tls_broker, tls_material) -> None:
    ok = probe_connection(
        ConnectionSettings(
            host="127.0.0.1",
            port=tls_broker.port,
            use_tls=True,
            ca_cert=tls_material.ca_pem,
        )
    )
    assert ok.ok, ok
    wrong_ca = probe_connection(
        ConnectionSettings(
            host="127.0.0.1",
            port=tls_broker.port,
            use_tls=True,
            ca_cert=tls_material.other_ca_pem,
        )
    )
    assert not wrong_ca.ok and wrong_ca.error == "tls"
    assert "certificate" in wrong_ca.reason.lower()
