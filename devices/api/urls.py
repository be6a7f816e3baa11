"""Routes of the devices API.

`register(router)` adds the viewsets to the shared /api/v1/ router (so they show in
its API root); `urlpatterns` serves the same routes for a plain `include()`. Use one.
"""

from __future__ import annotations

from rest_framework.routers import BaseRouter, SimpleRouter

from devices.api import views


def register(router: BaseRouter) -> None:
    router.register("devices", views.DeviceViewSet, basename="device")
    router.register("alert-rules", views.AlertRuleViewSet, basename="alert-rule")


_router = SimpleRouter()
register(_router)
urlpatterns = _router.urls
