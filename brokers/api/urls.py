"""Routes of the brokers API: connections, subscriptions and publish templates, and
the product MQTT configuration of seed 001 under /api/v1/products/{id}/mqtt-config/."""

from __future__ import annotations

from django.urls import path

from brokers.api import mqtt_config, views
from mqttadmin.api.routers import AppRouter

router = AppRouter()
router.register("brokers", views.BrokerViewSet, basename="broker")
router.register("subscriptions", views.SubscriptionViewSet, basename="subscription")
router.register(
    "publish-templates", views.PublishTemplateViewSet, basename="publish-template"
)

mqtt_config_prefix = "products/<int:pk>/mqtt-config/"

urlpatterns = [
    path(mqtt_config_prefix, mqtt_config.MqttConfigView.as_view(), name="mqtt-config"),
    path(
        f"{mqtt_config_prefix}test/",
        mqtt_config.MqttConfigTestView.as_view(),
        name="mqtt-config-test",
    ),
    path(
        f"{mqtt_config_prefix}subscriptions/",
        mqtt_config.MqttConfigSubscriptionsView.as_view(),
        name="mqtt-config-subscriptions",
    ),
    path(
        f"{mqtt_config_prefix}subscriptions/<int:sub_id>/",
        mqtt_config.MqttConfigSubscriptionDetailView.as_view(),
        name="mqtt-config-subscription",
    ),
    path(
        f"{mqtt_config_prefix}reconnect/",
        mqtt_config.MqttConfigReconnectView.as_view(),
        name="mqtt-config-reconnect",
    ),
    path(
        f"{mqtt_config_prefix}status/",
        mqtt_config.MqttConfigStatusView.as_view(),
        name="mqtt-config-status",
    ),
    *router.urls,
]
