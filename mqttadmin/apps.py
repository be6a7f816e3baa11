from django.apps import AppConfig


class MqttAdminConfig(AppConfig):
    name = "mqttadmin"
    verbose_name = "MQTT Admin"

    def ready(self) -> None:
        from mqttadmin import embedded, security  # noqa: F401 (connects its signals)
        from mqttadmin.periodic import start_periodic

        embedded.register("periodic-tasks", start_periodic)
