from django.apps import AppConfig


class MqttAdminConfig(AppConfig):
    name = "mqttadmin"
    verbose_name = "MQTT Admin"
