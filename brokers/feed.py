"""The broker page's live feed rows, and what apps above brokers lend the socket.

The feed (Activity tab) re-syncs from the stored history when it (re)opens, and
the topic explorer's counts and last values refresh from the topic index: both
belong to the history app, which sits above brokers and registers its readers
here from its AppConfig.ready (`register_feed_history`, `register_topic_updates`).
Without them the feed starts empty and the counts stay as the page rendered them.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from typing import Any

from django.utils.dateparse import parse_datetime

from brokers import selectors
from mqttadmin.lib.payloads import exact_payload, properties_summary

# What a feed row shows of a payload.
LIVE_PREVIEW_CHARS = 300


class LiveRow:
    """A message as the live feed shows it, from history or from a live frame."""

    def __init__(
        self,
        topic: str,
        received_at: datetime.datetime | None,
        qos: int,
        retain: bool,
        preview: selectors.PayloadPreview,
        stored_id: int | None = None,
        properties: list[tuple[str, str]] | None = None,
    ) -> None:
        self.topic = topic
        self.received_at = received_at
        self.qos = qos
        self.retain = retain
        self.preview = preview
        self.stored_id = stored_id
        # MQTT 5 properties as (label, value) pairs for the compact cell.
        self.properties = properties or []

    @classmethod
    def from_frame(cls, item: dict[str, Any]) -> LiveRow:
        """A row from a live frame's message item, its payload shown byte-exact
        (text as received, base64 for binary; labelled JSON only when whole)."""
        text = item.get("text")
        data = base64.b64decode(item["data"]) if text is None else None
        carried = len(text.encode("utf-8")) if text is not None else len(data or b"")
        size = int(item.get("size", carried))
        # A frame carries at most a prefix of a large payload: never JSON then.
        exact = exact_payload(data, text, complete=size == carried)
        shown = exact.text[:LIVE_PREVIEW_CHARS]
        preview = selectors.PayloadPreview(
            "json" if exact.is_json else exact.encoding,
            shown,
            size,
            size != carried or len(exact.text) > LIVE_PREVIEW_CHARS,
        )
        properties = item.get("properties")
        return cls(
            item["topic"],
            parse_datetime(item.get("received_at") or ""),
            int(item.get("qos", 0)),
            bool(item.get("retain")),
            preview,
            properties=properties_summary(properties)
            if isinstance(properties, dict)
            else None,
        )


# (broker id, MQTT filter or "", how many, preview characters) -> newest first.
FeedHistory = Callable[[int, str, int, int], list[LiveRow]]
# (broker id, seen since, at most how many) -> out-of-band HTML for the tree.
TopicUpdates = Callable[[int, datetime.datetime, int], str]

_feed_history: FeedHistory | None = None
_topic_updates: TopicUpdates | None = None


def register_feed_history(reader: FeedHistory) -> None:
    global _feed_history
    _feed_history = reader


def register_topic_updates(renderer: TopicUpdates) -> None:
    global _topic_updates
    _topic_updates = renderer


def feed_history(
    broker_id: int, topic_filter: str, limit: int, chars: int
) -> list[LiveRow]:
    """The stored messages a (re)connecting feed starts from; none without a
    history app."""
    if _feed_history is None:
        return []
    return _feed_history(broker_id, topic_filter, limit, chars)


def topic_updates(broker_id: int, since: datetime.datetime, limit: int) -> str:
    """The tree's counts and last values of topics seen since `since`."""
    if _topic_updates is None:
        return ""
    return _topic_updates(broker_id, since, limit)
