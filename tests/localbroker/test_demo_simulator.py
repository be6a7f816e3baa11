"""The demo on the local broker: its MQTT user and role go through the acl services,
its devices' telemetry reaches history and the devices through the real runtime,
and the role keeps the simulator to its own topics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acl.models import MqttRole, MqttUser
from brokers.models import BrokerStatus, Subscription
from devices.models import Device
from history.models import StoredMessage
from localbroker.demo import (
    DEMO_DEVICES,
    SIMULATOR_USERNAME,
    DemoSimulator,
    demo_setup,
)
from localbroker.services import LocalBroker
from mqttadmin.models import AuditEntry
from runtime.manager import Runtime
from tests.acl.conftest import Observer, connack, publish_all
from tests.localbroker.test_local_broker import binaries
from tests.runtime_support import retrying, wait_until

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sqlite_readers_do_not_wait"),
]


@pytest.fixture
def local(tmp_path: Path, transactional_db: Any) -> Iterator[LocalBroker]:
    binary, plugin = binaries()
    running = LocalBroker(
        directory=tmp_path / "mosquitto", binary=binary, plugin=plugin
    ).start()
    yield running
    running.stop()


def test_the_demo_setup_is_made_once(local: LocalBroker) -> None:
    broker = local.broker
    setup = demo_setup(broker=broker, secret_directory=local.files.directory)
    again = demo_setup(broker=broker, secret_directory=local.files.directory)
    assert again.password == setup.password and setup.port == local.port
    assert Device.objects.filter(product=broker.product).count() == len(DEMO_DEVICES)
    user = MqttUser.objects.get(broker=broker, username=SIMULATOR_USERNAME)
    assert not user.password_pending
    assert [r.topic for r in MqttRole.objects.get(users=user).rules.all()] == ["demo/#"]
    assert Subscription.objects.filter(broker=broker, topic_filter="demo/#").count()
    assert AuditEntry.objects.filter(action="mqtt_user.create").count() == 1
    assert connack(local.port, SIMULATOR_USERNAME, setup.password) == 0
    # The secret file holds no plain password.
    assert (
        setup.password
        not in (local.files.directory / "demo-simulator.secret").read_text()
    )


def test_a_broker_that_lost_the_simulator_gets_its_password_again(
    local: LocalBroker,
) -> None:
    setup = demo_setup(broker=local.broker, secret_directory=local.files.directory)
    local.stop()
    local.files.dynsec.unlink()  # as if var/ had been cleaned but not the database
    restarted = LocalBroker(
        directory=local.files.directory, binary=local.binary, plugin=local.plugin
    ).start()
    try:
        assert connack(restarted.port, SIMULATOR_USERNAME, setup.password) != 0
        demo_setup(broker=restarted.broker, secret_directory=local.files.directory)
        assert connack(restarted.port, SIMULATOR_USERNAME, setup.password) == 0
    finally:
        restarted.stop()


def test_simulated_telemetry_reaches_devices_and_history(local: LocalBroker) -> None:
    broker = local.broker
    setup = demo_setup(broker=broker, secret_directory=local.files.directory)
    runtime = Runtime(owner="demo-test", poll_interval=0.2)
    runtime.start()
    simulator: DemoSimulator | None = None
    observer: Observer | None = None
    try:
        wait_until(
            lambda: retrying(
                BrokerStatus.objects.filter(broker=broker, state="connected").exists
            ),
            15,
            "the runtime connected to the local broker",
        )
        simulator = DemoSimulator(setup, interval=0.2, seed=7).start()

        def all_reporting() -> bool:
            devices = retrying(list, Device.objects.filter(product=broker.product))
            return len(devices) == len(DEMO_DEVICES) and all(
                d.status == "online"
                and {"temperature", "humidity", "battery"} <= set(d.last_values)
                for d in devices
            )

        wait_until(all_reporting, 20, "every demo device online with values")
        wait_until(
            lambda: retrying(
                StoredMessage.objects.filter(
                    broker=broker, topic="demo/greenhouse/telemetry"
                ).first
            ),
            10,
            "telemetry in the message history",
        )
        stored = retrying(
            StoredMessage.objects.filter(
                broker=broker, topic="demo/greenhouse/telemetry"
            ).first
        )
        assert set(json.loads(stored.text)) == {
            "temperature",
            "humidity",
            "battery",
        }

        # The simulator's role allows demo/ only: the broker drops the rest.
        observer = Observer(local.port, broker.username, broker.password)
        publish_all(
            local.port,
            SIMULATOR_USERNAME,
            setup.password,
            [("elsewhere/x", "denied"), ("demo/check", "allowed")],
        )
        observer.wait_for("demo/check")
        assert "elsewhere/x" not in observer.topics

        simulator.stop()
        simulator = None
        wait_until(
            lambda: all(
                d.status == "offline"
                for d in retrying(list, Device.objects.filter(product=broker.product))
            ),
            15,
            "the stopped simulator said offline",
        )
    finally:
        if observer is not None:
            observer.close()
        if simulator is not None:
            simulator.stop()
        runtime.stop()
