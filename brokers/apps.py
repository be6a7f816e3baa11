"""The brokers app; joins the MQTT runtime to `manage.py serve`."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from mqttadmin.embedded import EmbeddedOptions, Stopper


def start_runtime(options: EmbeddedOptions) -> Stopper | None:
    """Run the MQTT runtime in this process unless `serve --no-runtime`."""
    if not options.runtime:
        return None
    from brokers.runtime import Runtime

    runtime = Runtime(owner=f"{socket.gethostname()}:{os.getpid()}:serve")
    runtime.start()
    options.say("MQTT runtime started.")
    return runtime.stop


class BrokersConfig(AppConfig):
    name = "brokers"

    def ready(self) -> None:
        from brokers.views import register_broker_tabs
        from mqttadmin import embedded

        embedded.register("mqtt-runtime", start_runtime)
        register_broker_tabs()
