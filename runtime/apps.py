"""The runtime app; joins the MQTT runtime to `manage.py serve`."""

from __future__ import annotations

import os
import socket

from django.apps import AppConfig

from mqttadmin import embedded


def start_runtime(options: embedded.EmbeddedOptions) -> embedded.Stopper | None:
    """Run the MQTT runtime in this process unless `serve --no-runtime`."""
    if not options.runtime:
        return None
    from runtime.manager import Runtime  # models: loaded once the apps are

    runtime = Runtime(owner=f"{socket.gethostname()}:{os.getpid()}:serve")
    runtime.start()
    options.say("MQTT runtime started.")
    return runtime.stop


class RuntimeConfig(AppConfig):
    name = "runtime"

    def ready(self) -> None:
        embedded.register("mqtt-runtime", start_runtime)
