"""WebSocket routes of every app, gathered for the ASGI router."""

from django.urls import URLPattern, path

from brokers.consumers import BrokerConsumer
from dashboard.consumers import OverviewConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/brokers/<int:broker_id>/", BrokerConsumer.as_asgi()),
    path("ws/overview/", OverviewConsumer.as_asgi()),
]
