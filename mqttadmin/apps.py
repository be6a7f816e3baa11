from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class PortalAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the portal's site: product-scoped admins, and
    superuser-only for every admin that is not (see mqttadmin.admin_base)."""

    # Named in INSTALLED_APPS; never the mqttadmin app's own config.
    default = False
    default_site = "mqttadmin.admin_base.PortalAdminSite"


class MqttAdminConfig(AppConfig):
    name = "mqttadmin"
    verbose_name = "MQTT Admin"

    def ready(self) -> None:
        from mqttadmin import embedded, security  # noqa: F401 (connects its signals)
        from mqttadmin.periodic import start_periodic

        embedded.register("periodic-tasks", start_periodic)

        from django.contrib.auth.signals import user_logged_out

        from mqttadmin.live import on_user_logged_out

        # Logging out closes the session's live sockets too.
        user_logged_out.connect(on_user_logged_out, dispatch_uid="dashboard-logout")
