"""History retention: every broker's age and count limits, applied in chunks."""

from __future__ import annotations

import datetime

from django.db.models import QuerySet
from django.utils import timezone

from brokers.models import Broker
from history.models import StoredMessage

PRUNE_CHUNK = 10_000


def history_prune(now: datetime.datetime | None = None) -> dict[int, int]:
    """Apply every broker's retention (age, then count); returns deletions per broker.

    Deletes in chunks so a large prune never holds long locks against ingest.
    """
    now = now or timezone.now()
    removed: dict[int, int] = {}
    for broker in Broker.objects.only(
        "pk", "history_max_age_days", "history_max_messages"
    ):
        count = 0
        cutoff = now - datetime.timedelta(days=broker.history_max_age_days)
        count += _delete_in_chunks(
            StoredMessage.objects.filter(broker=broker, received_at__lt=cutoff)
        )
        keep = broker.history_max_messages
        # The newest id past the kept window: it and everything older goes.
        boundary_rows = list(
            StoredMessage.objects.filter(broker=broker)
            .order_by("-id")
            .values_list("id", flat=True)[keep : keep + 1]
        )
        if boundary_rows:
            boundary = boundary_rows[0]
            count += _delete_in_chunks(
                StoredMessage.objects.filter(broker=broker, id__lte=boundary)
            )
        if count:
            removed[broker.pk] = count
    return removed


def _delete_in_chunks(queryset: QuerySet[StoredMessage]) -> int:
    total = 0
    while True:
        ids = list(queryset.order_by("id").values_list("id", flat=True)[:PRUNE_CHUNK])
        if not ids:
            return total
        deleted, _per_model = StoredMessage.objects.filter(id__in=ids).delete()
        total += deleted
