"""Leases: which runtime owns which broker's connection.

A runtime runs a session only for brokers whose RuntimeLease row names it and has
not expired. Owners renew every few seconds; a killed owner's rows run out and the
next runtime to look takes them. Plain UPDATE/INSERT statements in autocommit, so
the same code is atomic on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime
import logging
import math
import time

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from runtime.models import RuntimeLease, RuntimeWorker

logger = logging.getLogger(__name__)


def fair_share(brokers: int, workers: int) -> int:
    """How many brokers one of `workers` live runtimes may own."""
    return math.ceil(brokers / max(workers, 1))


class LeaseKeeper:
    """The leases one runtime holds; `sync` is called from its reconcile thread."""

    def __init__(self, owner: str, ttl: float, renew_every: float) -> None:
        if renew_every >= ttl:
            raise ValueError("leases must be renewed more often than they expire")
        self.owner = owner
        self.ttl = datetime.timedelta(seconds=ttl)
        self.renew_every = renew_every
        self.held: set[int] = set()
        self._next_renew = 0.0
        self._next_heartbeat = 0.0
        self._live_workers = 1
        # Monotonic time until which the held leases are certainly still ours.
        self.valid_until = 0.0

    def sync(self, wanted: set[int]) -> set[int]:
        """Release leases of brokers no longer wanted, renew ours when due, take
        free or expired ones for wanted brokers up to this runtime's fair share,
        give back what exceeds it; return the ids held now."""
        unwanted = self.held - wanted
        if unwanted:
            self.release(unwanted)
        started = time.monotonic()
        if started >= self._next_heartbeat:
            self._live_workers = self._heartbeat()
            self._next_heartbeat = started + self.renew_every
        if self.held and started >= self._next_renew:
            self._renew()
        elif not self.held:
            self._next_renew = started + self.renew_every
            self.valid_until = started + self.ttl.total_seconds()
        share = fair_share(len(wanted), self._live_workers)
        if len(self.held) > share:
            # Another worker came up: hand over the newest-numbered brokers.
            excess = set(sorted(self.held)[share:])
            logger.info("%s hands brokers %s to other workers", self.owner, excess)
            self.release(excess)
        candidates = wanted - self.held
        room = share - len(self.held)
        if candidates and room > 0:
            self._acquire(candidates, room)
        return set(self.held)

    def _heartbeat(self) -> int:
        """Record that this runtime is alive; return how many are."""
        now = timezone.now()
        updated = RuntimeWorker.objects.filter(owner=self.owner).update(seen_at=now)
        if not updated:
            try:
                with transaction.atomic():
                    RuntimeWorker.objects.create(owner=self.owner, seen_at=now)
            except IntegrityError:
                RuntimeWorker.objects.filter(owner=self.owner).update(seen_at=now)
        alive = RuntimeWorker.objects.filter(seen_at__gte=now - self.ttl).count()
        return max(alive, 1)

    def retire(self) -> None:
        """Leave the pool of live workers (a clean stop)."""
        RuntimeWorker.objects.filter(owner=self.owner).delete()

    def _renew(self) -> None:
        started = time.monotonic()
        now = timezone.now()
        held = list(self.held)
        RuntimeLease.objects.filter(owner=self.owner, broker_id__in=held).update(
            expires_at=now + self.ttl
        )
        # Rows another runtime took (ours expired, e.g. after a long pause) are no
        # longer ours: drop them so their sessions close.
        kept = set(
            RuntimeLease.objects.filter(
                owner=self.owner, broker_id__in=held
            ).values_list("broker_id", flat=True)
        )
        lost = self.held - kept
        if lost:
            logger.warning("%s lost the leases of brokers %s", self.owner, sorted(lost))
        self.held = kept
        self._next_renew = started + self.renew_every
        self.valid_until = started + self.ttl.total_seconds()

    def _acquire(self, candidates: set[int], room: int) -> None:
        now = timezone.now()
        taken = set(
            RuntimeLease.objects.filter(broker_id__in=candidates, expires_at__gte=now)
            .exclude(owner=self.owner)
            .values_list("broker_id", flat=True)
        )
        for broker_id in sorted(candidates - taken):
            if room <= 0:
                break
            if self._acquire_one(broker_id, now):
                logger.info("%s owns broker %s", self.owner, broker_id)
                self.held.add(broker_id)
                room -= 1

    def _acquire_one(self, broker_id: int, now: datetime.datetime) -> bool:
        # The WHERE clause is the lock: of two runtimes racing for an expired row,
        # the database lets exactly one UPDATE match.
        updated = (
            RuntimeLease.objects.filter(broker_id=broker_id)
            .filter(Q(owner=self.owner) | Q(expires_at__lt=now))
            .update(owner=self.owner, expires_at=now + self.ttl, acquired_at=now)
        )
        if updated:
            return True
        try:
            with transaction.atomic():
                RuntimeLease.objects.create(
                    broker_id=broker_id,
                    owner=self.owner,
                    expires_at=now + self.ttl,
                    acquired_at=now,
                )
        except IntegrityError:
            # Another runtime inserted first (or the broker was just deleted).
            return False
        return True

    def drop(self, broker_ids: set[int]) -> None:
        """Forget leases without touching the database (they expire by themselves)."""
        self.held -= broker_ids

    def release(self, broker_ids: set[int] | None = None) -> None:
        """Delete our rows so another runtime may take the brokers at once."""
        ids = self.held if broker_ids is None else broker_ids
        RuntimeLease.objects.filter(owner=self.owner, broker_id__in=list(ids)).delete()
        self.held -= set(ids)
