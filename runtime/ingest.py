"""What the runtime does with received messages, one batch at a time.

The runtime's ingest thread drains its queue into batches and calls `store_batch`;
only after it returns (committed) does the runtime acknowledge QoS>0 messages. Per
batch: every sink of settings.MQTTADMIN_INGEST_SINKS (history rows, the topic index,
subscription counters, action runs, telemetry), one counter update per broker.
Nothing here runs on paho's network thread.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from django.db import DatabaseError, transaction
from django.db.models import F

from brokers.models import BrokerStatus, Subscription
from history.replays import retained_replays
from mqttadmin.pipeline import (
    Batch,
    ReceivedMessage,
    SubscriptionMatch,
    ingest_sinks,
)
from runtime.models import DeadLetter

logger = logging.getLogger(__name__)


class SubscriptionCache:
    """Subscriptions per broker, re-read at most every `ttl` seconds.

    The runtime keeps one so a busy stream costs one query per second, not one per
    batch; a subscription change reaches matching within `ttl` (the runtime's own
    subscribe/unsubscribe takes about as long).
    """

    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._loaded_at = -1e9
        self._matches: dict[int, list[SubscriptionMatch]] = {}

    def get(self, broker_ids: set[int]) -> dict[int, list[SubscriptionMatch]]:
        now = time.monotonic()
        if now - self._loaded_at > self.ttl or not broker_ids <= self._matches.keys():
            wanted = broker_ids | self._matches.keys()
            self._matches = subscriptions_by_broker(wanted)
            self._loaded_at = now
        return self._matches


def subscriptions_by_broker(broker_ids: set[int]) -> dict[int, list[SubscriptionMatch]]:
    """The enabled subscriptions of these brokers, one query per batch."""
    found: dict[int, list[SubscriptionMatch]] = {pk: [] for pk in broker_ids}
    rows = Subscription.objects.filter(broker_id__in=broker_ids, enabled=True)
    for broker_id, pk, topic_filter, group, store, actions in rows.values_list(
        "broker_id", "pk", "topic_filter", "shared_group", "store_messages", "actions"
    ):
        shared = bool(group) or topic_filter.startswith("$share/")
        if topic_filter.startswith("$share/"):
            topic_filter = topic_filter.split("/", 2)[2]
        found[broker_id].append(
            SubscriptionMatch(pk, topic_filter, store, bool(actions), shared)
        )
    return found


def _process(
    batch: list[ReceivedMessage], cache: SubscriptionCache | None
) -> list[ReceivedMessage]:
    """The batch through every sink in one transaction; returns the messages it
    counts as seen (retained messages replayed on a resubscribe, and `$` topics
    no subscription names, are left out)."""
    candidates = cache.get if cache else subscriptions_by_broker
    with transaction.atomic():
        replays = retained_replays(batch)
        work = Batch([m for i, m in enumerate(batch) if i not in replays], candidates)
        for sink in ingest_sinks():
            sink.write(work)
        for broker_id, count in Counter(m.broker_id for m in work.seen).items():
            BrokerStatus.objects.filter(broker_id=broker_id).update(
                messages_received=F("messages_received") + count
            )
    return work.seen


def store_batch(
    batch: list[ReceivedMessage], cache: SubscriptionCache | None = None
) -> list[ReceivedMessage]:
    """Record a batch in one transaction; returns the messages recorded (the live
    feed shows those).

    A database failure propagates (the runtime keeps the batch unacknowledged and
    retries). Any other failure is a poison message: the batch is retried one
    message at a time and the ones that still fail go to the dead-letter list.
    """
    try:
        return _process(batch, cache)
    except DatabaseError:
        raise
    except Exception:
        logger.warning("batch of %d failed; isolating the poison", len(batch))
        recorded: list[ReceivedMessage] = []
        for message in batch:
            try:
                recorded += _process([message], None)
            except DatabaseError:
                raise
            except Exception as exc:
                logger.exception("message on %s dead-lettered", message.topic)
                DeadLetter.objects.create(
                    broker_id=message.broker_id,
                    topic=message.topic,
                    payload=message.payload,
                    qos=message.qos,
                    error=f"{exc.__class__.__name__}: {exc}",
                    received_at=message.received_at,
                )
        return recorded
