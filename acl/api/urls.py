"""Routes of the acl API under /api/v1/brokers/{id}/: MQTT users and roles (a
router over the nested prefix), sync, export, management and lifecycle."""

from __future__ import annotations

from django.urls import path

from acl.api import views
from mqttadmin.api.routers import NestedRouter

prefix = "brokers/<int:broker_pk>/"

router = NestedRouter()
router.register(
    f"{prefix}mqtt-users", views.MqttUserViewSet, basename="broker-mqtt-user"
)
router.register(
    f"{prefix}mqtt-roles", views.MqttRoleViewSet, basename="broker-mqtt-role"
)

urlpatterns = [
    *router.urls,
    path(f"{prefix}acl/sync/", views.AclSyncView.as_view(), name="broker-acl-sync"),
    path(
        f"{prefix}acl/export/", views.AclExportView.as_view(), name="broker-acl-export"
    ),
    path(
        f"{prefix}management/",
        views.ManagementView.as_view(),
        name="broker-management",
    ),
    path(f"{prefix}lifecycle/", views.LifecycleView.as_view(), name="broker-lifecycle"),
]
