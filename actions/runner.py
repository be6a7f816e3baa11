"""Running subscription actions: durable runs written by ingest, executed by workers.

Ingest writes one ActionRun per (message, subscription with actions) in the same
transaction as the message, so nothing is acknowledged to the broker before the
work is durable. Runs are handed to Celery in batches (never one task per message);
a sweeper re-enqueues runs left pending by a lost task. A run remembers which
action indexes are done, so a redelivered task does not repeat them; webhooks also
carry an Idempotency-Key for receivers that de-duplicate.
"""

from __future__ import annotations

import datetime
import logging
import threading
import uuid
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from actions.models import ActionRun, ActionRunState
from brokers.action_kinds import (
    ActionCall,
    ActionError,
    MessageContext,
    action_kind,
    action_label,
)
from brokers.client import (
    ConnectionSettings,
    OutgoingMessage,
    PublishError,
    publish_messages,
)
from brokers.models import Broker, Subscription
from mqttadmin.background import enqueue

logger = logging.getLogger(__name__)

TASK_BATCH = 200
STALE_AFTER_SECONDS = 60
RUN_TASK = "brokers.run_actions"


def enqueue_runs(run_ids: list[int]) -> None:
    """Hand runs to workers in batches, after the ingest transaction commits."""
    if not run_ids:
        return

    def send() -> None:
        # Embedded mode (eager tasks): mqttadmin.background runs them off the
        # ingest thread, so slow webhooks never hold up storing messages.
        for start in range(0, len(run_ids), TASK_BATCH):
            chunk = run_ids[start : start + TASK_BATCH]
            enqueue(RUN_TASK, chunk, queue=settings.MQTTADMIN_ACTIONS_QUEUE)

    # Robust: the runs are committed and stay pending when the queue cannot take
    # them (Redis down); beat's sweep queues them again (MQTTADMIN_ACTIONS_SWEEP_S).
    # An error escaping here would reach ingest after its commit and make it
    # store the batch a second time as if it were poison.
    transaction.on_commit(send, robust=True)


def _context(run: ActionRun, subscription: Subscription) -> MessageContext:
    return subscription.message_context(
        topic=run.topic,
        payload=bytes(run.payload),
        qos=run.qos,
        retain=run.retain,
        received_at=run.received_at,
    )


def _execute(
    subscription: Subscription,
    run: ActionRun,
    index: int,
    action: dict[str, Any],
    context: dict[str, Any],
    republish: list[tuple[ActionRun, int, OutgoingMessage]],
) -> bool:
    """Run one action; returns True when done now, False when deferred (a message
    to publish with the batch's others on the same broker)."""
    kind = action_kind(action.get("type"))
    if kind is None:
        raise ActionError(f"no such action type: {action.get('type')!r}")
    call = ActionCall(
        subscription_id=subscription.pk,
        broker_id=subscription.broker_id,
        product_id=subscription.broker.product_id,
        match_filter=subscription.match_filter,
        run_id=run.pk,
        index=index,
        action=action,
        detail=kind.plan(action, context),
        topic=run.topic,
        payload=bytes(run.payload),
        received_at=run.received_at,
    )
    outgoing = kind.execute(call)
    if outgoing is None:
        return True
    republish.append((run, index, outgoing))
    return False


def _claim_ttl() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.MQTTADMIN_ACTIONS_SWEEP_S)


def _free_to_claim(now: datetime.datetime) -> Q:
    return Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)


class ClaimKeeper:
    """Renews the claim on a worker's runs while it executes them.

    The claim lasts one sweep interval; renewed every third of it, it outlives a
    slow webhook but not a killed worker, whose runs the sweep hands to another
    worker once the claim has run out.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="action-claims", daemon=True
        )

    def __enter__(self) -> ClaimKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)

    def _run(self) -> None:
        interval = _claim_ttl().total_seconds() / 3
        try:
            while not self._done.wait(interval):
                try:
                    ActionRun.objects.filter(
                        claimed_by=self.token, state=ActionRunState.PENDING
                    ).update(claimed_until=timezone.now() + _claim_ttl())
                except DatabaseError:
                    logger.warning("could not renew action claims", exc_info=True)
                    connection.close()
        finally:
            connection.close()


def run_action_batch(run_ids: list[int]) -> dict[str, int]:
    """Claim the pending runs among `run_ids` that no other worker holds, execute
    their actions, and return the executed/failed counts."""
    token = uuid.uuid4().hex
    now = timezone.now()
    # One conditional UPDATE decides: of two workers handed the same run (a sweep
    # re-queued it while the first task was still queued), only one claims it.
    ActionRun.objects.filter(pk__in=run_ids, state=ActionRunState.PENDING).filter(
        _free_to_claim(now)
    ).update(claimed_by=token, claimed_until=now + _claim_ttl())
    runs = list(
        ActionRun.objects.filter(claimed_by=token, state=ActionRunState.PENDING)
        .select_related("subscription__broker__product")
        .order_by("id")
    )
    if not runs:
        return {"executed": 0, "failed": 0}
    with ClaimKeeper(token):
        return _execute_runs(runs)


def _execute_runs(runs: list[ActionRun]) -> dict[str, int]:
    totals = {"executed": 0, "failed": 0}
    per_subscription: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"executed": 0, "failed": 0, "error": ""}
    )
    republish: list[tuple[ActionRun, int, OutgoingMessage]] = []
    run_errors: dict[int, list[str]] = defaultdict(list)
    for run in runs:
        subscription = run.subscription
        try:
            context = _context(run, subscription).as_template_context()
        except Exception as exc:
            # A message no template context can be built from (whatever its
            # payload holds) fails its own run, never the rest of the batch: runs
            # of other subscriptions and products share this task.
            message = f"message on {run.topic[:200]!r} unreadable: {exc!r}"[:2000]
            logger.warning(
                "subscription %s run %s %s", subscription.pk, run.pk, message
            )
            stats = per_subscription[subscription.pk]
            stats["failed"] += 1
            stats["error"] = message
            run_errors[run.pk].append(message)
            continue
        done = set(run.done_indexes)
        for index, action in enumerate(subscription.actions):
            if index in done:
                continue
            stats = per_subscription[subscription.pk]
            try:
                if _execute(subscription, run, index, action, context, republish):
                    done.add(index)
                    stats["executed"] += 1
            except Exception as exc:
                message = f"{action_label(index, action)}: {exc}"
                logger.warning("subscription %s %s", subscription.pk, message)
                stats["failed"] += 1
                stats["error"] = message
                run_errors[run.pk].append(message)
                done.add(index)  # failures are final; webhooks retried already
        run.done_indexes = sorted(done)
        ActionRun.objects.filter(pk=run.pk).update(
            done_indexes=run.done_indexes, attempts=F("attempts") + 1
        )
    _publish_all(republish, per_subscription, run_errors)
    now = timezone.now()
    for run in runs:
        errors = run_errors.get(run.pk)
        ActionRun.objects.filter(pk=run.pk).update(
            state=ActionRunState.FAILED if errors else ActionRunState.DONE,
            error="\n".join(errors or []),
            finished_at=now,
        )
    for subscription_id, stats in per_subscription.items():
        updates: dict[str, Any] = {
            "actions_executed": F("actions_executed") + stats["executed"],
            "actions_failed": F("actions_failed") + stats["failed"],
        }
        if stats["error"]:
            updates["last_error"] = stats["error"][:2000]
        Subscription.objects.filter(pk=subscription_id).update(**updates)
        totals["executed"] += stats["executed"]
        totals["failed"] += stats["failed"]
    return totals


def _publish_all(
    republish: list[tuple[ActionRun, int, OutgoingMessage]],
    per_subscription: dict[int, dict[str, Any]],
    run_errors: dict[int, list[str]],
) -> None:
    """Republish per broker over one connection each, then mark those actions done."""
    by_broker: dict[int, list[tuple[ActionRun, int, OutgoingMessage]]] = defaultdict(
        list
    )
    for item in republish:
        by_broker[item[0].subscription.broker_id].append(item)
    for broker_id, items in by_broker.items():
        broker = Broker.objects.get(pk=broker_id)
        try:
            publish_messages(
                ConnectionSettings.from_broker(broker), [m for _r, _i, m in items]
            )
            error = ""
        except PublishError as exc:
            error = f"republish: {exc}"
        for run, index, _message in items:
            stats = per_subscription[run.subscription_id]
            if error:
                stats["failed"] += 1
                stats["error"] = error
                run_errors[run.pk].append(error)
            else:
                stats["executed"] += 1
            run.done_indexes = sorted({*run.done_indexes, index})
            ActionRun.objects.filter(pk=run.pk).update(done_indexes=run.done_indexes)


def sweep_stale_runs(older_than_seconds: int = STALE_AFTER_SECONDS) -> int:
    """Re-enqueue runs still pending after a while (a task lost with a worker)."""
    now = timezone.now()
    cutoff = now - datetime.timedelta(seconds=older_than_seconds)
    ids = list(
        ActionRun.objects.filter(state=ActionRunState.PENDING, created_at__lt=cutoff)
        # A run a live worker is executing keeps its claim renewed: not lost.
        .filter(_free_to_claim(now))
        .order_by("id")
        .values_list("id", flat=True)[:10_000]
    )
    if ids:
        with transaction.atomic():
            enqueue_runs(ids)
    return len(ids)
