"""The observe app: what a broker's `$SYS` topics tell (statistics, connected
clients), and the broker page's Clients and Stats tabs."""

from __future__ import annotations

from django.apps import AppConfig


class ObserveConfig(AppConfig):
    name = "observe"

    def ready(self) -> None:
        from observe.views import register_broker_tabs

        register_broker_tabs()
