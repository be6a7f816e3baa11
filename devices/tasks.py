"""Celery entry points of the devices app, and how they are enqueued.

Schedules (CELERY_BEAT_SCHEDULE): `devices.check_health` every 30 s (stale devices,
broker-down alerts) and `devices.prune_telemetry` every 10 minutes.
"""

from __future__ import annotations

import logging

from celery import shared_task

from devices.alerts import check_broker_connections
from devices.csv_import import import_run
from devices.services import devices_mark_stale, telemetry_prune

logger = logging.getLogger(__name__)


@shared_task(name="devices.check_health", ignore_result=True)
def check_health() -> dict[str, int]:
    """Mark devices silent for too long as stale; open or resolve alerts for broker
    connections down longer than DEVICES_BROKER_DOWN_ALERT_S."""
    result = {"stale": devices_mark_stale(), **check_broker_connections()}
    if any(result.values()):
        logger.info("device health: %s", result)
    return result


@shared_task(name="devices.prune_telemetry", ignore_result=True)
def prune_telemetry() -> dict[int, int]:
    """Apply every device's telemetry retention."""
    removed = telemetry_prune()
    if removed:
        logger.info("pruned telemetry: %s", removed)
    return removed


@shared_task(name="devices.run_import", ignore_result=True)
def run_import(import_id: int) -> str:
    """Validate and create the devices of a CSV import started from the page."""
    return import_run(import_id=import_id).state
