"""The brokers app."""

from __future__ import annotations

from django.apps import AppConfig


class BrokersConfig(AppConfig):
    name = "brokers"

    def ready(self) -> None:
        from brokers.views.connections import register_broker_tabs

        register_broker_tabs()
