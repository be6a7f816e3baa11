"""Reads the history pages show: message previews, the topic tree, a topic's
recent messages and the chart of their numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from brokers.models import Broker
from brokers.selectors import PREVIEW_CHARS, SHORT_PREVIEW_CHARS, PayloadPreview
from history.models import StoredMessage, Topic
from history.queries import (
    HistoryQuery,
    messages_for,
    stored_payload,
    topics_for,
    with_payload_heads,
)
from mqttadmin.lib.payloads import (
    ExactPayload,
    exact_payload,
    parsed_json,
    payload_text,
    prefix_text,
    properties_summary,
)


@dataclass(frozen=True)
class MessageRow:
    """A stored message, its payload preview and its MQTT 5 properties (label,
    value), for the history tables."""

    message: StoredMessage
    preview: PayloadPreview
    properties: list[tuple[str, str]] = field(default_factory=list)


def exact_preview(
    exact: ExactPayload,
    size: int,
    limit: int = PREVIEW_CHARS,
    *,
    cut: bool = False,
    stored_truncated: bool = False,
) -> PayloadPreview:
    """At most `limit` characters of a payload exactly as received (base64 for
    binary), labelled JSON when it is; `cut` marks a payload only partly at hand."""
    kind = "json" if exact.is_json else exact.encoding
    shown = exact.text[:limit]
    truncated = cut or stored_truncated or len(exact.text) > limit
    return PayloadPreview(kind, shown, size, truncated, stored_truncated)


def message_preview(
    message: StoredMessage, limit: int = PREVIEW_CHARS
) -> PayloadPreview:
    """The preview of a stored message, read whole or through
    `with_payload_heads`, byte-exact. A payload only partly at hand (cut by
    history's cap or by the list's read) is never labelled JSON: it is incomplete."""
    stored = stored_payload(message)
    partial = stored.truncated or stored.cut
    exact = exact_payload(stored.data, stored.text, complete=not partial)
    return exact_preview(
        exact, stored.size, limit, cut=partial, stored_truncated=stored.truncated
    )


def message_properties(message: StoredMessage) -> list[tuple[str, str]]:
    """A stored message's MQTT 5 properties for the compact properties cell."""
    return properties_summary(message.properties)


def topic_last_payload(topic: Topic) -> ExactPayload:
    """The topic index's last value, byte-exact. The index keeps its first 4,096
    bytes: a cut one is text up to the last whole character, and never JSON."""
    raw = bytes(topic.last_payload) if topic.last_payload is not None else b""
    if not topic.last_payload_truncated:
        return exact_payload(raw)
    return exact_payload(raw, prefix_text(raw), complete=False)


def topic_last_preview(
    topic: Topic, limit: int = SHORT_PREVIEW_CHARS
) -> PayloadPreview:
    """The last value as the topic tree and page show it (its full size unknown
    when the index cut it: `size` is then the kept prefix's)."""
    raw_size = len(topic.last_payload) if topic.last_payload is not None else 0
    return exact_preview(
        topic_last_payload(topic), raw_size, limit, cut=topic.last_payload_truncated
    )


def last_value_cut_html() -> SafeString:
    """The mark of a last value the topic index cut (it keeps 4,096 bytes)."""
    title = escape(
        _("The topic index keeps the first 4,096 bytes; the full size is unknown.")
    )
    return mark_safe(  # noqa: S308 (the texts are escaped)
        f' <small class="payload-kind truncated" title="{title}">'
        f"{escape(_('cut at 4,096 bytes'))}</small>"
    )


def retained_as_dict(topic: str, payload: bytes, qos: int) -> dict[str, Any]:
    """A retained message as the API gives it, byte-exact."""
    exact = exact_payload(payload)
    return {
        "topic": topic,
        "payload": exact.text,
        "payload_encoding": exact.encoding,
        "payload_is_json": exact.is_json,
        "qos": qos,
    }


def message_rows(
    messages: list[StoredMessage], limit: int = PREVIEW_CHARS
) -> list[MessageRow]:
    return [
        MessageRow(m, message_preview(m, limit), message_properties(m))
        for m in messages
    ]


# --- The topic tree ----------------------------------------------------------

TREE_MAX_TOPICS = 5000
# Up to this many topics every branch starts open; more start with the roots only.
TREE_OPEN_ALL_UP_TO = 60


@dataclass
class TopicNode:
    """One level of the topic tree; `topic` is set when messages arrived on exactly
    this path (a path can be a topic and have subtopics at once)."""

    name: str
    path: str
    depth: int
    topic: Topic | None = None
    preview: PayloadPreview | None = None
    children: dict[str, TopicNode] = field(default_factory=dict)
    total: int = 0

    @property
    def own(self) -> int:
        return self.topic.messages if self.topic is not None else 0

    @property
    def has_children(self) -> bool:
        return bool(self.children)


@dataclass(frozen=True)
class TreeRow:
    """A node in document order, with how many open branches end after it: the
    template renders the nested <details> from a flat loop (no recursive includes,
    which cost a template render per node)."""

    node: TopicNode
    closes: range
    open: bool


@dataclass(frozen=True)
class TopicTree:
    rows: list[TreeRow]
    topics: int
    messages: int
    truncated: bool


def topic_tree(
    broker: Broker,
    topic_filter: str | None,
    expand_all: bool = False,
    search: str | None = None,
) -> TopicTree:
    """The broker's topics matching `topic_filter` and containing every word of
    `search` (in the topic, its description or unit; any case), split by "/"
    into a tree with per-node counts (own messages and subtree total). One query.
    A search opens every branch: what it found may be deep down.

    Raises ValidationError for a bad filter.
    """
    queryset = topics_for(broker, topic_filter)
    for word in (search or "").split():
        queryset = queryset.filter(
            Q(topic__icontains=word)
            | Q(description__icontains=word)
            | Q(unit__icontains=word)
        )
    queryset = queryset.only(
        "id",
        "topic",
        "messages",
        "last_payload",
        "last_payload_truncated",
        "last_seen_at",
        "retained",
        "description",
        "unit",
    )
    topics = list(queryset[: TREE_MAX_TOPICS + 1])
    truncated = len(topics) > TREE_MAX_TOPICS
    topics = topics[:TREE_MAX_TOPICS]
    root = TopicNode(name="", path="", depth=-1)
    for topic in topics:
        node = root
        for index, level in enumerate(topic.topic.split("/")):
            child = node.children.get(level)
            if child is None:
                path = level if index == 0 else f"{node.path}/{level}"
                child = TopicNode(name=level, path=path, depth=index)
                node.children[level] = child
            node = child
            node.total += topic.messages
        node.topic = topic
        node.preview = topic_last_preview(topic)
    open_all = expand_all or bool(search) or len(topics) <= TREE_OPEN_ALL_UP_TO
    rows: list[TreeRow] = []
    _flatten(root, rows, open_all)
    return TopicTree(
        rows=rows,
        topics=len(topics),
        messages=sum(t.messages for t in topics),
        truncated=truncated,
    )


def _flatten(root: TopicNode, rows: list[TreeRow], open_all: bool) -> None:
    """Depth-first, children by name; iterative so deep topics cannot overflow."""
    stack: list[tuple[TopicNode, int]] = [
        (child, 0) for child in _sorted_children(root, reverse=True)
    ]
    while stack:
        node, pending_closes = stack.pop()
        if node.has_children:
            rows.append(TreeRow(node, range(0), open_all or node.depth == 0))
            children = _sorted_children(node, reverse=True)
            # The last child in document order ends this branch: it carries the
            # branch's close on top of those its ancestors left pending.
            first, *rest = children
            stack.append((first, pending_closes + 1))
            stack.extend((child, 0) for child in rest)
        else:
            rows.append(TreeRow(node, range(pending_closes), False))


def _sorted_children(node: TopicNode, reverse: bool = False) -> list[TopicNode]:
    return sorted(node.children.values(), key=lambda n: n.name, reverse=reverse)


# --- One topic: recent history and a chart of its numbers ----------------------

PANEL_MESSAGES = 50
MAX_CHART_SERIES = 8


@dataclass(frozen=True)
class TopicHistory:
    rows: list[MessageRow]
    chart: dict[str, Any] | None


def topic_history(
    broker: Broker, topic: Topic, limit: int = PANEL_MESSAGES
) -> TopicHistory:
    """The topic's latest messages (newest first) and, when their payloads are
    numbers, chart data for uPlot: `{"series": [...], "x": [...], "y": [[...]]}`."""
    # An exact match, not the topic as an MQTT filter: a name such as "$share/a/b"
    # is a valid topic but would parse as a shared subscription.
    queryset = messages_for(broker, HistoryQuery()).filter(topic=topic.topic)
    messages = list(with_payload_heads(queryset)[:limit])
    return TopicHistory(message_rows(messages), numeric_chart(messages, topic.unit))


def _numbers_of(value: Any, prefix: str = "", depth: int = 0) -> dict[str, float]:
    """Numeric fields of a JSON value: a bare number is "value"; objects give their
    numeric fields, one nested level as "outer.inner". Booleans are not numbers."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, int | float):
        # Python's json reads NaN and Infinity, but JSON.parse in the browser not.
        number = float(value)
        return {prefix or "value": number} if math.isfinite(number) else {}
    found: dict[str, float] = {}
    if isinstance(value, dict) and depth < 2:
        for key, item in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(item, dict | int | float):
                found.update(_numbers_of(item, name, depth + 1))
    return found


def numeric_chart(
    messages: list[StoredMessage], unit: str = ""
) -> dict[str, Any] | None:
    """Chart data from messages (newest first), or None when fewer than two carry
    numbers (one point draws no line). Messages without a field leave a gap."""
    points: list[tuple[float, dict[str, float]]] = []
    series: list[str] = []
    for message in reversed(messages):
        stored = stored_payload(message)
        if stored.truncated or stored.cut:
            continue  # a prefix of a document carries no trustworthy numbers
        text = stored.text if stored.text is not None else payload_text(stored.data)
        parsed = parsed_json(text) if text is not None else None
        if parsed is None:
            continue
        numbers = _numbers_of(parsed.value)
        if not numbers:
            continue
        for name in numbers:
            if name not in series and len(series) < MAX_CHART_SERIES:
                series.append(name)
        points.append((message.received_at.timestamp(), numbers))
    if len(points) < 2 or not series:
        return None
    return {
        "series": series,
        "unit": unit,
        "x": [stamp for stamp, _numbers in points],
        "y": [[numbers.get(name) for _stamp, numbers in points] for name in series],
    }
