"""The history app: stored messages, the topic index, retention, and the broker
page's Activity and Topics tabs."""

from __future__ import annotations

from django.apps import AppConfig


class HistoryConfig(AppConfig):
    name = "history"

    def ready(self) -> None:
        from brokers.feed import register_feed_history, register_topic_updates
        from history import live
        from history.views import register_broker_tabs

        register_broker_tabs()
        register_feed_history(live.feed_rows)
        register_topic_updates(live.topic_updates)
