"""Connecting to foreign brokers: the Test button's service, the runtime, MQTT 5,
TLS and WebSockets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients import as_user
from tests.compat.conftest import BrokerFacts
from tests.compat.support import connected_broker
from tests.runtime_support import state_is, status_of, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sqlite_readers_do_not_wait"),
]

TEST_URL = "/api/v1/brokers/test/"


def test_connection_test_succeeds(actor: Any, broker_process: Any) -> None:
    response = as_user(actor).post(
        TEST_URL,
        {"host": "127.0.0.1", "port": broker_process.port, "protocol": "3.1.1"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["ok"] is True, response.json()


def test_mqtt5_is_tried_and_a_refusal_names_the_protocol_version(
    actor: Any, broker_process: Any, facts: BrokerFacts
) -> None:
    data = (
        as_user(actor)
        .post(
            TEST_URL,
            {"host": "127.0.0.1", "port": broker_process.port, "protocol": "5"},
            format="json",
        )
        .json()
    )

    assert data["ok"] is facts.mqtt5, data
    if not facts.mqtt5:
        # The broker answers an MQTT 5 CONNECT with 3.1.1's "unacceptable protocol
        # version" (1), which MQTT 5 numbers 0x84.
        assert data["error"] == "protocol"
        assert "protocol version" in data["reason"].lower()


def test_runtime_connects(actor: Any, broker_process: Any, start_runtime: Any) -> None:
    start_runtime()
    broker = connected_broker(actor, broker_process.port)

    status = status_of(broker)
    assert status.connected_host == f"127.0.0.1:{broker_process.port}"
    assert status.connection_error == ""


def test_runtime_connects_over_tls_with_the_brokers_ca(
    actor: Any, kind: str, foreign_broker: Any, tls_material: Any, start_runtime: Any
) -> None:
    process = foreign_broker(kind, tls=tls_material)
    start_runtime()
    broker = connected_broker(
        actor, process.tls_port, use_tls=True, ca_cert=tls_material.ca_pem
    )

    assert status_of(broker).connected_host == f"127.0.0.1:{process.tls_port}"
    test = as_user(actor).post(f"/api/v1/brokers/{broker.pk}/test/", {}, format="json")
    assert test.json()["ok"] is True, test.json()


def test_tls_with_another_ca_is_refused_naming_the_certificate(
    actor: Any, kind: str, foreign_broker: Any, tls_material: Any
) -> None:
    process = foreign_broker(kind, tls=tls_material)
    data = (
        as_user(actor)
        .post(
            TEST_URL,
            {
                "host": "127.0.0.1",
                "port": process.tls_port,
                "use_tls": True,
                "ca_cert": tls_material.other_ca_pem,
            },
            format="json",
        )
        .json()
    )

    assert data["ok"] is False
    assert data["error"] == "tls"
    assert "certificate" in data["reason"].lower()


def test_runtime_connects_over_websockets(
    actor: Any, broker_process: Any, start_runtime: Any
) -> None:
    start_runtime()
    broker = connected_broker(
        actor, broker_process.ws_port, transport="websockets", ws_path="/mqtt"
    )

    wait_until(state_is(broker, "connected"), 5, "connected over WebSockets")
