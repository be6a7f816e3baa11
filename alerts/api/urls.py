"""Routes of the alerts API; `register(router)` adds them to the /api/v1/ router."""

from __future__ import annotations

from rest_framework.routers import BaseRouter

from alerts.api import views


def register(router: BaseRouter) -> None:
    router.register("alerts", views.AlertViewSet, basename="alert")
