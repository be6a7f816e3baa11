"""Payloads come back exactly as they were published: `1.50` stays `1.50`,
`{ "q" : 1 }` keeps its spaces, and NaN, Infinity or 1e999 (not JSON) are text.

The payloads go through a real Mosquitto and the real runtime, then are read back
as a viewer through the history API (list and detail), the topics API (list and
detail), the CSV and NDJSON exports, the Activity tab, the topic tree and the
topic page: every answer is a 200 and shows the published bytes.
"""

from __future__ import annotations

import csv
import html
import io
import json
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.models import Broker, BrokerStatus
from history.models import StoredMessage, Topic
from tests.clients import HTMX, as_user, logged_in
from tests.factories import make_broker_subscribed_to_all, make_product, make_user
from tests.runtime_support import retrying, wait_until

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sqlite_readers_do_not_wait"),
]

# topic -> (payload, whether it is strict JSON)
PUBLISHED: dict[str, tuple[bytes, bool]] = {
    "exact/nan": (b"NaN", False),
    "exact/infinity": (b"Infinity", False),
    "exact/minus-infinity": (b"-Infinity", False),
    "exact/overflow": (b"1e999", False),
    "exact/nested-nan": (b'{"v": NaN}', False),
    "exact/decimal": (b"1.50", True),
    "exact/compact": (b'{"q":1}', True),
    "exact/spaced": (b'{ "q" : 1 }', True),
}


def _strict_json(line: str) -> Any:
    """json.loads that refuses NaN and Infinity, as browsers and jq do."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def _publish(port: int, messages: dict[str, tuple[bytes, bool]]) -> None:
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="exact-pub")
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    try:
        for topic, (payload, _json) in messages.items():
            publisher.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        publisher.loop_stop()
        publisher.disconnect()


@pytest.fixture
def ingested(mosquitto: Any, start_runtime: Any) -> tuple[Broker, Any]:
    """The payloads published through a real broker and stored by the runtime;
    returns the broker and a viewer of its product."""
    server = mosquitto()
    viewer = make_user("vera")
    product = retrying(make_product, "Plant", viewer=viewer)
    broker = retrying(
        make_broker_subscribed_to_all,
        product,
        name="plant",
        port=server.port,
        via_service=False,
    )
    start_runtime("exact")
    wait_until(
        lambda: retrying(
            BrokerStatus.objects.filter(broker=broker, state="connected").exists
        ),
        15,
        "the broker connected",
    )
    _publish(server.port, PUBLISHED)
    wait_until(
        lambda: (
            retrying(StoredMessage.objects.filter(broker=broker).count)
            >= len(PUBLISHED)
            and retrying(Topic.objects.filter(broker=broker).count) >= len(PUBLISHED)
        ),
        20,
        "every payload stored and indexed",
    )
    return broker, viewer


def _ok(response: Any) -> Any:
    assert response.status_code == 200, response.content[:300]
    return response


def test_the_api_gives_payloads_byte_exact(ingested: tuple[Broker, Any]) -> None:
    broker, viewer = ingested
    api = as_user(viewer)
    messages_url = f"/api/v1/brokers/{broker.pk}/messages/"

    listed = _ok(retrying(api.get, messages_url)).json()["results"]
    by_topic = {m["topic"]: m for m in listed}
    assert {t: m["payload"] for t, m in by_topic.items()} == {
        t: payload.decode() for t, (payload, _json) in PUBLISHED.items()
    }
    for topic, (payload, is_json) in PUBLISHED.items():
        message = by_topic[topic]
        assert message["payload"] == payload.decode(), topic
        assert message["payload_encoding"] == "text"
        assert message["payload_is_json"] is is_json, topic
        assert "payload_json" not in message  # only asked for with ?parsed=1

        detail = _ok(retrying(api.get, f"{messages_url}{message['id']}/")).json()
        assert detail["payload"] == payload.decode(), topic

        parsed = _ok(
            retrying(api.get, f"{messages_url}{message['id']}/", {"parsed": "1"})
        ).json()
        assert parsed["payload"] == payload.decode()
        expected = json.loads(payload) if is_json else None
        assert parsed["payload_json"] == expected, topic

    raw_list = _ok(retrying(api.get, messages_url, {"parsed": "1"})).content
    _strict_json(raw_list.decode())
    bad = retrying(api.get, messages_url, {"parsed": "maybe"})
    assert bad.status_code == 400 and "parsed" in bad.json()

    topics_url = f"/api/v1/brokers/{broker.pk}/topics/"
    topics = {t["topic"]: t for t in _ok(retrying(api.get, topics_url)).json()}
    for topic, (payload, is_json) in PUBLISHED.items():
        listed_topic = topics[topic]
        assert listed_topic["last_payload"] == payload.decode(), topic
        assert listed_topic["last_payload_encoding"] == "text"
        assert listed_topic["last_payload_is_json"] is is_json
        assert listed_topic["last_payload_truncated"] is False
        one = _ok(retrying(api.get, f"{topics_url}{listed_topic['id']}/")).json()
        assert one["last_payload"] == payload.decode(), topic
        one = _ok(
            retrying(api.get, f"{topics_url}{listed_topic['id']}/", {"parsed": "1"})
        ).json()
        assert one["last_payload_json"] == (json.loads(payload) if is_json else None)
    _strict_json(_ok(retrying(api.get, topics_url, {"parsed": "1"})).content.decode())


def test_exports_give_payloads_byte_exact(ingested: tuple[Broker, Any]) -> None:
    broker, viewer = ingested
    api = as_user(viewer)
    messages_url = f"/api/v1/brokers/{broker.pk}/messages/"

    for parsed in ("0", "1"):
        response = _ok(
            retrying(api.get, messages_url, {"format": "ndjson", "parsed": parsed})
        )
        lines = b"".join(response.streaming_content).decode("utf-8").splitlines()
        documents = {d["topic"]: d for d in map(_strict_json, lines)}
        assert {t: d["payload"] for t, d in documents.items()} == {
            t: payload.decode() for t, (payload, _json) in PUBLISHED.items()
        }
        for topic, (payload, is_json) in PUBLISHED.items():
            assert documents[topic]["payload"] == payload.decode(), topic
            assert documents[topic]["payload_is_json"] is is_json
            if parsed == "1":
                expected = json.loads(payload) if is_json else None
                assert documents[topic]["payload_json"] == expected

    response = _ok(retrying(api.get, messages_url, {"format": "csv"}))
    body = b"".join(response.streaming_content).decode("utf-8")
    header, *rows = list(csv.reader(io.StringIO(body, newline="")))
    cells = {row[header.index("topic")]: row for row in rows}
    for topic, (payload, _is_json) in PUBLISHED.items():
        cell = cells[topic][header.index("payload")]
        # A cell starting with "-" gets the spreadsheet formula guard's quote.
        guard = "'" if payload.startswith(b"-") else ""
        assert cell == guard + payload.decode(), topic


def _pre(text: bytes) -> str:
    return f'<pre class="payload">{html.escape(text.decode())}</pre>'


def test_pages_show_payloads_byte_exact(ingested: tuple[Broker, Any]) -> None:
    broker, viewer = ingested
    page = logged_in(viewer)
    base = f"/brokers/{broker.pk}/"

    activity = _ok(retrying(page.get, f"{base}?tab=activity")).content.decode()
    for _topic, (payload, _json) in PUBLISHED.items():
        assert _pre(payload) in activity

    tree = _ok(retrying(page.get, f"{base}?tab=topics")).content.decode()
    for topic in retrying(list, Topic.objects.filter(broker=broker)):
        payload, _json = PUBLISHED[topic.topic]
        last = f'<code class="last" id="topic-last-{topic.pk}">'
        assert f"{last}{html.escape(payload.decode())}</code>" in tree

        panel = _ok(retrying(page.get, f"{base}topics/{topic.pk}/")).content.decode()
        # Its last value and its row in the recent messages.
        assert panel.count(_pre(payload)) == 2, topic.topic


def test_retained_messages_are_listed_byte_exact(mosquitto: Any) -> None:
    server = mosquitto()
    viewer = make_user("vera")
    product = make_product("Plant", viewer=viewer)
    broker = make_broker_subscribed_to_all(
        product, name="plant", port=server.port, via_service=False
    )
    publish_messages(
        ConnectionSettings.from_broker(broker),
        [
            OutgoingMessage(topic, payload, qos=1, retain=True)
            for topic, (payload, _json) in PUBLISHED.items()
        ],
    )
    listed = _ok(as_user(viewer).get(f"/api/v1/brokers/{broker.pk}/retained/"))
    found = {m["topic"]: m for m in listed.json()["results"]}
    assert {t: m["payload"] for t, m in found.items()} == {
        t: payload.decode() for t, (payload, _json) in PUBLISHED.items()
    }
    for topic, (_payload, is_json) in PUBLISHED.items():
        assert found[topic]["payload_is_json"] is is_json

    page = _ok(logged_in(viewer).get(f"/brokers/{broker.pk}/retained/", **HTMX))
    for _topic, (payload, _json) in PUBLISHED.items():
        assert _pre(payload) in page.content.decode()
