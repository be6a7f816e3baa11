"""WebSocket routes of every app, gathered for the ASGI router."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
