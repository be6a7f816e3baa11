"""Routes of the alerts API."""

from __future__ import annotations

from alerts.api import views
from mqttadmin.api.routers import AppRouter

router = AppRouter()
router.register("alerts", views.AlertViewSet, basename="alert")

urlpatterns = router.urls
