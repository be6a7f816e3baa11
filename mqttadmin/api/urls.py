"""Routes of /api/v1/: the core's own (auth, products, audit, the API root), then
every app's `<app>.api.urls`, each included the same way."""

from django.urls import include, path

from mqttadmin.api import auth, views
from mqttadmin.api.routers import ApiRootRouter

# The apps whose routes /api/v1/ serves, in the order their collections are
# listed in the API root (after the core's own).
API_APPS = ["history", "brokers", "observe", "acl", "devices", "alerts"]

router = ApiRootRouter(listed=API_APPS)
router.register("products", views.ProductViewSet, basename="product")
router.register("audit", views.AuditEntryViewSet, basename="audit")

urlpatterns = [
    path("auth/token/", auth.TokenView.as_view(), name="api-token"),
    path("auth/sessions/", auth.SessionListView.as_view(), name="api-sessions"),
    path(
        "auth/sessions/<int:pk>/",
        auth.SessionDetailView.as_view(),
        name="api-session",
    ),
    *(path("", include(f"{app}.api.urls")) for app in API_APPS),
    path("", include(router.urls)),
]
