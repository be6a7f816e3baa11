from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"

    def ready(self) -> None:
        # Register the notification task by name: services enqueue it by name
        # (mqttadmin.background), which in eager mode looks it up in this process.
        from alerts import tasks  # noqa: F401
