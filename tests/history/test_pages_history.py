"""The Activity tab: filters, cursor paging, payload views, export links and
deleting what matches, with the role matrix."""

from __future__ import annotations

import csv
import datetime
import io
import json
import re
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from brokers.models import Broker
from history.models import StoredMessage
from mqttadmin.models import AuditEntry
from mqttadmin.pipeline import ReceivedMessage
from runtime.ingest import store_batch
from tests.brokers.test_pages import error_next_to
from tests.clients import HTMX, logged_in
from tests.factories import make_broker_subscribed_to_all

pytestmark = pytest.mark.django_db

T0 = datetime.datetime(2026, 1, 31, 12, 0, tzinfo=datetime.UTC)


def store(
    broker: Broker, *messages: tuple[str, bytes], start: datetime.datetime = T0
) -> None:
    """Ingest `(topic, payload)` pairs one second apart, oldest first."""
    store_batch(
        [
            ReceivedMessage(
                broker.pk,
                topic,
                payload,
                0,
                False,
                start + datetime.timedelta(seconds=index),
            )
            for index, (topic, payload) in enumerate(messages)
        ]
    )


def sensor_history(broker: Broker) -> None:
    store(
        broker,
        ("sensors/a/temp", b"21.5"),
        ("sensors/b/temp", b'{"celsius": 19}'),
        ("sensors/a/hum", b"40"),
        ("plant/boiler/state", b"running hot"),
        ("sensors/c/temp", b"\x00\xffraw"),
    )


def listed_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-message="(\d+)"', html)]


def listed_topics(html: str) -> list[str]:
    return re.findall(r'<td class="topic"><code>([^<]*)</code>', html)


def activity(client: Any, broker: Broker, query: str = "", **extra: Any) -> str:
    response = client.get(f"/brokers/{broker.pk}/?tab=activity{query}", **extra)
    assert response.status_code == 200
    return response.content.decode()


# --- Role matrix ----------------------------------------------------------------


@pytest.mark.parametrize("tab", ["activity", "topics"])
@pytest.mark.parametrize(
    ("who", "status"),
    [("superuser", 200), ("operator", 200), ("viewer", 200), ("outsider", 404)],
)
def test_new_tabs_are_scoped(world: dict, who: str, status: int, tab: str) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    response = logged_in(world["users"][who]).get(f"/brokers/{broker.pk}/?tab={tab}")
    assert response.status_code == status


@pytest.mark.parametrize(
    ("who", "status", "left"),
    [("operator", 302, 2), ("viewer", 403, 5), ("outsider", 404, 5)],
)
def test_only_operators_delete_history(
    world: dict, who: str, status: int, left: int
) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    response = logged_in(world["users"][who]).post(
        f"/brokers/{broker.pk}/history/delete/", {"topic": "sensors/+/temp"}
    )
    assert response.status_code == status
    assert StoredMessage.objects.count() == left


def test_tabs_are_in_the_tab_bar(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    html = logged_in(world["users"]["viewer"]).get(f"/brokers/{broker.pk}/")
    content = html.content.decode()
    assert f'href="/brokers/{broker.pk}/?tab=activity"' in content
    assert f'href="/brokers/{broker.pk}/?tab=topics"' in content


# --- Listing and filters --------------------------------------------------------


def test_lists_newest_first_with_payloads_as_they_fit(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    html = activity(logged_in(world["users"]["viewer"]), broker)
    assert listed_topics(html) == [
        "sensors/c/temp",
        "plant/boiler/state",
        "sensors/a/hum",
        "sensors/b/temp",
        "sensors/a/temp",
    ]
    # JSON and text exactly as received, binary as base64 and marked.
    assert '<pre class="payload">{&quot;celsius&quot;: 19}</pre>' in html
    assert '<pre class="payload">running hot</pre>' in html
    assert "binary, 5 bytes, base64" in html
    assert '<pre class="payload binary">AP9yYXc=</pre>' in html
    # The place a later issue streams live messages into.
    assert '<div id="live-feed"' in html


def test_filters_by_mqtt_filter(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    html = activity(
        logged_in(world["users"]["viewer"]), broker, "&topic=sensors/%2B/temp"
    )
    assert listed_topics(html) == ["sensors/c/temp", "sensors/b/temp", "sensors/a/temp"]
    assert 'value="sensors/+/temp"' in html  # the form keeps the filter


def test_search_finds_payload_text(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    html = activity(logged_in(world["users"]["viewer"]), broker, "&search=HOT")
    assert listed_topics(html) == ["plant/boiler/state"]


def test_since_and_until_bound_the_time(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    client = logged_in(world["users"]["viewer"])
    since = activity(client, broker, "&since=2026-01-31T12:00:03Z")
    assert listed_topics(since) == ["sensors/c/temp", "plant/boiler/state"]
    window = activity(
        client, broker, "&since=2026-01-31T12:00:01Z&until=2026-01-31T12:00:02Z"
    )
    assert listed_topics(window) == ["sensors/a/hum", "sensors/b/temp"]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("&topic=a/%23/b", "topic", "# must be the last level"),
        ("&since=yesterday", "since", "is not an ISO 8601 time"),
        (
            "&since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "until",
            "until is before since",
        ),
    ],
)
def test_bad_filters_show_the_error_and_list_nothing(
    world: dict, query: str, field: str, message: str
) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    client = logged_in(world["users"]["operator"])
    for extra in ({}, HTMX):
        html = activity(client, broker, query, **extra)
        assert message in error_next_to(html, field)
        assert listed_ids(html) == []
        assert "format=csv" not in html and "/history/delete/" not in html


def test_a_bad_cursor_is_an_error_not_a_crash(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    html = activity(logged_in(world["users"]["viewer"]), broker, "&cursor=garbage")
    assert "The cursor is not one this API gave." in html
    assert listed_ids(html) == []


def test_htmx_filtering_answers_with_the_panel_only(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    response = logged_in(world["users"]["viewer"]).get(
        f"/brokers/{broker.pk}/?tab=activity&topic=plant/%23", **HTMX
    )
    html = response.content.decode()
    assert "<html" not in html and 'class="history-filter"' in html
    assert listed_topics(html) == ["plant/boiler/state"]
    assert "HX-Request" in response["Vary"]


# --- Cursor paging --------------------------------------------------------------


def _older_url(html: str) -> str:
    match = re.search(r'<tr id="history-more">.*?hx-get="([^"]+)"', html, re.S)
    return unescape(match.group(1)) if match else ""


def test_older_pages_follow_without_gaps_or_repeats(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    store(broker, *[(f"sensors/{i % 4}/temp", str(i).encode()) for i in range(130)])
    store(broker, ("other/topic", b"x"))  # filtered out below
    client = logged_in(world["users"]["viewer"])
    html = activity(client, broker, "&topic=sensors/%23")
    seen = listed_ids(html)
    assert len(seen) == 50
    pages = 1
    url = _older_url(html)
    while url:
        assert "topic=sensors%2F%23" in url  # paging keeps the filter
        # "Older" appends rows: HTMX gets just the rows (and the next button).
        part = client.get(url, **HTMX).content.decode()
        assert "<form" not in part and "<table" not in part
        seen += listed_ids(part)
        url = _older_url(part)
        pages += 1
    expected = list(
        StoredMessage.objects.filter(topic__startswith="sensors/")
        .order_by("-id")
        .values_list("id", flat=True)
    )
    assert pages == 3 and seen == expected


def test_older_link_works_without_javascript(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    store(broker, *[("a/b", str(i).encode()) for i in range(60)])
    client = logged_in(world["users"]["viewer"])
    first = activity(client, broker)
    response = client.get(_older_url(first))
    second = response.content.decode()
    assert "<html" in second
    assert len(listed_ids(second)) == 10
    assert set(listed_ids(first)).isdisjoint(listed_ids(second))
    assert _older_url(second) == ""


# --- Export links ---------------------------------------------------------------


def test_export_links_carry_the_filters(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    client = logged_in(world["users"]["viewer"])
    html = activity(client, broker, "&topic=sensors/%2B/temp&search=1")
    links = {
        parse_qs(urlsplit(unescape(href)).query)["format"][0]: unescape(href)
        for href in re.findall(r'href="(/api/v1/brokers/\d+/messages/\?[^"]+)"', html)
    }
    assert set(links) == {"csv", "ndjson"}
    for link in links.values():
        query = parse_qs(urlsplit(link).query)
        assert query["topic"] == ["sensors/+/temp"] and query["search"] == ["1"]
    # The API takes the page's session: the download is what the page lists.
    response: Any = client.get(links["csv"])
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row[2] for row in rows[1:]] == ["sensors/b/temp", "sensors/a/temp"]
    response = client.get(links["ndjson"])
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(line)["topic"] for line in lines] == [
        "sensors/b/temp",
        "sensors/a/temp",
    ]


# --- Delete matching ------------------------------------------------------------


def test_viewers_see_no_delete_button(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    viewer = activity(logged_in(world["users"]["viewer"]), broker)
    assert "/history/delete/" not in viewer and "format=csv" in viewer
    operator = activity(logged_in(world["users"]["operator"]), broker, "&search=x")
    assert "/history/delete/" in operator and "hx-confirm=" in operator
    # The button posts the filters the list shows.
    assert '<input type="hidden" name="search" value="x">' in operator


def test_delete_matching_removes_exactly_those_and_audits(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    other = make_broker_subscribed_to_all(world["product"], name="Line 2")
    sensor_history(broker)
    sensor_history(other)
    client = logged_in(world["users"]["operator"])
    response = client.post(
        f"/brokers/{broker.pk}/history/delete/",
        {"topic": "sensors/+/temp", "search": "", "since": "2026-01-31T12:00:01Z"},
        **HTMX,
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Deleted 2 messages." in html
    assert listed_ids(html) == []  # the same filters now list nothing
    assert sorted(
        StoredMessage.objects.filter(broker=broker).values_list("topic", flat=True)
    ) == ["plant/boiler/state", "sensors/a/hum", "sensors/a/temp"]
    assert StoredMessage.objects.filter(broker=other).count() == 5
    entry = AuditEntry.objects.get(action="broker.history_delete")
    assert entry.source == "page" and entry.actor == world["users"]["operator"]
    assert entry.target_id == str(broker.pk)
    assert entry.changes["deleted"] == [None, 2]
    assert entry.changes["topic"] == [None, "sensors/+/temp"]


def test_delete_without_javascript_redirects_to_the_filtered_tab(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    client = logged_in(world["users"]["operator"])
    response = client.post(
        f"/brokers/{broker.pk}/history/delete/", {"topic": "plant/#"}
    )
    assert response.status_code == 302
    assert response["Location"] == (
        f"/brokers/{broker.pk}/?tab=activity&topic=plant%2F%23"
    )
    html = client.get(response["Location"]).content.decode()
    assert "Deleted 1 message." in html and listed_ids(html) == []


def test_delete_with_a_bad_filter_deletes_nothing(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    sensor_history(broker)
    client = logged_in(world["users"]["operator"])
    html = client.post(
        f"/brokers/{broker.pk}/history/delete/", {"topic": "a/#/b"}, **HTMX
    ).content.decode()
    assert "# must be the last level" in error_next_to(html, "topic")
    assert StoredMessage.objects.count() == 5
    assert not AuditEntry.objects.filter(action="broker.history_delete").exists()


def test_received_times_are_shown(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    store(broker, ("a", b"1"), start=timezone.now().replace(microsecond=0))
    html = activity(logged_in(world["users"]["viewer"]), broker)
    # In the user's zone (UTC here), named, the exact ISO time on hover.
    assert re.search(
        r'<time datetime="[^"]+" title="[^"]+">'
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>",
        html,
    )
