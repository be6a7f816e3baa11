"""Routes of the acl API under /api/v1/brokers/{id}/ (mqttadmin.api.urls includes
them)."""

from django.urls import path

from acl.api import views

prefix = "brokers/<int:broker_pk>/"

users = views.MqttUserViewSet.as_view({"get": "list", "post": "create"})
user = views.MqttUserViewSet.as_view(
    {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
)
roles = views.MqttRoleViewSet.as_view({"get": "list", "post": "create"})
role = views.MqttRoleViewSet.as_view(
    {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
)

urlpatterns = [
    path(f"{prefix}mqtt-users/", users, name="broker-mqtt-users"),
    path(f"{prefix}mqtt-users/<int:pk>/", user, name="broker-mqtt-user"),
    path(f"{prefix}mqtt-roles/", roles, name="broker-mqtt-roles"),
    path(f"{prefix}mqtt-roles/<int:pk>/", role, name="broker-mqtt-role"),
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
