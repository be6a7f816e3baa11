"""Message history: ingest batches, MQTT filters in SQL, paging, export, retention."""

from __future__ import annotations

import csv
import datetime
import io
import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from brokers.models import Broker, BrokerStatus, Subscription
from history.export import export_csv, export_ndjson
from history.models import StoredMessage, Topic
from history.queries import HistoryQuery, filter_to_q, messages_for, page_of
from history.retention import history_prune
from history.services import history_delete
from mqttadmin.pipeline import ReceivedMessage
from runtime.ingest import store_batch
from tests.factories import (
    make_broker_subscribed_to_all,
    make_subscription,
)

pytestmark = pytest.mark.django_db

TOPICS = [
    "a",
    "a/b",
    "a/b/c",
    "a/c",
    "a//c",
    "b/b/c",
    "$SYS/broker/uptime",
    "$SYS/x",
    "sensors/1/temp",
    "sensors/2/temp",
    "sensors/2/hum",
    "sport/tennis/player1",
    "sport",
    "/leading",
]
FILTERS = [
    "#",
    "+",
    "a/#",
    "a/+",
    "a/+/c",
    "+/b/c",
    "+/+",
    "$SYS/#",
    "sensors/+/temp",
    "sport/#",
    "sport/+",
    "+/#",
    "/+",
    "a/b",
]


def storing_broker(**fields: Any) -> Broker:
    """A bare broker row whose subscriptions store every topic, $SYS included."""
    broker = make_broker_subscribed_to_all(
        name="b", via_service=False, status="disconnected", **fields
    )
    # "#" never matches $-topics: they need their own subscription.
    make_subscription(broker, name="sys", topic_filter="$SYS/#", via_service=False)
    return broker


def received(
    broker: Broker, topic: str, payload: bytes = b"1", **kw: Any
) -> ReceivedMessage:
    return ReceivedMessage(
        broker_id=broker.pk,
        topic=topic,
        payload=payload,
        qos=int(kw.get("qos", 0)),
        retain=bool(kw.get("retain", False)),
        received_at=kw.get("at") or timezone.now(),
        properties=kw.get("properties") or {},
    )


def test_a_batch_is_stored_with_topics_and_counters() -> None:
    broker = storing_broker()
    store_batch(
        [
            received(broker, "s/1", b'{"t": 21.5}'),
            received(broker, "s/1", b'{"t": 22}', retain=True),
            received(broker, "s/2", b"\x00\xffbinary"),
        ]
    )
    assert StoredMessage.objects.filter(broker=broker).count() == 3
    topic = Topic.objects.get(broker=broker, topic="s/1")
    assert topic.last_payload is not None
    assert topic.messages == 2 and bytes(topic.last_payload) == b'{"t": 22}'
    assert topic.retained
    binary = StoredMessage.objects.get(topic="s/2")
    assert binary.text is None and binary.payload == b"\x00\xffbinary"
    assert BrokerStatus.objects.get(broker=broker).messages_received == 3
    store_batch([received(broker, "s/1", b"3")])
    assert Topic.objects.get(broker=broker, topic="s/1").messages == 3


def test_a_message_delivered_to_the_owner_and_a_share_group_is_kept_once() -> None:
    """The broker sends it to the owner's session ("#") and to one member of the
    group ("$share/g/work/#"): one history row, one count in the topic index and
    on the broker, and each subscription counts it once."""
    broker = storing_broker()
    shared = Subscription.objects.create(
        broker=broker, name="split", topic_filter="work/#", shared_group="g"
    )
    owner_copy = received(broker, "work/1")
    member_copy = received(broker, "work/1")
    member_copy.shared = True
    store_batch([owner_copy, member_copy])
    assert StoredMessage.objects.filter(broker=broker).count() == 1
    assert Topic.objects.get(broker=broker, topic="work/1").messages == 1
    assert BrokerStatus.objects.get(broker=broker).messages_received == 1
    counts = dict(Subscription.objects.values_list("name", "messages_received"))
    assert counts == {"all": 1, "sys": 0, "split": 1}

    # Only the group covers this topic: the member's copy is the record.
    only_member = received(broker, "work/2")
    only_member.shared = True
    Subscription.objects.filter(name="all").update(topic_filter="other/#")
    store_batch([only_member])
    assert StoredMessage.objects.filter(broker=broker, topic="work/2").count() == 1
    shared.refresh_from_db()
    assert shared.messages_received == 2


def test_only_subscriptions_that_store_keep_history() -> None:
    broker = storing_broker()
    Subscription.objects.filter(broker=broker).update(topic_filter="keep/#")
    Subscription.objects.create(
        broker=broker, name="live", topic_filter="live/#", store_messages=False
    )
    store_batch([received(broker, "keep/1"), received(broker, "live/1")])
    assert list(StoredMessage.objects.values_list("topic", flat=True)) == ["keep/1"]
    # Both are still counted and indexed as topics.
    assert set(Topic.objects.values_list("topic", flat=True)) == {"keep/1", "live/1"}


def test_mqtt5_properties_are_kept_as_json() -> None:
    broker = storing_broker()
    props = {"ContentType": "application/json", "CorrelationData": b"\xff\x02"}
    store_batch([received(broker, "p", properties=props)])
    stored = StoredMessage.objects.get()
    assert stored.properties is not None
    assert stored.properties["ContentType"] == "application/json"
    assert stored.properties["CorrelationData"] == {"hex": "ff02"}


@pytest.mark.parametrize("topic_filter", FILTERS)
def test_filters_match_in_sql_as_paho_does(topic_filter: str) -> None:
    broker = storing_broker()
    # Rows written directly: the runtime routes $SYS/... to statistics, but the
    # SQL filter must still treat such topics as paho does.
    StoredMessage.objects.bulk_create(
        StoredMessage(broker=broker, topic=t, text="1", received_at=timezone.now())
        for t in TOPICS
    )
    found = set(
        StoredMessage.objects.filter(broker=broker)
        .filter(filter_to_q(topic_filter))
        .values_list("topic", flat=True)
    )
    expected = {t for t in TOPICS if topic_matches_sub(topic_filter, t)}
    assert found == expected


level = st.sampled_from(["a", "b", "", "x y", "é", "$S", "1"])


@settings(max_examples=60, deadline=None)
@given(
    topics=st.lists(
        st.lists(level, min_size=1, max_size=4).map("/".join), min_size=1, max_size=8
    ),
    filter_levels=st.lists(
        st.sampled_from(["a", "b", "+", "", "$S"]), min_size=1, max_size=4
    ),
    hash_end=st.booleans(),
)
def test_filter_translation_agrees_with_paho(
    topics: list[str], filter_levels: list[str], hash_end: bool
) -> None:
    topic_filter = "/".join(filter_levels + (["#"] if hash_end else []))
    assume(topic_filter != "")  # an empty filter is invalid, tested elsewhere
    broker = Broker.objects.first() or storing_broker()
    Topic.objects.all().delete()
    # Index rows written directly: ingest leaves out `$` topics no subscription
    # names, and the translation must hold for those too.
    Topic.objects.bulk_create(Topic(broker=broker, topic=t) for t in set(topics))
    found = set(
        Topic.objects.filter(filter_to_q(topic_filter)).values_list("topic", flat=True)
    )
    assert found == {t for t in topics if topic_matches_sub(topic_filter, t)}


@pytest.mark.parametrize("bad", ["a/#/b", "a/b#", "sport+", "", "$share/g/a"])
def test_invalid_filters_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        HistoryQuery.from_params({"topic": bad}).apply(StoredMessage.objects.all())
        filter_to_q(bad)


def test_cursor_paging_is_newest_first_without_gaps() -> None:
    broker = storing_broker()
    store_batch([received(broker, f"n/{i}", str(i).encode()) for i in range(250)])
    seen: list[str] = []
    cursor = None
    while True:
        rows, cursor = page_of(messages_for(broker, HistoryQuery()), 100, cursor)
        seen.extend(r.text or "" for r in rows)
        if cursor is None:
            break
    assert seen == [str(i) for i in reversed(range(250))]


def test_since_until_and_search() -> None:
    broker = storing_broker()
    base = timezone.now() - datetime.timedelta(hours=3)
    store_batch(
        [
            received(broker, "t", b"old alarm", at=base),
            received(broker, "t", b"new alarm", at=base + datetime.timedelta(hours=2)),
            received(broker, "t", b"new calm", at=base + datetime.timedelta(hours=2)),
        ]
    )
    since = (base + datetime.timedelta(hours=1)).isoformat()
    query = HistoryQuery.from_params({"since": since, "search": "ALARM"})
    assert [m.text for m in messages_for(broker, query)] == ["new alarm"]
    with pytest.raises(ValidationError) as error:
        HistoryQuery.from_params({"since": "yesterday"})
    assert "since" in error.value.message_dict


def test_exports_stream_every_row() -> None:
    broker = storing_broker()
    store_batch(
        [
            received(broker, "e/1", b'{"v": 1}'),
            received(broker, "e/2", b"plain, with comma"),
            received(broker, "e/3", b"\xff\xfe"),
        ]
    )
    rows = list(
        csv.reader(
            io.StringIO("".join(export_csv(messages_for(broker, HistoryQuery()))))
        )
    )
    assert rows[0][:3] == ["id", "received_at", "topic"]
    assert [r[2] for r in rows[1:]] == ["e/3", "e/2", "e/1"]
    # then properties (none), size, truncated
    assert rows[1][5:] == ["base64", "//4=", "", "2", "0"]
    assert rows[2][6] == "plain, with comma"
    lines = list(export_ndjson(messages_for(broker, HistoryQuery())))
    documents = [json.loads(line) for line in lines]
    assert (
        documents[2]["payload"] == '{"v": 1}'
        and documents[2]["payload_encoding"] == "text"
        and documents[2]["payload_is_json"] is True
    )


def test_delete_with_a_filter_answers_the_count() -> None:
    broker = storing_broker()
    store_batch([received(broker, t) for t in ["a/1", "a/2", "b/1"]])
    assert history_delete(broker, HistoryQuery.from_params({"topic": "a/+"})) == 2
    assert list(StoredMessage.objects.values_list("topic", flat=True)) == ["b/1"]


def test_retention_prunes_by_age_and_by_count() -> None:
    broker = storing_broker(history_max_age_days=1, history_max_messages=5)
    old = timezone.now() - datetime.timedelta(days=2)
    store_batch([received(broker, "old", at=old) for _ in range(3)])
    store_batch([received(broker, "new", str(i).encode()) for i in range(8)])
    removed = history_prune()
    assert removed == {broker.pk: 6}
    kept = list(messages_for(broker, HistoryQuery()).values_list("text", flat=True))
    assert kept == ["7", "6", "5", "4", "3"]


def test_awkward_payloads_survive_storage_exactly() -> None:
    broker = storing_broker()
    payloads = [
        b"tab\there\nnew line\r\\back\\slash",
        b"\x00\x01binary\xff",
        "unicode ✓ \\N".encode(),
        b"",
    ]
    store_batch(
        [
            received(
                broker, f"odd/{i}\\t", p, properties={"UserProperty": [("k", "v\t")]}
            )
            for i, p in enumerate(payloads)
        ]
    )
    stored = {m.topic: m for m in StoredMessage.objects.filter(broker=broker)}
    for i, payload in enumerate(payloads):
        message = stored[f"odd/{i}\\t"]
        assert message.payload == payload
        assert message.properties == {"UserProperty": [["k", "v\t"]]}
