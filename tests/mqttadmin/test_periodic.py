"""The periodic tasks of `serve` (no Celery beat or worker there)."""

from __future__ import annotations

import pytest
from django.conf import settings

from mqttadmin.celery import app
from mqttadmin.embedded import EmbeddedOptions
from mqttadmin.periodic import start_periodic


@pytest.mark.django_db
def test_every_scheduled_task_resolves_and_runs_without_a_worker() -> None:
    halt = start_periodic(EmbeddedOptions(local_broker=False, demo=False))
    try:
        names = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
        assert names
        missing = [name for name in names if name not in app.tasks]
        assert not missing, f"not registered: {missing}"
        for name in names:
            result = app.tasks[name].apply()
            assert result.successful(), f"{name}: {result.traceback}"
    finally:
        if halt is not None:
            halt()
