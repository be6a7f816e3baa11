from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"

    def ready(self) -> None:
        from devices.actions import register_telemetry_action

        register_telemetry_action()
