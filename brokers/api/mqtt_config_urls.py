"""Routes of the product MQTT configuration API (seed 001)."""

from django.urls import path

from brokers.api import mqtt_config as views

prefix = "products/<int:pk>/mqtt-config/"

urlpatterns = [
    path(prefix, views.MqttConfigView.as_view(), name="mqtt-config"),
    path(f"{prefix}test/", views.MqttConfigTestView.as_view(), name="mqtt-config-test"),
    path(
        f"{prefix}subscriptions/",
        views.MqttConfigSubscriptionsView.as_view(),
        name="mqtt-config-subscriptions",
    ),
    path(
        f"{prefix}subscriptions/<int:sub_id>/",
        views.MqttConfigSubscriptionDetailView.as_view(),
        name="mqtt-config-subscription",
    ),
    path(
        f"{prefix}reconnect/",
        views.MqttConfigReconnectView.as_view(),
        name="mqtt-config-reconnect",
    ),
    path(
        f"{prefix}status/",
        views.MqttConfigStatusView.as_view(),
        name="mqtt-config-status",
    ),
]
