from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"

    def ready(self) -> None:
        from alerts.services import register_notify_targets
        from devices.actions import register_telemetry_action
        from devices.alerts import RULE_KIND, rule_alert_targets

        register_telemetry_action()
        # Rule alerts tell the rule's e-mails and webhook.
        register_notify_targets(RULE_KIND, rule_alert_targets)
