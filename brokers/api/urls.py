"""Routes of the brokers API.

`register(router)` adds the viewsets to the shared /api/v1/ router (so they show in
its API root); `urlpatterns` serves the same routes for a plain `include()`. Use one.
"""

from __future__ import annotations

from rest_framework.routers import BaseRouter, SimpleRouter

from brokers.api import views


def register(router: BaseRouter) -> None:
    router.register("brokers", views.BrokerViewSet, basename="broker")
    router.register("subscriptions", views.SubscriptionViewSet, basename="subscription")
    router.register(
        "publish-templates", views.PublishTemplateViewSet, basename="publish-template"
    )


_router = SimpleRouter()
register(_router)
urlpatterns = _router.urls
