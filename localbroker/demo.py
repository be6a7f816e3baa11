"""The demo: simulated devices publishing to the portal's local Mosquitto.

`serve` (unless `--no-demo`) sets up, once, in the Demo product: an MQTT role that
may publish under `demo/` only and an MQTT user holding it (through the acl services,
so the local broker's Dynamic Security plugin gets them like any managed user), three
devices and a subscription to all demo topics. Then each simulated device connects as
that user with its own client id and a last will of "offline", says "online"
(retained), publishes temperature/humidity/battery JSON every two seconds and, now
and then, a status report. A newcomer sees live data, devices and topics at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

if TYPE_CHECKING:
    from brokers.models import Broker
    from mqttadmin.embedded import EmbeddedOptions, Stopper

logger = logging.getLogger(__name__)

TOPIC_ROOT = "demo"
SIMULATOR_USERNAME = "demo-simulator"
SIMULATOR_ROLE = "demo-simulator"
SUBSCRIPTION_NAME = "Demo: all topics"
SECRET_FILE = "demo-simulator.secret"  # noqa: S105 (a file name)
INTERVAL_S = 2.0
STATUS_EVERY = 15  # ticks between a device's status reports (about 30 s)
WAIT_S = 5.0


@dataclass(frozen=True)
class DemoDevice:
    """One simulated device and the values it starts from."""

    device_id: str
    name: str
    temperature: float
    humidity: float

    @property
    def topic(self) -> str:
        return f"{TOPIC_ROOT}/{self.device_id}"

    @property
    def telemetry_topic(self) -> str:
        return f"{self.topic}/telemetry"

    @property
    def status_topic(self) -> str:
        return f"{self.topic}/status"

    @property
    def report_topic(self) -> str:
        return f"{self.topic}/report"


DEMO_DEVICES = (
    DemoDevice("greenhouse", "Greenhouse sensor", 24.0, 65.0),
    DemoDevice("cold-room", "Cold room sensor", 4.0, 80.0),
    DemoDevice("server-rack", "Server rack sensor", 31.0, 35.0),
)


@dataclass(frozen=True)
class DemoSetup:
    """What the simulator needs to connect."""

    host: str
    port: int
    username: str
    password: str
    devices: tuple[DemoDevice, ...] = DEMO_DEVICES


def _simulator_password(directory: Path) -> str:
    """Kept encrypted in var/: the simulator needs it in plain to connect, and the
    portal keeps only a hash of MQTT users' passwords."""
    from mqttadmin.lib.crypto import decrypt, encrypt
    from mqttadmin.lib.files import create_private

    path = directory / SECRET_FILE
    # Created 0600 from the start; if another process got there first, use theirs.
    create_private(path, encrypt(secrets.token_urlsafe(18)) + "\n")
    return decrypt(path.read_text().strip())


def _accepts(broker: Broker, username: str, password: str) -> bool:
    from brokers.client import ConnectionSettings
    from brokers.services import broker_test_connection

    settings = ConnectionSettings.from_broker(
        broker, username=username, password=password, client_id=""
    )
    return broker_test_connection(settings).ok


def demo_setup(*, broker: Broker, secret_directory: Path) -> DemoSetup:
    """Create what the demo needs on the local broker, once; later runs reuse it
    (and give the broker the simulator's password again if it lost it)."""
    from acl import services as acl_services
    from acl.models import MqttRole, MqttUser
    from brokers import services as broker_services
    from brokers.models import Subscription
    from devices import services as device_services
    from devices.models import Device

    product = broker.product
    role = MqttRole.objects.filter(broker=broker, name=SIMULATOR_ROLE).first()
    if role is None:
        role, _result = acl_services.mqtt_role_create(
            actor=None,
            broker=broker,
            name=SIMULATOR_ROLE,
            rules=[{"topic": f"{TOPIC_ROOT}/#", "access": "write"}],
        )
    password = _simulator_password(secret_directory)
    user = MqttUser.objects.filter(broker=broker, username=SIMULATOR_USERNAME).first()
    if user is None:
        acl_services.mqtt_user_create(
            actor=None,
            broker=broker,
            username=SIMULATOR_USERNAME,
            password=password,
            roles=[role],
        )
    elif not _accepts(broker, SIMULATOR_USERNAME, password):
        acl_services.mqtt_user_update(
            actor=None, user=user, password=password, enabled=True, roles=[role]
        )
    for spec in DEMO_DEVICES:
        if not Device.objects.filter(
            product=product, device_id=spec.device_id
        ).exists():
            device_services.device_create(
                actor=None,
                product=product,
                broker=broker,
                device_id=spec.device_id,
                name=spec.name,
                type="sensor",
                topic=spec.topic,
                availability_topic=spec.status_topic,
            )
    if not Subscription.objects.filter(broker=broker, name=SUBSCRIPTION_NAME).exists():
        broker_services.subscription_create(
            actor=None,
            broker=broker,
            name=SUBSCRIPTION_NAME,
            topic_filter=f"{TOPIC_ROOT}/#",
            qos=0,
            store_messages=True,
            description="Everything the demo devices publish.",
        )
    return DemoSetup(broker.host, broker.port, SIMULATOR_USERNAME, password)


class SimulatedDevice:
    """One device: its own MQTT connection, its drifting values."""

    def __init__(self, spec: DemoDevice, setup: DemoSetup, rng: random.Random):
        self.spec = spec
        self.rng = rng
        self.temperature = spec.temperature
        self.humidity = spec.humidity
        self.battery = rng.uniform(80, 100)
        self.started = time.monotonic()
        self.connected = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"demo-{spec.device_id}",
            protocol=mqtt.MQTTv311,
        )
        self.client.username_pw_set(setup.username, setup.password)
        self.client.will_set(spec.status_topic, "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, 10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self.connected.clear()
        # connect_async + loop_start: a broker that is down now is retried.
        self.client.connect_async(setup.host, setup.port, keepalive=30)
        self.client.loop_start()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            logger.warning("demo device %s: %s", self.spec.device_id, reason)
            return
        self.connected.set()
        # Never wait for the publish here: callbacks run on the network thread.
        client.publish(self.spec.status_topic, "online", qos=1, retain=True)

    def reading(self) -> dict[str, float]:
        """The next values: a bounded random walk, a battery that slowly drains."""
        self.temperature += self.rng.uniform(-0.3, 0.3)
        self.temperature += (self.spec.temperature - self.temperature) * 0.05
        self.humidity += self.rng.uniform(-1.0, 1.0)
        self.humidity = min(100.0, max(0.0, self.humidity))
        self.battery = max(5.0, self.battery - self.rng.uniform(0.0, 0.05))
        return {
            "temperature": round(self.temperature, 2),
            "humidity": round(self.humidity, 1),
            "battery": round(self.battery, 1),
        }

    def publish_reading(self) -> None:
        self.client.publish(self.spec.telemetry_topic, json.dumps(self.reading()))

    def publish_report(self) -> None:
        report = {
            "uptime_s": int(time.monotonic() - self.started),
            "rssi": self.rng.randint(-80, -40),
            "firmware": "1.4.2",
        }
        self.client.publish(self.spec.report_topic, json.dumps(report), qos=1)

    def stop(self) -> None:
        """Say "offline" (a clean DISCONNECT sends no will), then disconnect."""
        if self.connected.is_set():
            info = self.client.publish(
                self.spec.status_topic, "offline", qos=1, retain=True
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(WAIT_S)
        self.client.disconnect()
        self.client.loop_stop()


class DemoSimulator:
    """The demo devices and the thread that makes them publish."""

    def __init__(self, setup: DemoSetup, interval: float = INTERVAL_S, seed: int = 0):
        self.setup = setup
        self.interval = interval
        self.rng = random.Random(seed or None)
        self.devices: list[SimulatedDevice] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> DemoSimulator:
        self.devices = [
            SimulatedDevice(spec, self.setup, self.rng) for spec in self.setup.devices
        ]
        self._thread = threading.Thread(
            target=self._run, name="demo-simulator", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(self.interval):
            for index, device in enumerate(self.devices):
                if not device.connected.is_set():
                    continue
                device.publish_reading()
                # Spread the reports: one device per tick reports, in turn.
                if (
                    tick + index * STATUS_EVERY // len(self.devices)
                ) % STATUS_EVERY == 0:
                    device.publish_report()
            tick += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(WAIT_S)
        for device in self.devices:
            device.stop()


def start_demo(options: EmbeddedOptions) -> Stopper | None:
    """The embedded part: the demo on the local broker unless `--no-demo`."""
    from localbroker import services as local_broker

    if not options.demo:
        return None
    local = local_broker.current()
    if local is None:
        options.say("No demo: it publishes to the local broker, which is not running.")
        return None
    try:
        setup = demo_setup(broker=local.broker, secret_directory=local.files.directory)
    except Exception as exc:
        # A demo that cannot be set up must not keep the portal from serving.
        logger.exception("the demo could not be set up")
        options.say(f"No demo: {exc}")
        return None
    simulator = DemoSimulator(setup).start()
    options.say(
        f"Demo: {len(setup.devices)} simulated devices publish under "
        f"{TOPIC_ROOT}/ (Demo product)."
    )
    return simulator.stop
