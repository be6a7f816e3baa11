"""One-shot connections (publish, retained list, Test) leave no session behind,
even for a broker whose runtime keeps a persistent one (MQTT 3.1.1 with clean
session off). NATS shows the sessions it keeps, one per client id."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients import as_user
from tests.factories import make_broker
from tests.foreign_brokers import NatsProcess

pytestmark = pytest.mark.django_db


def test_one_shot_connections_leave_no_persistent_session_on_nats(
    actor: Any, foreign_broker: Any
) -> None:
    nats: NatsProcess = foreign_broker("nats")
    broker = make_broker(
        actor=actor, port=nats.port, protocol="3.1.1", clean_start=False
    )
    client = as_user(actor)

    published = client.post(
        f"/api/v1/brokers/{broker.pk}/publish/",
        {"topic": "plant/a", "payload": "x", "qos": 1, "retain": True},
        format="json",
    )
    listed = client.get(f"/api/v1/brokers/{broker.pk}/retained/")
    tested = client.post(f"/api/v1/brokers/{broker.pk}/test/", {}, format="json")

    assert published.status_code == 200, published.content
    assert [m["topic"] for m in listed.json()] == ["plant/a"]
    assert tested.json()["ok"] is True
    assert nats.stored_sessions() == 0
