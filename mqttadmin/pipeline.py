"""The message contract between the MQTT runtime and the apps that consume messages.

The runtime receives PUBLISH packets (`ReceivedMessage`), drains them in batches,
matches each message against the enabled subscriptions of its broker, and hands
the `Batch` to every sink named in `settings.MQTTADMIN_INGEST_SINKS`, in that
order, inside one transaction (as NetBox's EVENTS_PIPELINE does). A sink writes its
app's part of the batch: statistics, history, action runs, device telemetry. The
runtime names none of them; an app joins the pipeline by adding its sink to that
setting.

Nothing here imports an app: this module sits in the core, below all of them.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from mqttadmin.lib.topics import topic_matches


@dataclass(slots=True)
class ReceivedMessage:
    """One PUBLISH as the runtime received it.

    Not frozen: a frozen dataclass sets each field through object.__setattr__,
    a cost paid per message on paho's network thread.
    """

    broker_id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: datetime.datetime
    mid: int = 0
    properties: dict[str, Any] = field(default_factory=dict)
    # Received by a shared-subscription session: it stands only for the
    # subscriptions of a $share group (the broker gave it to one member of the group).
    shared: bool = False


@dataclass(frozen=True)
class SubscriptionMatch:
    """An enabled subscription as matching needs it (loaded by the runtime)."""

    id: int
    topic_filter: str
    store_messages: bool
    has_actions: bool
    shared: bool = False


@dataclass(frozen=True, slots=True)
class Matched:
    """What one received message stands for.

    A message stands for the subscriptions of the session that received it: a
    shared session's copy for the $share subscriptions, the owner's for the others,
    so a message both kinds match is counted and acted on once per subscription.
    When the owner's own session also receives (or stores) a shared copy's topic,
    only the owner's copy counts in the topic index (and becomes a history row),
    so both hold the message once.
    """

    subscriptions: list[SubscriptionMatch]
    owner_receives: bool = False
    owner_stores: bool = False

    @property
    def stored(self) -> bool:
        return not self.owner_stores and any(
            m.store_messages for m in self.subscriptions
        )


def match_one(message: ReceivedMessage, candidates: list[SubscriptionMatch]) -> Matched:
    """The subscriptions `message` stands for, among its broker's `candidates`."""
    if not message.shared:
        return Matched(
            [
                m
                for m in candidates
                if not m.shared and topic_matches(m.topic_filter, message.topic)
            ]
        )
    hits = [m for m in candidates if topic_matches(m.topic_filter, message.topic)]
    owners = [m for m in hits if not m.shared]
    return Matched(
        [m for m in hits if m.shared],
        owner_receives=bool(owners),
        owner_stores=any(m.store_messages for m in owners),
    )


def match_batch(
    messages: list[ReceivedMessage], candidates: dict[int, list[SubscriptionMatch]]
) -> list[Matched]:
    """For each message, what it stands for (computed once per topic in a batch)."""
    found_for: dict[tuple[int, str, bool], Matched] = {}
    result = []
    for message in messages:
        key = (message.broker_id, message.topic, message.shared)
        found = found_for.get(key)
        if found is None:
            found = found_for[key] = match_one(
                message, candidates.get(message.broker_id, [])
            )
        result.append(found)
    return result


class Batch:
    """The messages of one ingest transaction and what each stands for.

    Sinks see the same Batch in turn. A sink may `take` the messages that are its
    alone (broker statistics on `$SYS/...`), so later sinks never see them;
    matching is computed on first use, after such takes.
    """

    def __init__(
        self,
        messages: list[ReceivedMessage],
        candidates: Callable[[set[int]], dict[int, list[SubscriptionMatch]]],
    ) -> None:
        self.messages = messages
        self._candidates = candidates
        self._matched: list[Matched] | None = None

    def take(self, belongs: Callable[[ReceivedMessage], bool]) -> list[ReceivedMessage]:
        """Remove and return the messages for which `belongs` is true."""
        taken = [m for m in self.messages if belongs(m)]
        if taken:
            self.messages = [m for m in self.messages if not belongs(m)]
            self._matched = None
        return taken

    @property
    def broker_ids(self) -> set[int]:
        return {m.broker_id for m in self.messages}

    @property
    def matched(self) -> list[Matched]:
        """One `Matched` per message, in order."""
        if self._matched is None:
            self._matched = match_batch(
                self.messages, self._candidates(self.broker_ids)
            )
        return self._matched

    def pairs(self) -> Iterable[tuple[ReceivedMessage, Matched]]:
        return zip(self.messages, self.matched, strict=True)

    @property
    def seen(self) -> list[ReceivedMessage]:
        """Messages that count as seen once: a shared copy of a topic the owner's
        own session also receives is left out (the owner's copy counts), and so is
        a `$` topic no subscription names (some brokers, NATS among them, let `#`
        match their internal `$JS/...` and `$MQTT/...` subjects)."""
        return [
            m
            for m, found in self.pairs()
            if not found.owner_receives
            and (found.subscriptions or not m.topic.startswith("$"))
        ]


class Sink(Protocol):
    """One app's part of ingest: `write` runs inside the batch's transaction.

    A database error propagates (the runtime retries the whole batch, nothing is
    acknowledged); any other exception marks a poison message, and the runtime
    retries the batch one message at a time, dead-lettering the ones that fail.
    """

    def write(self, batch: Batch) -> None: ...


@cache
def _sinks(names: tuple[str, ...]) -> tuple[Sink, ...]:
    return tuple(import_string(name)() for name in names)


def ingest_sinks() -> tuple[Sink, ...]:
    """The sinks named in `settings.MQTTADMIN_INGEST_SINKS`, in order (a settings
    override in a test takes effect at the next batch)."""
    return _sinks(tuple(settings.MQTTADMIN_INGEST_SINKS))
