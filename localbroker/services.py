"""The portal's own Mosquitto, started and supervised by `manage.py serve`.

- It is registered as the managed (dynsec) broker "Local Mosquitto" of the "Demo"
  product, created once; later runs reuse the rows and only move the port when the
  previous one is taken. The admin password is generated once and kept encrypted in
  the broker row; the plugin's file is (re)written when it does not admit it.
- The process, its files, the guard and the supervisor are localbroker.supervisor's.
"""

from __future__ import annotations

import atexit
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from acl import services as acl_services
from acl.choices import LifecycleAction, Management
from acl.lifecycle import (
    LifecycleOutcome,
    register_lifecycle_provider,
    unregister_lifecycle_provider,
)
from brokers import services as broker_services
from brokers.models import Broker
from localbroker.supervisor import (
    HOST,
    INSTALL_HINT,
    LocalBrokerError,
    LocalBrokerFiles,
    Supervisor,
    dynsec_file_admits,
    find_dynsec_plugin,
    find_mosquitto,
    pick_port,
)
from mqttadmin.embedded import EmbeddedOptions, Stopper
from mqttadmin.models import Product
from mqttadmin.services import product_create

logger = logging.getLogger(__name__)

DEMO_PRODUCT_SLUG = "demo"
DEMO_PRODUCT_NAME = "Demo"
LOCAL_BROKER_NAME = "Local Mosquitto"
ADMIN_USERNAME = "portal-admin"


@dataclass
class LocalBrokerMethod:
    """Reload/restart of the local broker for acl.lifecycle."""

    supervisor: Supervisor
    name: str = "local"

    def run(self, action: str) -> LifecycleOutcome:
        try:
            if action == LifecycleAction.RELOAD:
                pid = self.supervisor.reload()
                return LifecycleOutcome(
                    action, self.name, True, f"sent SIGHUP to the local mosquitto {pid}"
                )
            pid = self.supervisor.restart()
        except (LocalBrokerError, OSError) as exc:
            return LifecycleOutcome(action, self.name, False, str(exc))
        return LifecycleOutcome(
            action, self.name, True, f"restarted the local mosquitto (pid {pid})"
        )


def demo_product() -> Product:
    """The Demo product, created on first use."""
    product = Product.objects.filter(slug=DEMO_PRODUCT_SLUG).first()
    if product is None:
        product = product_create(
            actor=None,
            name=DEMO_PRODUCT_NAME,
            slug=DEMO_PRODUCT_SLUG,
            description="The portal's own local Mosquitto and simulated devices.",
        )
    return product


def local_broker_row() -> Broker | None:
    return Broker.objects.filter(
        product__slug=DEMO_PRODUCT_SLUG, name=LOCAL_BROKER_NAME
    ).first()


def register_local_broker(port: int) -> Broker:
    """Create or update the Demo product's local broker row (a password generated
    once) and its dynsec management."""
    product = demo_product()
    broker = local_broker_row()
    if broker is None:
        broker = broker_services.broker_create(
            actor=None,
            product=product,
            name=LOCAL_BROKER_NAME,
            host=HOST,
            port=port,
            username=ADMIN_USERNAME,
            password=secrets.token_urlsafe(24),
            enabled=True,
        )
    else:
        wanted: dict[str, Any] = {"host": HOST, "port": port}
        if not broker.username or not broker.password:
            wanted.update(username=ADMIN_USERNAME, password=secrets.token_urlsafe(24))
        stale = {k: v for k, v in wanted.items() if getattr(broker, k) != v}
        if stale and broker.password and "password" not in stale:
            # The same local Mosquitto on a new port: its password is given again
            # knowingly (a stored secret does not follow a new port on its own).
            stale["password"] = broker.password
        if stale:
            broker = broker_services.broker_update(actor=None, broker=broker, **stale)
    managed = acl_services.managed_of(broker)
    if managed.management != Management.DYNSEC or managed.management_username:
        acl_services.management_update(
            actor=None,
            broker=broker,
            management=Management.DYNSEC,
            management_username="",
            management_password="",
        )
    return broker


class LocalBroker:
    """One run of the local broker: files, rows, supervised process, lifecycle."""

    def __init__(self, *, directory: Path, binary: str, plugin: str) -> None:
        self.files = LocalBrokerFiles(directory)
        self.binary = binary
        self.plugin = plugin
        self.supervisor: Supervisor | None = None
        self.broker_id: int | None = None
        self.port = 0
        self._method: LocalBrokerMethod | None = None

    def _provider(self, broker: Broker) -> LocalBrokerMethod | None:
        return self._method if broker.pk == self.broker_id else None

    def start(self, attempts: int = 3) -> LocalBroker:
        self.files.prepare()
        self.files.rotate_log()
        existing = local_broker_row()
        preferred = existing.port if existing is not None else None
        rewritten = False
        for attempt in range(attempts):
            port = pick_port(preferred if attempt == 0 else None)
            broker = register_local_broker(port)
            if not dynsec_file_admits(
                self.files.dynsec, broker.username, broker.password
            ):
                self.files.write_dynsec(broker.username, broker.password)
                rewritten = True
            self.files.write_config(port=port, plugin=self.plugin)
            supervisor = Supervisor(
                binary=self.binary,
                config=self.files.config,
                port=port,
                log=self.files.log,
            )
            try:
                supervisor.start()
            except LocalBrokerError:
                # Most likely another program took the port in between: try another.
                if attempt == attempts - 1:
                    raise
                continue
            break
        self.supervisor, self.port, self.broker_id = supervisor, port, broker.pk
        self._method = LocalBrokerMethod(supervisor)
        register_lifecycle_provider(self._provider)
        atexit.register(self.stop)
        if rewritten and (broker.mqtt_roles.exists() or broker.mqtt_users.exists()):
            # A fresh plugin file lost the roles and users the portal holds.
            acl_services.acl_sync(actor=None, broker=broker)
        return self

    def stop(self) -> None:
        unregister_lifecycle_provider(self._provider)
        if self.supervisor is not None:
            self.supervisor.stop()
        atexit.unregister(self.stop)

    @property
    def broker(self) -> Broker:
        if self.broker_id is None:  # not started: as get(pk=None) would
            raise Broker.DoesNotExist("The local broker is not started.")
        return Broker.objects.get(pk=self.broker_id)


_current: LocalBroker | None = None


def current() -> LocalBroker | None:
    """The local broker `serve` runs, if any (the demo publishes to it)."""
    return _current


def start_local_broker(options: EmbeddedOptions) -> Stopper | None:
    """The embedded part: start the local broker unless `--no-local-broker`."""
    global _current
    if not options.local_broker:
        return None
    binary = find_mosquitto(settings.MQTTADMIN_MOSQUITTO)
    if binary is None:
        options.say(INSTALL_HINT)
        return None
    plugin = find_dynsec_plugin(settings.MQTTADMIN_DYNSEC_PLUGIN, binary)
    if plugin is None:
        options.say(
            "No local broker: the Mosquitto Dynamic Security plugin "
            "(mosquitto_dynamic_security.so) was not found; set "
            "MQTTADMIN_DYNSEC_PLUGIN to its path. Serving on without it."
        )
        return None
    local = LocalBroker(
        directory=settings.VAR_DIR / "mosquitto", binary=binary, plugin=plugin
    )
    try:
        local.start()
    except Exception as exc:
        # The portal serves on without it, whatever went wrong.
        if not isinstance(exc, LocalBrokerError):
            logger.exception("the local broker could not be set up")
        local.stop()
        options.say(f"No local broker: {exc}. Serving on without it.")
        return None
    _current = local
    options.say(
        f"Local Mosquitto on {HOST}:{local.port} (broker {LOCAL_BROKER_NAME!r} of "
        f"the {DEMO_PRODUCT_NAME!r} product, files in {local.files.directory})."
    )

    def stop() -> None:
        global _current
        _current = None
        local.stop()

    return stop
