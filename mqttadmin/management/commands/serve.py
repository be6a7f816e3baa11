"""`manage.py serve`: the whole portal in one process.

Applies migrations, creates an initial admin on first run, then serves HTTP and
WebSockets with Daphne. The MQTT runtime, the local managed broker and the demo join
through `mqttadmin.embedded` hooks that their apps register from `ready()` (runtime,
localbroker), in the order of INSTALLED_APPS.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from mqttadmin import embedded
from mqttadmin.lib.files import write_private

logger = logging.getLogger(__name__)

INITIAL_ADMIN_FILE = "initial_admin.txt"


def ensure_initial_admin() -> tuple[str, str] | None:
    """Create `admin` with a random password when there is no user at all.

    Returns the credentials when it created them, so they can be shown once.
    """
    user_model = get_user_model()
    if user_model.objects.exists():
        return None
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username="admin", email="", password=password)
    write_private(
        settings.VAR_DIR / INITIAL_ADMIN_FILE,
        f"username: admin\npassword: {password}\n",
    )
    return "admin", password


class Command(BaseCommand):
    help = "Serve MQTT Admin (HTTP + WebSockets) with its embedded runtime."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--no-local-broker",
            action="store_true",
            help="Do not start the local managed Mosquitto (started when the "
            "mosquitto binary is found).",
        )
        parser.add_argument(
            "--no-demo",
            action="store_true",
            help="Do not run the simulated demo devices on the local broker.",
        )
        parser.add_argument(
            "--no-runtime",
            action="store_true",
            help="Do not run the MQTT runtime in this process (a worker runs it).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        created = ensure_initial_admin()
        if created:
            username, password = created
            self.stdout.write(
                self.style.WARNING(
                    f"Created the initial admin: username {username!r}, password "
                    f"{password!r} (also in {settings.VAR_DIR / INITIAL_ADMIN_FILE}). "
                    "After logging in, change it on the Account page: "
                    "/account/password/."
                )
            )
        context = embedded.EmbeddedOptions(
            local_broker=not options["no_local_broker"],
            demo=not options["no_demo"],
            runtime=not options["no_runtime"],
            stdout=self.stdout,
        )
        embedded.start_all(context)
        try:
            self._serve(options["host"], options["port"])
        finally:
            embedded.stop_all()

    def _serve(self, host: str, port: int) -> None:
        # Daphne installs its Twisted reactor on import: keep it local to serve.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from mqttadmin.asgi import application

        self.stdout.write(f"MQTT Admin on http://{host}:{port}/ (Ctrl+C to stop)")
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,
            action_logger=None,
        ).run()
