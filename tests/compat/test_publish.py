"""Publishing through the portal's publish service to foreign brokers."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.clients import as_user
from tests.compat.conftest import BrokerFacts
from tests.compat.support import FOREIGN_PROTOCOL, Subscriber
from tests.factories import make_broker

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_at_each_qos_reaches_a_subscriber(
    actor: Any, broker_process: Any, facts: BrokerFacts, qos: int
) -> None:
    broker = make_broker(
        actor=actor, port=broker_process.port, protocol=FOREIGN_PROTOCOL
    )
    subscriber = Subscriber(broker_process.port, "compat/publish", qos=2)
    try:
        response = as_user(actor).post(
            f"/api/v1/brokers/{broker.pk}/publish/",
            {"topic": "compat/publish", "payload": f"at qos {qos}", "qos": qos},
            format="json",
        )

        if qos == 2 and not facts.qos2:
            # NATS closes the connection on a QoS 2 PUBLISH: the publish fails
            # and says the broker closed it, not that an ack was merely late.
            assert response.status_code == 502, response.content
            detail = response.json()["detail"]
            assert re.search(r"clos|disconnect", detail, re.IGNORECASE), detail
            return
        assert response.status_code == 200, response.content
        assert response.json() == {"published": 1}
        message = subscriber.receive()
        assert message.payload == f"at qos {qos}".encode()
        # Delivered at min(publish QoS, subscription QoS) = the publish QoS here;
        # amqtt delivers at the subscription's QoS (2) instead.
        assert message.qos == (2 if facts.delivers_at_subscription_qos else qos)
    finally:
        subscriber.stop()


def test_a_qos0_subscriber_gets_a_qos1_publish_at_qos0(
    actor: Any, broker_process: Any
) -> None:
    broker = make_broker(
        actor=actor, port=broker_process.port, protocol=FOREIGN_PROTOCOL
    )
    subscriber = Subscriber(broker_process.port, "compat/downgraded", qos=0)
    try:
        response = as_user(actor).post(
            f"/api/v1/brokers/{broker.pk}/publish/",
            {"topic": "compat/downgraded", "payload": "x", "qos": 1},
            format="json",
        )

        assert response.status_code == 200, response.content
        assert subscriber.receive().qos == 0
    finally:
        subscriber.stop()
