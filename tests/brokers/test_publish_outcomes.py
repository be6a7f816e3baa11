"""What publishing reports when the broker refuses a message or hangs up.

MQTT 5 brokers refuse a publish that TCP delivered fine with a PUBACK/PUBREC
reason code >= 0x80 (Mosquitto: 0x87 for a topic its ACL denies); NATS closes the
connection on a QoS 2 publish. Neither is a success, and a batch that fails part
way says how many of its messages the broker had acknowledged.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brokers import services
from brokers.choices import Protocol
from brokers.client import PublishError
from brokers.models import Broker
from mqttadmin.models import AuditEntry
from tests.clients import HTMX, as_user, logged_in
from tests.factories import make_broker
from tests.services import free_port, missing, wait_for_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def acl_broker(mosquitto: Any, tmp_path: Path) -> Any:
    """Anonymous clients may write under `allowed/` only."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite allowed/#\n")
    acl.chmod(0o644)
    return mosquitto(
        f"listener {{port}} 127.0.0.1\nallow_anonymous true\nacl_file {acl}\n",
        name="acl",
    )


@pytest.fixture
def v5_broker(world: dict, acl_broker: Any) -> Broker:
    return make_broker(world["product"], port=acl_broker.port, protocol=Protocol.MQTT_5)


def publish_url(broker: Broker) -> str:
    return f"/api/v1/brokers/{broker.pk}/publish/"


@pytest.mark.mosquitto
@pytest.mark.parametrize("qos", [1, 2])
def test_a_refused_publish_is_reported_with_its_reason_code(
    world: dict, v5_broker: Broker, qos: int
) -> None:
    response = as_user(world["users"]["operator"]).post(
        publish_url(v5_broker),
        {"topic": "denied/valve", "payload": "open", "qos": qos},
        format="json",
    )
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert "refused the message to 'denied/valve'" in detail
    assert "Not authorized (reason code 0x87)" in detail


@pytest.mark.mosquitto
def test_a_refused_publish_is_audited_as_a_failure(
    world: dict, v5_broker: Broker
) -> None:
    with pytest.raises(PublishError) as raised:
        services.broker_publish(
            actor=world["users"]["operator"],
            broker=v5_broker,
            requests=[services.PublishRequest(topic="denied/valve", qos=1)],
        )
    assert raised.value.reason_code == 0x87
    entry = AuditEntry.objects.filter(target_id=str(v5_broker.pk)).latest("pk")
    assert entry.action == "broker.publish_failed"
    assert entry.changes["reason_code"] == [None, 0x87]
    assert "Not authorized" in entry.changes["error"][1]
    assert not AuditEntry.objects.filter(action="broker.publish").exists()


@pytest.mark.mosquitto
def test_the_publish_tab_shows_the_refusal(world: dict, v5_broker: Broker) -> None:
    html = (
        logged_in(world["users"]["operator"])
        .post(
            f"/brokers/{v5_broker.pk}/publish/",
            {"topic": "denied/valve", "payload": "open", "encoding": "utf8", "qos": 1},
            **HTMX,
        )
        .content.decode()
    )
    assert "Publishing failed" in html
    assert "reason code 0x87" in html
    assert "Published to" not in html


@pytest.mark.mosquitto
def test_a_batch_refused_part_way_says_how_many_were_acknowledged(
    world: dict, v5_broker: Broker
) -> None:
    messages = [
        {"topic": "allowed/1", "qos": 1},
        {"topic": "allowed/2", "qos": 1},
        {"topic": "denied/3", "qos": 1},
    ]
    response = as_user(world["users"]["operator"]).post(
        publish_url(v5_broker), {"messages": messages}, format="json"
    )
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert "refused the message to 'denied/3'" in detail
    assert "2 of the 3 messages were acknowledged before it" in detail


@pytest.mark.mosquitto
def test_an_accepted_publish_is_still_a_success(world: dict, v5_broker: Broker) -> None:
    response = as_user(world["users"]["operator"]).post(
        publish_url(v5_broker),
        {"topic": "allowed/valve", "payload": "open", "qos": 2},
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == {"published": 1}


# --- A broker that hangs up: NATS and QoS 2 ----------------------------------------


@pytest.fixture
def nats_mqtt(tmp_path: Path) -> Iterator[int]:
    """A NATS server with its MQTT gateway; yields the MQTT port."""
    binary = Path("/usr/sbin/nats-server")
    if not binary.exists():
        missing("nats-server is not installed (apt-get install nats-server)")
    port = free_port()
    config = tmp_path / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{free_port()}\nserver_name: t1\n"
        f"jetstream {{store_dir: {tmp_path / 'js'}}}\n"
        f"mqtt {{host: 127.0.0.1, port: {port}}}\n"
    )
    log = (tmp_path / "nats.log").open("ab")
    process = subprocess.Popen(
        [str(binary), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port, process=process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_broker_closing_on_qos2_fails_with_its_reason(
    world: dict, nats_mqtt: int
) -> None:
    broker = make_broker(
        world["product"], port=nats_mqtt, client_id="nats-test", protocol="3.1.1"
    )
    messages = [
        {"topic": "plant/1", "qos": 1},
        {"topic": "plant/2", "qos": 2},
    ]
    response = as_user(world["users"]["operator"]).post(
        publish_url(broker), {"messages": messages}, format="json"
    )
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert "closed the connection" in detail
    assert "QoS 2" in detail
    assert "did not acknowledge every message" not in detail
    assert "1 of the 2 messages were acknowledged before it" in detail
