from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"

    def ready(self) -> None:
        from alerts.services import register_notify_targets
        from brokers.owners import register_subscription_owners
        from devices.actions import register_telemetry_action
        from devices.alerts import RULE_KIND, rule_alert_targets
        from devices.selectors import subscription_owners

        register_telemetry_action()
        # Rule alerts tell the rule's e-mails and webhook.
        register_notify_targets(RULE_KIND, rule_alert_targets)
        # The subscription pages link a device's subscriptions to the device.
        register_subscription_owners(subscription_owners)
