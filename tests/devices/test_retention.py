"""Telemetry retention: per device, else as long as the broker keeps history."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from brokers.models import Broker
from devices import services, tasks
from devices.models import TelemetryPoint
from tests.factories import make_broker, make_device

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)


def aged(device: Any, *days: float) -> None:
    TelemetryPoint.objects.bulk_create(
        TelemetryPoint(
            device=device, key="t", ts=NOW - datetime.timedelta(days=d), value=d
        )
        for d in days
    )


def ages(device: Any) -> list[float]:
    return sorted(
        TelemetryPoint.objects.filter(device=device).values_list("value", flat=True)
    )


def test_points_older_than_the_retention_are_pruned(world: dict[str, Any]) -> None:
    product = world["product"]
    broker = make_broker(product)
    Broker.objects.filter(pk=broker.pk).update(history_max_age_days=3)
    own = make_device(product, broker, "own", telemetry_retention_days=1)
    inherits = make_device(product, broker, "inherits")
    aged(own, 0.5, 1.5, 10)
    aged(inherits, 0.5, 2.5, 3.5, 10)

    removed = services.telemetry_prune(now=NOW)

    assert removed == {own.pk: 2, inherits.pk: 2}
    assert ages(own) == [0.5]
    assert ages(inherits) == [0.5, 2.5]
    assert services.telemetry_prune(now=NOW) == {}


def test_the_prune_task_runs_the_service(world: dict[str, Any]) -> None:
    device = make_device(world["product"], make_broker(world["product"]), "d1")
    aged(device, 10_000)
    assert tasks.prune_telemetry.apply().get() == {device.pk: 1}
