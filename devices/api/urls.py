"""Routes of the devices API: devices (telemetry, commands, CSV import) and alert
rules."""

from __future__ import annotations

from devices.api import views
from mqttadmin.api.routers import AppRouter

router = AppRouter()
router.register("devices", views.DeviceViewSet, basename="device")
router.register("alert-rules", views.AlertRuleViewSet, basename="alert-rule")

urlpatterns = router.urls
