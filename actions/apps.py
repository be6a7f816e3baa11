"""The actions app: subscription actions' kinds, their runs and the worker."""

from __future__ import annotations

from django.apps import AppConfig


class ActionsConfig(AppConfig):
    name = "actions"

    def ready(self) -> None:
        from actions.kinds import register_kinds

        register_kinds()
