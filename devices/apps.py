from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"

    def ready(self) -> None:
        from alerts.selectors import register_subject_links
        from alerts.services import register_notify_targets
        from brokers.owners import register_subscription_owners
        from devices.actions import register_telemetry_action
        from devices.alerts import (
            BROKER_KIND,
            RULE_KIND,
            alert_subject_links,
            broker_alert_subject_links,
            rule_alert_targets,
        )
        from devices.selectors import subscription_owners

        register_telemetry_action()
        # Rule alerts tell the rule's e-mails and webhook.
        register_notify_targets(RULE_KIND, rule_alert_targets)
        # Alert subjects link to the device's or the broker's page.
        register_subject_links(RULE_KIND, alert_subject_links)
        register_subject_links(BROKER_KIND, broker_alert_subject_links)
        # The subscription pages link a device's subscriptions to the device.
        register_subscription_owners(subscription_owners)
