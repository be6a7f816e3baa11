"""Subscriptions another app creates and keeps in step (a device's telemetry and
availability subscriptions): the subscription pages show them as managed there and
offer no Edit or Delete.

The brokers app cannot know those apps (they sit above it), so each registers a
lookup from its AppConfig.ready(): `register_subscription_owners(lookup)`, where
`lookup(ids)` answers {subscription id: SubscriptionOwner} for the ids it manages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from brokers.models import Subscription


@dataclass(frozen=True)
class SubscriptionOwner:
    """What manages a subscription, as a link: "device Boiler" -> its page."""

    label: str
    url: str


OwnerLookup = Callable[[list[int]], dict[int, SubscriptionOwner]]

_lookups: list[OwnerLookup] = []


def register_subscription_owners(lookup: OwnerLookup) -> None:
    if lookup not in _lookups:
        _lookups.append(lookup)


def owners_of(ids: Iterable[int]) -> dict[int, SubscriptionOwner]:
    """The owner of each managed subscription among `ids`."""
    wanted = list(ids)
    found: dict[int, SubscriptionOwner] = {}
    if not wanted:
        return found
    for lookup in _lookups:
        found.update(lookup(wanted))
    return found


def owner_of(subscription: Subscription) -> SubscriptionOwner | None:
    return owners_of([subscription.pk]).get(subscription.pk)


def with_owners(subscriptions: Iterable[Subscription]) -> list[Subscription]:
    """The subscriptions, each with `managed_by` (a SubscriptionOwner or None) for
    the tables."""
    rows = list(subscriptions)
    owners = owners_of(s.pk for s in rows)
    for row in rows:
        row.managed_by = owners.get(row.pk)  # type: ignore[attr-defined]
    return rows
