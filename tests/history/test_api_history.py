"""The history, topics and retained endpoints, on real data and a real broker."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.models import Broker
from brokers.retained import retained_list
from history.models import StoredMessage, Topic
from mqttadmin.models import AuditEntry
from mqttadmin.pipeline import ReceivedMessage
from runtime.ingest import store_batch
from tests.clients import as_user
from tests.factories import make_broker_subscribed_to_all

pytestmark = pytest.mark.django_db


def broker_of(world: dict, port: int = 1) -> Broker:
    return make_broker_subscribed_to_all(
        world["product"],
        name="plant",
        port=port,
        via_service=False,
        status="disconnected",
    )


def fill(broker: Broker, count: int) -> None:
    from django.utils import timezone

    store_batch(
        [
            ReceivedMessage(
                broker.pk,
                f"sensors/{i % 3}/temp",
                json.dumps({"seq": i}).encode(),
                0,
                False,
                timezone.now(),
            )
            for i in range(count)
        ]
    )


@pytest.mark.parametrize(
    ("who", "status"),
    [("superuser", 200), ("viewer", 200), ("outsider", 404)],
)
def test_history_is_scoped(world: dict, who: str, status: int) -> None:
    broker = broker_of(world)
    fill(broker, 3)
    response = as_user(world["users"][who]).get(
        f"/api/v1/brokers/{broker.pk}/messages/"
    )
    assert response.status_code == status


def test_history_pages_with_a_cursor_newest_first(world: dict) -> None:
    broker = broker_of(world)
    fill(broker, 25)
    client = as_user(world["users"]["viewer"])
    url = f"/api/v1/brokers/{broker.pk}/messages/?topic=sensors/%2B/temp&limit=10"
    seqs: list[int] = []
    cursor = ""
    while True:
        body = client.get(url + (f"&cursor={cursor}" if cursor else "")).json()
        seqs += [json.loads(m["payload"])["seq"] for m in body["results"]]
        assert all(m["payload_is_json"] for m in body["results"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seqs == list(reversed(range(25)))


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("topic=a/%23/b", "topic"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("cursor=garbage", "cursor"),
        ("since=tomorrow", "since"),
        ("format=xml", "format"),
    ],
)
def test_bad_history_queries_name_the_parameter(
    world: dict, query: str, field: str
) -> None:
    broker = broker_of(world)
    response = as_user(world["users"]["viewer"]).get(
        f"/api/v1/brokers/{broker.pk}/messages/?{query}"
    )
    assert response.status_code == 400
    assert field in response.json()


def test_exports_stream_csv_and_ndjson(world: dict) -> None:
    broker = broker_of(world)
    fill(broker, 5)
    client = as_user(world["users"]["viewer"])
    response: Any = client.get(f"/api/v1/brokers/{broker.pk}/messages/?format=csv")
    assert response.status_code == 200 and response.streaming
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 6 and rows[0][2] == "topic"
    response = client.get(f"/api/v1/brokers/{broker.pk}/messages/?format=ndjson")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(json.loads(line)["payload"])["seq"] for line in lines] == [
        4,
        3,
        2,
        1,
        0,
    ]


@pytest.mark.parametrize(("who", "status"), [("operator", 200), ("viewer", 403)])
def test_delete_history_by_filter(world: dict, who: str, status: int) -> None:
    broker = broker_of(world)
    fill(broker, 9)
    response = as_user(world["users"][who]).delete(
        f"/api/v1/brokers/{broker.pk}/messages/?topic=sensors/0/%23"
    )
    assert response.status_code == status
    if status == 200:
        assert response.json() == {"deleted": 3}
        assert StoredMessage.objects.count() == 6
        assert AuditEntry.objects.filter(action="broker.history_delete").exists()
    else:
        assert StoredMessage.objects.count() == 9


def test_topics_list_and_annotation(world: dict) -> None:
    broker = broker_of(world)
    fill(broker, 6)
    client = as_user(world["users"]["viewer"])
    topics = client.get(
        f"/api/v1/brokers/{broker.pk}/topics/?filter=sensors/%23"
    ).json()
    assert [t["topic"] for t in topics] == [f"sensors/{i}/temp" for i in range(3)]
    assert topics[0]["messages"] == 2 and topics[0]["last_payload"] == '{"seq": 3}'
    topic_id = topics[0]["id"]
    url = f"/api/v1/brokers/{broker.pk}/topics/{topic_id}/"
    assert client.patch(url, {"unit": "°C"}, format="json").status_code == 403
    operator = as_user(world["users"]["operator"])
    response = operator.patch(
        url, {"description": "Boiler", "unit": "°C"}, format="json"
    )
    assert response.status_code == 200
    assert Topic.objects.get(pk=topic_id).unit == "°C"
    bad = client.get(f"/api/v1/brokers/{broker.pk}/topics/?filter=a%2B")
    assert bad.status_code == 400 and "filter" in bad.json()


@pytest.mark.mosquitto
def test_retained_list_and_recursive_clear(world: dict, plain_broker) -> None:
    broker = broker_of(world, port=plain_broker.port)
    settings = ConnectionSettings.from_broker(broker)
    publish_messages(
        settings,
        [
            OutgoingMessage(t, b"1", qos=1, retain=True)
            for t in ("plant/a", "plant/b/c", "keep")
        ],
    )
    client = as_user(world["users"]["viewer"])
    listed = client.get(f"/api/v1/brokers/{broker.pk}/retained/").json()
    assert [m["topic"] for m in listed["results"]] == ["keep", "plant/a", "plant/b/c"]
    url = f"/api/v1/brokers/{broker.pk}/retained/?topic=plant&recursive=true"
    assert client.delete(url).status_code == 403
    response = as_user(world["users"]["operator"]).delete(url)
    assert response.status_code == 200
    # `plant` itself held nothing: only what was retained is named.
    assert response.json()["cleared"] == ["plant/a", "plant/b/c"]
    assert [m.topic for m in retained_list(settings)] == ["keep"]
    bad = as_user(world["users"]["operator"]).delete(
        f"/api/v1/brokers/{broker.pk}/retained/?topic=a/%23"
    )
    assert bad.status_code == 400 and "topic" in bad.json()
