"""Celery entry points of the actions app (names kept from when they lived in
brokers: queued tasks, routes and beat entries name them)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from actions.runner import run_action_batch, sweep_stale_runs


@shared_task(
    name="brokers.run_actions",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def run_actions(run_ids: list[int]) -> dict[str, int]:
    """Execute the actions of a batch of ActionRuns (ids only, never secrets)."""
    return run_action_batch(run_ids)


@shared_task(name="brokers.sweep_action_runs", ignore_result=True)
def sweep_action_runs() -> int:
    """Re-enqueue action runs a lost task left pending (MQTTADMIN_ACTIONS_SWEEP_S)."""
    return sweep_stale_runs(older_than_seconds=settings.MQTTADMIN_ACTIONS_SWEEP_S)
