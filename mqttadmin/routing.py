"""WebSocket routes of every app, gathered for the ASGI router."""

from typing import Any

from django.urls import path

from brokers.consumers import BrokerConsumer
from dashboard.consumers import OverviewConsumer


def consumer_path(route: str, consumer: Any) -> Any:
    """`path()` for a Channels consumer. Typed loosely: django-stubs type `path()`
    for HTTP views only, and channels' URLRouter wants a pattern class that only
    its stubs name."""
    return path(route, consumer)


websocket_urlpatterns: list[Any] = [
    consumer_path("ws/brokers/<int:broker_id>/", BrokerConsumer.as_asgi()),
    consumer_path("ws/overview/", OverviewConsumer.as_asgi()),
]
