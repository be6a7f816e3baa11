"""Routes of /api/v1/: every app registers its viewsets on this one router."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from mqttadmin.api import views

router = DefaultRouter()
router.register("products", views.ProductViewSet, basename="product")
router.register("audit", views.AuditEntryViewSet, basename="audit")

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
    path("", include("brokers.api.history_urls")),
    path("", include(router.urls)),
]
