"""Routes of a broker's $SYS statistics and connected clients under /api/v1/."""

from django.urls import path

from observe.api import views as observe

urlpatterns = [
    path("brokers/<int:pk>/stats/", observe.StatsView.as_view(), name="broker-stats"),
    path(
        "brokers/<int:pk>/clients/",
        observe.ClientsView.as_view(),
        name="broker-clients",
    ),
    path(
        "brokers/<int:pk>/clients/disable/",
        observe.ClientDisableView.as_view(),
        name="broker-client-disable",
    ),
]
