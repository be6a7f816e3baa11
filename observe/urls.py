"""Routes of the broker page's Clients and Stats tabs: their polled fragments and
the one write. Mounted under /brokers/ in the `brokers` namespace by the project's
urls (mqttadmin/urls.py), so their names stay `brokers:clients`, ...."""

from django.urls import path

from observe import views

urlpatterns = [
    path("<int:pk>/clients/", views.broker_clients, name="clients"),
    path(
        "<int:pk>/clients/disable/",
        views.client_disable,
        name="client-disable",
    ),
    path("<int:pk>/stats/", views.broker_stats, name="stats"),
]
