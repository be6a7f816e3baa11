"""Routes of /api/v1/: every app registers its viewsets on this one router."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from alerts.api.urls import register as register_alert_routes
from brokers.api.urls import register as register_broker_routes
from devices.api.urls import register as register_device_routes
from mqttadmin.api import auth, views

router = DefaultRouter()
router.register("products", views.ProductViewSet, basename="product")
router.register("audit", views.AuditEntryViewSet, basename="audit")
register_broker_routes(router)
register_device_routes(router)
register_alert_routes(router)

urlpatterns = [
    path("auth/token/", auth.TokenView.as_view(), name="api-token"),
    path("auth/sessions/", auth.SessionListView.as_view(), name="api-sessions"),
    path(
        "auth/sessions/<int:pk>/",
        auth.SessionDetailView.as_view(),
        name="api-session",
    ),
    path("", include("history.api.urls")),
    path("", include("brokers.api.mqtt_config_urls")),
    path("", include("observe.api.urls")),
    path("", include("acl.api.urls")),
    path("", include(router.urls)),
]
