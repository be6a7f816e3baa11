"""What the broker page's socket reads from history (registered into brokers.feed
from HistoryConfig.ready): the rows a (re)connecting live feed starts from, and
the topic tree's counts and last values."""

from __future__ import annotations

import datetime

from django.utils.html import format_html
from django.utils.translation import gettext as _

from brokers.feed import LiveRow
from history.models import StoredMessage, Topic
from history.queries import filter_to_q, with_payload_heads
from history.selectors import (
    last_value_cut_html,
    message_preview,
    message_properties,
    topic_last_preview,
)


def feed_rows(
    broker_id: int, topic_filter: str, limit: int, chars: int
) -> list[LiveRow]:
    """The broker's last `limit` stored messages matching the filter, newest first."""
    messages = StoredMessage.objects.filter(broker_id=broker_id)
    if topic_filter:
        messages = messages.filter(filter_to_q(topic_filter))
    # Payload prefixes only: a resync must not read megabyte payloads whole.
    heads = with_payload_heads(messages.order_by("-id"))
    return [
        LiveRow(
            m.topic,
            m.received_at,
            m.qos,
            m.retain,
            message_preview(m, chars),
            m.id,
            properties=message_properties(m),
        )
        for m in heads[:limit]
    ]


def topic_updates(broker_id: int, since: datetime.datetime, limit: int) -> str:
    """Counts and last values of the topics seen since `since`, as the tree shows
    them (history.views._topic_tree_html), swapped out of band by id."""
    topics = Topic.objects.filter(
        broker_id=broker_id, last_seen_at__gte=since
    ).order_by("-last_seen_at")[:limit]
    parts = []
    for topic in topics.only(
        "id", "messages", "last_payload", "last_payload_truncated"
    ):
        parts.append(
            format_html(
                '<span class="count" id="topic-count-{}" hx-swap-oob="true">{}</span>',
                topic.pk,
                topic.messages,
            )
        )
        if topic.last_payload:
            preview = topic_last_preview(topic)
            shown = (
                _("binary")
                if preview.is_binary
                else preview.text + ("…" if preview.truncated else "")
            )
            cut = last_value_cut_html() if topic.last_payload_truncated else ""
            parts.append(
                format_html(
                    '<code class="last" id="topic-last-{}" hx-swap-oob="true">'
                    "{}{}</code>",
                    topic.pk,
                    shown,
                    cut,
                )
            )
    return "".join(parts)
