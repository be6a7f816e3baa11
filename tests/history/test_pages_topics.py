"""The Topics tab: the tree with counts, the topic panel with history and chart
data, annotations, and retained messages on a real broker; with the role matrix."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest

from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.models import Broker
from brokers.retained import retained_list
from history.models import Topic
from mqttadmin.models import AuditEntry
from tests.brokers.test_pages import error_next_to
from tests.clients import HTMX, logged_in
from tests.factories import make_broker, make_broker_subscribed_to_all
from tests.history.test_pages_history import store
from tests.services import free_port

pytestmark = pytest.mark.django_db


@dataclass
class Node:
    """A node of the rendered tree: its parent's path, its numbers and its note."""

    parent: str | None
    count: str = ""
    total: str = ""
    text: list[str] = field(default_factory=list)


class TreeParser(HTMLParser):
    """Reads the nested <details> tree back: which node sits inside which."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, Node] = {}
        self.branches: list[str | None] = []  # the path of each open <details>
        self.current: Node | None = None
        self.field = ""
        self.depth = 0  # nesting of <span> inside the current node

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "details":
            self.branches.append(None)
        elif tag == "span" and attributes.get("class") == "node":
            path = attributes["title"] or ""
            parents = [p for p in self.branches if p is not None]
            inside_summary = self.branches and self.branches[-1] is None
            if inside_summary:
                self.branches[-1] = path
            self.current = Node(parent=parents[-1] if parents else None)
            self.nodes[path] = self.current
            self.depth = 1
        elif tag == "span" and self.current is not None:
            self.depth += 1
            self.field = attributes.get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            self.branches.pop()
        elif tag == "span" and self.current is not None:
            self.depth -= 1
            self.field = ""
            if self.depth == 0:
                self.current = None

    def handle_data(self, data: str) -> None:
        if self.current is None:
            return
        if self.field == "count":
            self.current.count = data
        elif self.field == "total":
            self.current.total = data.replace("Σ", "").strip()
        self.current.text.append(data)


def tree_of(html: str) -> dict[str, Node]:
    start = html.index('<ul class="topic-tree"')
    parser = TreeParser()
    parser.feed(html[start:])
    return parser.nodes


def topics_tab(client: Any, broker: Broker, query: str = "", **extra: Any) -> str:
    response = client.get(f"/brokers/{broker.pk}/?tab=topics{query}", **extra)
    assert response.status_code == 200
    return response.content.decode()


def chart_data(html: str) -> Any:
    match = re.search(
        r'<script id="topic-chart-data" type="application/json">(.*?)</script>',
        html,
        re.S,
    )
    return json.loads(match.group(1)) if match else None


def plant_topics(broker: Broker) -> None:
    store(
        broker,
        *[("sensors/a/temp", f"{20 + i}".encode()) for i in range(3)],
        ("sensors/a/hum", b"40"),
        ("sensors/a/hum", b"41"),
        ("sensors/b/temp", b"19"),
        ("sensors", b"online"),
        ("plant/boiler", b"running"),
    )


def topic(name: str) -> Topic:
    return Topic.objects.get(topic=name)


# --- Role matrix ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [("superuser", 200), ("viewer", 200), ("outsider", 404)],
)
def test_topic_panel_is_scoped(world: dict, who: str, status: int) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    plant_topics(broker)
    url = f"/brokers/{broker.pk}/topics/{topic('sensors/a/temp').pk}/"
    client = logged_in(world["users"][who])
    assert client.get(url, **HTMX).status_code == status
    assert client.get(url).status_code == status


def test_topic_of_another_broker_is_404(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    other = make_broker_subscribed_to_all(world["product"], name="Line 2")
    plant_topics(other)
    client = logged_in(world["users"]["viewer"])
    url = f"/brokers/{broker.pk}/topics/{topic('sensors').pk}/"
    assert client.get(url).status_code == 404


@pytest.mark.parametrize(
    ("who", "status"),
    [("operator", 302), ("admin", 302), ("viewer", 403), ("outsider", 404)],
)
def test_only_operators_annotate(world: dict, who: str, status: int) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    plant_topics(broker)
    target = topic("sensors/a/temp")
    response = logged_in(world["users"][who]).post(
        f"/brokers/{broker.pk}/topics/{target.pk}/annotate/",
        {"description": "Boiler inlet", "unit": "°C"},
    )
    assert response.status_code == status
    target.refresh_from_db()
    assert (target.unit == "°C") == (status == 302)


@pytest.mark.parametrize(
    ("who", "status"), [("viewer", 403), ("outsider", 404), ("operator", 200)]
)
def test_only_operators_clear_retained(world: dict, who: str, status: int) -> None:
    # Nothing listens on this port: an operator gets the error, not a crash.
    broker = make_broker(world["product"], port=free_port())
    response = logged_in(world["users"][who]).post(
        f"/brokers/{broker.pk}/retained/clear/", {"topic": "a/b"}, **HTMX
    )
    assert response.status_code == status
    if status == 200:
        assert "The broker could not be reached" in response.content.decode()
        assert not AuditEntry.objects.filter(action="broker.retained_clear").exists()


@pytest.mark.parametrize(("who", "status"), [("viewer", 200), ("outsider", 404)])
def test_retained_list_is_scoped(world: dict, who: str, status: int) -> None:
    broker = make_broker(world["product"], port=free_port())
    response = logged_in(world["users"][who]).get(
        f"/brokers/{broker.pk}/retained/", **HTMX
    )
    assert response.status_code == status


# --- The tree -------------------------------------------------------------------


def test_tree_nests_and_counts_subtrees(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    plant_topics(broker)
    html = topics_tab(logged_in(world["users"]["viewer"]), broker)
    nodes = tree_of(html)
    assert set(nodes) == {
        "plant",
        "plant/boiler",
        "sensors",
        "sensors/a",
        "sensors/a/hum",
        "sensors/a/temp",
        "sensors/b",
        "sensors/b/temp",
    }
    assert {path: n.parent for path, n in nodes.items()} == {
        "plant": None,
        "plant/boiler": "plant",
        "sensors": None,
        "sensors/a": "sensors",
        "sensors/a/hum": "sensors/a",
        "sensors/a/temp": "sensors/a",
        "sensors/b": "sensors",
        "sensors/b/temp": "sensors/b",
    }
    # `sensors` is a topic (1 message) and a branch (7 in all).
    assert (nodes["sensors"].count, nodes["sensors"].total) == ("1", "7")
    assert (nodes["sensors/a"].count, nodes["sensors/a"].total) == ("", "5")
    assert (nodes["sensors/a/temp"].count, nodes["sensors/a/temp"].total) == ("3", "")
    assert (nodes["plant"].count, nodes["plant"].total) == ("", "1")
    # The last value of each topic.
    assert "22" in nodes["sensors/a/temp"].text
    assert "online" in nodes["sensors"].text
    assert "5 topics, 8 messages" in html


def test_tree_uses_one_query_for_the_topics(world: dict, django_assert_max_num_queries):
    broker = make_broker_subscribed_to_all(world["product"])
    store(broker, *[(f"site/{i % 5}/dev{i}/temp", b"1") for i in range(300)])
    client = logged_in(world["users"]["viewer"])
    client.get(f"/brokers/{broker.pk}/?tab=topics", **HTMX)  # warm the session
    # Session, user, product, broker, memberships, status: the tree adds one.
    with django_assert_max_num_queries(12) as queries:
        html = topics_tab(client, broker, **HTMX)
    assert sum("brokers_topic" in q["sql"] for q in queries.captured_queries) == 1
    # site, its 5 sites, 300 devices and their 300 temp topics.
    assert len(tree_of(html)) == 1 + 5 + 300 + 300


def test_the_tree_expands_and_collapses_without_javascript(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    store(broker, *[(f"site/{i % 5}/dev{i}/temp", b"1") for i in range(100)])
    client = logged_in(world["users"]["viewer"])
    html = topics_tab(client, broker)
    # Many topics: the roots start open, deeper branches closed.
    assert html.count("<details open>") == 1
    assert html.count("<details>") == 5 + 100
    expanded = topics_tab(client, broker, "&expand=all")
    assert expanded.count("<details open>") == 1 + 5 + 100
    assert "<script>" not in html


def test_filter_narrows_the_tree(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    plant_topics(broker)
    client = logged_in(world["users"]["viewer"])
    html = topics_tab(client, broker, "&filter=sensors/%2B/temp", **HTMX)
    assert "<html" not in html
    assert set(tree_of(html)) == {
        "sensors",
        "sensors/a",
        "sensors/a/temp",
        "sensors/b",
        "sensors/b/temp",
    }
    # Only matching topics count: `sensors` itself does not match the filter.
    assert tree_of(html)["sensors"].total == "4"
    bad = topics_tab(client, broker, "&filter=a%2B")
    assert "+ must fill a whole level" in error_next_to(bad, "filter")
    assert '<ul class="topic-tree"' not in bad


def test_annotation_shows_in_the_tree_and_the_panel(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    plant_topics(broker)
    target = topic("sensors/a/temp")
    client = logged_in(world["users"]["operator"])
    url = f"/brokers/{broker.pk}/topics/{target.pk}/annotate/"
    response = client.post(url, {"description": "Boiler <inlet>", "unit": "°C"}, **HTMX)
    html = response.content.decode()
    assert "Saved the description and unit." in html
    assert "Boiler &lt;inlet&gt;" in html
    # The tree's note is replaced out of band, right away.
    oob = f'<span id="topic-note-{target.pk}" class="topic-note" hx-swap-oob="true">'
    assert oob + '<span class="unit">°C</span>' in html
    entry = AuditEntry.objects.get(action="topic.annotate")
    assert entry.source == "page" and entry.changes == {
        "description": ["", "Boiler <inlet>"],
        "unit": ["", "°C"],
    }
    tree = topics_tab(logged_in(world["users"]["viewer"]), broker)
    note = " ".join(tree_of(tree)["sensors/a/temp"].text)
    assert "°C" in note and "Boiler <inlet>" in note
    # The API shows the same annotation.
    api = client.get(f"/api/v1/brokers/{broker.pk}/topics/?filter=sensors/a/temp")
    assert api.json()[0]["unit"] == "°C"


def test_saving_the_same_annotation_again_audits_nothing(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    plant_topics(broker)
    target = topic("sensors")
    client = logged_in(world["users"]["operator"])
    url = f"/brokers/{broker.pk}/topics/{target.pk}/annotate/"
    for _ in range(2):
        client.post(url, {"description": "Gateway", "unit": ""})
    assert AuditEntry.objects.filter(action="topic.annotate").count() == 1


def test_bad_annotation_shows_the_error(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    plant_topics(broker)
    target = topic("sensors")
    client = logged_in(world["users"]["operator"])
    html = client.post(
        f"/brokers/{broker.pk}/topics/{target.pk}/annotate/",
        {"description": "x", "unit": "u" * 40},
        **HTMX,
    ).content.decode()
    assert "at most 32 characters" in error_next_to(html, "unit")
    target.refresh_from_db()
    assert target.unit == "" and target.description == ""


def test_viewers_see_the_annotation_but_no_form(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    plant_topics(broker)
    target = topic("sensors/a/temp")
    target.description, target.unit = "Inlet", "°C"
    target.save()
    url = f"/brokers/{broker.pk}/topics/{target.pk}/"
    viewer = logged_in(world["users"]["viewer"]).get(url, **HTMX).content.decode()
    assert "Inlet" in viewer and "°C" in viewer
    assert 'name="description"' not in viewer and "/annotate/" not in viewer
    operator = logged_in(world["users"]["operator"]).get(url, **HTMX).content.decode()
    assert 'name="description"' in operator and 'value="Inlet"' in operator


def test_api_annotation_goes_through_the_same_service(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    plant_topics(broker)
    target = topic("sensors")
    target.messages = 7
    target.save()
    stale = Topic.objects.get(pk=target.pk)
    Topic.objects.filter(pk=target.pk).update(messages=99)  # ingest meanwhile
    client = logged_in(world["users"]["operator"])
    response = client.patch(
        f"/api/v1/brokers/{broker.pk}/topics/{stale.pk}/",
        json.dumps({"unit": "%"}),
        content_type="application/json",
    )
    assert response.status_code == 200 and response.json()["unit"] == "%"
    target.refresh_from_db()
    # Only the note was written: ingest's counter survives.
    assert (target.unit, target.messages) == ("%", 99)
    assert AuditEntry.objects.get(action="topic.annotate").source == "api"


# --- The panel: history and chart ---------------------------------------------


def test_panel_shows_recent_history_and_a_chart_of_numbers(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    store(broker, *[("sensors/a/temp", f"{i / 2}".encode()) for i in range(60)])
    target = topic("sensors/a/temp")
    client = logged_in(world["users"]["viewer"])
    html = client.get(
        f"/brokers/{broker.pk}/topics/{target.pk}/", **HTMX
    ).content.decode()
    assert "<html" not in html
    assert len(re.findall(r'<li class="msg" data-message="\d+"', html)) == 50
    chart = chart_data(html)
    assert chart["series"] == ["value"]
    # The last 50, oldest first, with their times.
    assert chart["y"] == [[i / 2 for i in range(10, 60)]]
    assert chart["x"] == sorted(chart["x"]) and len(chart["x"]) == 50
    assert 'data-topic-chart="topic-chart-data"' in html
    assert "topic=sensors%2Fa%2Ftemp" in html  # the link into Activity


def test_chart_picks_the_numeric_fields_of_json_objects(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    store(
        broker,
        ("dev/1", b'{"temp": 20.5, "hum": 40, "ok": true, "name": "x"}'),
        ("dev/1", b'{"temp": 21, "power": {"watts": 5}}'),
        ("dev/1", b"not a number"),
        ("dev/1", b'{"temp": 22, "hum": 42}'),
        ("dev/1", b'{"temp": NaN}'),  # not JSON the browser can read
    )
    html = (
        logged_in(world["users"]["viewer"])
        .get(f"/brokers/{broker.pk}/topics/{topic('dev/1').pk}/", **HTMX)
        .content.decode()
    )
    chart = chart_data(html)
    assert chart["series"] == ["temp", "hum", "power.watts"]
    assert chart["y"] == [[20.5, 21.0, 22.0], [40.0, None, 42.0], [None, 5.0, None]]


@pytest.mark.parametrize(
    "payloads",
    [
        [b"on", b"off", b"on"],
        [b'{"state": "open"}', b'{"state": "closed"}'],
        [b"\x00\x01", b"\x00\x02"],
        [b"21"],  # one point draws no line
    ],
)
def test_no_chart_for_payloads_without_numbers(world: dict, payloads: list) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    store(broker, *[("door", p) for p in payloads])
    html = (
        logged_in(world["users"]["viewer"])
        .get(f"/brokers/{broker.pk}/topics/{topic('door').pk}/", **HTMX)
        .content.decode()
    )
    assert chart_data(html) is None and "data-topic-chart" not in html
    assert len(re.findall(r'<li class="msg" data-message="\d+"', html)) == len(payloads)


def test_panel_without_javascript_is_the_topics_tab(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    plant_topics(broker)
    target = topic("sensors/a/temp")
    html = (
        logged_in(world["users"]["viewer"])
        .get(f"/brokers/{broker.pk}/topics/{target.pk}/")
        .content.decode()
    )
    assert '<nav class="tabs"' in html and '<ul class="topic-tree"' in html
    assert chart_data(html)["y"] == [[20.0, 21.0, 22.0]]


def test_scripts_are_files_or_json_data(world: dict) -> None:
    """The CSP allows no inline code: only <script src> and JSON data blocks."""
    broker = make_broker_subscribed_to_all(world["product"])
    plant_topics(broker)
    html = (
        logged_in(world["users"]["operator"])
        .get(f"/brokers/{broker.pk}/topics/{topic('sensors/a/temp').pk}/")
        .content.decode()
    )
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts
    for attributes in scripts:
        assert "src=" in attributes or 'type="application/json"' in attributes
    assert "vendor/uplot-1.6.32.min.js" in html and "js/topic-chart.js" in html
    assert "vendor/uplot-1.6.32.min.css" in html
    # Every file the page loads is served by the portal, none from a CDN. (Looking
    # at the URLs, not the whole page: a random CSRF token may spell "cdn".)
    loaded = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', html)
    assert loaded
    for url in loaded:
        assert url.startswith("/") and "cdn" not in url.lower(), url


# --- Retained messages (a real Mosquitto) --------------------------------------


def test_topics_tab_does_not_ask_the_broker(world: dict) -> None:
    broker = make_broker(world["product"], port=free_port())
    html = topics_tab(logged_in(world["users"]["viewer"]), broker)
    assert "Load retained messages" in html
    assert "could not be reached" not in html


def test_unreachable_broker_is_a_clear_error(world: dict) -> None:
    broker = make_broker(world["product"], port=free_port())
    client = logged_in(world["users"]["viewer"])
    html = client.get(f"/brokers/{broker.pk}/retained/", **HTMX).content.decode()
    assert "The broker could not be reached" in html
    assert "<html" not in html


def test_bad_retained_filter_is_shown_next_to_it(world: dict) -> None:
    broker = make_broker(world["product"], port=free_port())
    html = (
        logged_in(world["users"]["viewer"])
        .get(f"/brokers/{broker.pk}/retained/?retained-filter=a/%23/b", **HTMX)
        .content.decode()
    )
    assert "# must be the last level" in error_next_to(html, "retained-filter")


def _retained_topics(html: str) -> list[str]:
    table = html.split('<table class="retained-table">', 1)
    if len(table) < 2:
        return []
    return re.findall(r'<td class="topic"><code>([^<]*)</code>', table[1])


@pytest.mark.mosquitto
def test_load_and_clear_retained_messages(world: dict, plain_broker: Any) -> None:
    broker = make_broker(world["product"], port=plain_broker.port)
    settings = ConnectionSettings.from_broker(broker)
    publish_messages(
        settings,
        [
            OutgoingMessage(t, p, qos=1, retain=True)
            for t, p in (
                ("plant/a", b'{"on": true}'),
                ("plant/b/c", b"1"),
                ("plant/b/d", b"2"),
                ("keep", b"\x00bin"),
            )
        ],
    )
    viewer = logged_in(world["users"]["viewer"])
    html = viewer.get(f"/brokers/{broker.pk}/retained/", **HTMX).content.decode()
    assert _retained_topics(html) == ["keep", "plant/a", "plant/b/c", "plant/b/d"]
    assert "4 retained messages under <code>#</code>" in html
    assert "binary, 4 bytes" in html
    assert "/retained/clear/" not in html  # viewers only look
    operator = logged_in(world["users"]["operator"])
    html = operator.get(
        f"/brokers/{broker.pk}/retained/?retained-filter=plant/%23", **HTMX
    ).content.decode()
    assert _retained_topics(html) == ["plant/a", "plant/b/c", "plant/b/d"]
    assert html.count("hx-confirm=") == 1 + 3 * 2
    # Clear one topic: the list comes back without it, filter kept.
    url = f"/brokers/{broker.pk}/retained/clear/"
    html = operator.post(
        url, {"topic": "plant/a", "retained-filter": "plant/#"}, **HTMX
    ).content.decode()
    assert "Cleared 1 retained message." in html
    assert _retained_topics(html) == ["plant/b/c", "plant/b/d"]
    # Clear a subtree.
    html = operator.post(
        url, {"topic": "plant/b", "recursive": "on", "retained-filter": "#"}, **HTMX
    ).content.decode()
    assert "Cleared 2 retained messages." in html  # c and d: plant/b held none
    assert _retained_topics(html) == ["keep"]
    assert [m.topic for m in retained_list(settings)] == ["keep"]
    entries = AuditEntry.objects.filter(action="broker.retained_clear").order_by("pk")
    assert [e.changes["cleared"][1] for e in entries] == [
        ["plant/a"],
        ["plant/b/c", "plant/b/d"],
    ]
    assert {e.source for e in entries} == {"page"}
    assert entries[1].changes["recursive"] == [None, True]


@pytest.mark.mosquitto
def test_retained_works_without_javascript(world: dict, plain_broker: Any) -> None:
    broker = make_broker(world["product"], port=plain_broker.port)
    settings = ConnectionSettings.from_broker(broker)
    publish_messages(settings, [OutgoingMessage("x/y", b"1", qos=1, retain=True)])
    client = logged_in(world["users"]["operator"])
    html = client.get(f"/brokers/{broker.pk}/retained/").content.decode()
    assert '<nav class="tabs"' in html and _retained_topics(html) == ["x/y"]
    response = client.post(
        f"/brokers/{broker.pk}/retained/clear/",
        {"topic": "x/y", "retained-filter": "x/#"},
    )
    assert response.status_code == 302
    assert response["Location"] == (
        f"/brokers/{broker.pk}/retained/?retained-filter=x%2F%23"
    )
    html = client.get(response["Location"]).content.decode()
    assert "Cleared 1 retained message." in html and _retained_topics(html) == []
    assert retained_list(settings) == []


def test_search_finds_a_deep_topic_and_opens_its_branches(world: dict) -> None:
    broker = make_broker_subscribed_to_all(world["product"])
    plant_topics(broker)
    # More topics than open at once: without a search the branches start closed.
    store(broker, *[(f"site/{i}/x", b"1") for i in range(70)])
    store(broker, ("site/north/hall/boiler/pump/pressure", b"2.5"))
    client = logged_in(world["users"]["viewer"])
    closed = topics_tab(client, broker)
    assert '<details><summary><span class="node" title="site/north">' in closed
    html = topics_tab(client, broker, "&q=PUMP%20press", **HTMX)
    assert "<html" not in html
    deep = "site/north/hall/boiler/pump/pressure"
    assert set(tree_of(html)) == {deep.rsplit("/", n)[0] for n in range(6)}
    # Every branch down to the leaf is open.
    assert (
        '<details open><summary><span class="node" title="site/north/hall/boiler/pump">'
        in html
    )
    assert html.count("<details open>") == 5
    assert 'value="PUMP press"' in html
    # The expand and collapse links keep the search; a search with no match says so.
    assert "q=PUMP+press&amp;expand=all" in html
    assert "No topic matches this search." in topics_tab(client, broker, "&q=zzz")
    # With the MQTT filter both apply.
    narrowed = tree_of(topics_tab(client, broker, "&filter=sensors/%23&q=temp"))
    assert set(narrowed) == {"sensors", "sensors/a", "sensors/a/temp", "sensors/b"} | {
        "sensors/b/temp"
    }
