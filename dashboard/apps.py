from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from dashboard.consumers import on_user_logged_out

        # Logging out closes the session's live sockets too.
        user_logged_out.connect(on_user_logged_out, dispatch_uid="dashboard-logout")
