"""Celery entry points of the history app (their names predate the app)."""

from __future__ import annotations

import logging

from celery import shared_task

from history.retention import history_prune

logger = logging.getLogger(__name__)


@shared_task(name="brokers.prune_history", ignore_result=True)
def prune_history() -> dict[int, int]:
    """Apply every broker's history retention (scheduled by beat; a timer in serve)."""
    removed = history_prune()
    if removed:
        logger.info("pruned history: %s", removed)
    return removed
