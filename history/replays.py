"""Retained messages a broker replays on every (re)subscribe.

A broker sends a topic's retained message, flagged retain=1, each time a matching
subscription is made, so every reconnect of the runtime would store the last
values again, count them again and fire their actions again. A retain=1 delivery
whose payload equals the topic's last value in the topic index is such a replay.
(A message published while the runtime is subscribed reaches it with retain=0,
retained or not, so a repeated live value is never taken for one.)
"""

from __future__ import annotations

import hashlib

from history.models import Topic
from mqttadmin.pipeline import ReceivedMessage


def retained_replays(messages: list[ReceivedMessage]) -> set[int]:
    """Positions in `messages` of replayed retained messages (one query, and only
    when the batch holds retain=1 deliveries)."""
    candidates = [
        (index, message) for index, message in enumerate(messages) if message.retain
    ]
    if not candidates:
        return set()
    wanted = {(m.broker_id, m.topic) for _index, m in candidates}
    rows = Topic.objects.filter(
        broker_id__in={broker_id for broker_id, _topic in wanted},
        topic__in={topic for _broker_id, topic in wanted},
    ).values_list("broker_id", "topic", "last_payload_digest")
    last = {
        (broker_id, topic): bytes(digest or b"") for broker_id, topic, digest in rows
    }
    replays: set[int] = set()
    for index, message in candidates:
        digest = last.get((message.broker_id, message.topic))
        if digest and hashlib.sha256(message.payload).digest() == digest:
            replays.add(index)
    return replays
