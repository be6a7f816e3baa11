"""The localbroker app; joins the local Mosquitto and the demo to `manage.py serve`."""

from __future__ import annotations

from django.apps import AppConfig


class LocalBrokerConfig(AppConfig):
    name = "localbroker"

    def ready(self) -> None:
        # Imported once the models are loaded.
        from localbroker.demo import start_demo
        from localbroker.services import start_local_broker
        from mqttadmin import embedded

        # After the runtime (its app is listed earlier), which connects the local
        # broker as soon as its row exists; the demo needs the local broker.
        embedded.register("local-broker", start_local_broker)
        embedded.register("demo", start_demo)
