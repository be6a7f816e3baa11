"""The MQTT runtime against real Mosquitto brokers and the real database."""

from __future__ import annotations

import asyncio
import threading
import time
from functools import partial
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from cryptography.fernet import Fernet
from django.db import OperationalError, connection
from rest_framework.test import APIClient

from brokers.client import ConnectionSettings, OutgoingMessage, publish_messages
from brokers.models import Broker
from brokers.services import (
    broker_control,
    broker_update,
    subscription_create,
    subscription_delete,
    subscription_update,
)
from history.models import StoredMessage
from runtime import ingest
from runtime import session as runtime_session
from runtime.models import RuntimeLease
from tests.brokers.conftest import MQTT_PASSWORD, MQTT_USER
from tests.factories import make_product, make_superuser
from tests.runtime_support import (
    publish,
    retrying,
    running_broker,
    runtime_threads,
    state_is,
    status_of,
    wait_until,
)
from tests.services import free_port

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sqlite_readers_do_not_wait"),
]


@pytest.fixture
def actor(db: Any) -> Any:
    return make_superuser()


def test_done_when_api_broker_connects_and_survives_a_broker_restart(
    plain_broker: Any, actor: Any, start_runtime: Any
) -> None:
    start_runtime("w-api")
    api = APIClient()
    api.force_authenticate(user=actor)
    product = retrying(make_product)
    created = time.monotonic()
    response = retrying(
        api.post,
        "/api/v1/brokers/",
        {
            "product": product.pk,
            "name": "Plant",
            "host": "127.0.0.1",
            "port": plain_broker.port,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    broker = Broker.objects.get(pk=response.json()["id"])

    wait_until(state_is(broker, "connected"), 10, "connected")
    assert time.monotonic() - created < 10
    plain_broker.stop()
    wait_until(state_is(broker, "disconnected"), 5, "disconnected")
    plain_broker.start()
    wait_until(state_is(broker, "connected"), 20, "connected again by itself")


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_created_broker_is_connected_within_10s(
    plain_broker: Any, actor: Any, start_runtime: Any, protocol: str
) -> None:
    start_runtime("w-create")
    broker = running_broker(actor, plain_broker.port, protocol=protocol)

    wait_until(state_is(broker, "connected"), 10, "connected")
    status = status_of(broker)
    assert status.owner == "w-create"
    assert status.last_connected_at is not None
    assert status.client_id == broker.client_id
    assert status.connected_host == f"127.0.0.1:{plain_broker.port}"
    assert status.connection_error == ""
    assert RuntimeLease.objects.get(broker=broker).owner == "w-create"


def test_tls_broker_is_connected_with_its_ca(
    tls_broker: Any, tls_material: Any, actor: Any, start_runtime: Any
) -> None:
    start_runtime()
    broker = running_broker(
        actor, tls_broker.port, use_tls=True, ca_cert=tls_material.ca_pem
    )

    wait_until(state_is(broker, "connected"), 10, "connected over TLS")


def test_tls_with_the_wrong_ca_is_an_error(
    tls_broker: Any, tls_material: Any, actor: Any, start_runtime: Any
) -> None:
    start_runtime()
    broker = running_broker(
        actor, tls_broker.port, use_tls=True, ca_cert=tls_material.other_ca_pem
    )

    wait_until(state_is(broker, "error"), 10, "TLS error")
    assert "certificate" in status_of(broker).connection_error.lower()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_wrong_password_is_an_error_naming_the_credentials(
    password_broker: Any, actor: Any, start_runtime: Any, protocol: str
) -> None:
    start_runtime()
    broker = running_broker(
        actor,
        password_broker.port,
        protocol=protocol,
        username=MQTT_USER,
        password="not-the-Pa55word",
    )

    wait_until(state_is(broker, "error"), 10, "error state")
    error = status_of(broker).connection_error
    assert "username or password" in error.lower()
    assert "not-the-Pa55word" not in error

    # Fixing the password restarts the session, which then connects.
    retrying(broker_update, actor=actor, broker=broker, password=MQTT_PASSWORD)
    wait_until(state_is(broker, "connected", connection_error=""), 10, "connected")


def test_broker_restart_goes_disconnected_then_connected_by_itself(
    plain_broker: Any, actor: Any, start_runtime: Any
) -> None:
    start_runtime()
    broker = running_broker(actor, plain_broker.port)
    wait_until(state_is(broker, "connected"), 10, "connected")
    first_connected = status_of(broker).last_connected_at
    assert first_connected is not None

    plain_broker.stop()
    wait_until(state_is(broker, "disconnected"), 5, "disconnected")
    assert status_of(broker).last_disconnected_at is not None

    plain_broker.start()
    wait_until(state_is(broker, "connected"), 20, "connected again")
    reconnected_at = status_of(broker).last_connected_at
    assert reconnected_at is not None and reconnected_at > first_connected


def test_subscriptions_follow_without_reconnecting(
    plain_broker: Any, actor: Any, start_runtime: Any
) -> None:
    runtime = start_runtime()
    broker = running_broker(actor, plain_broker.port)
    wait_until(state_is(broker, "connected"), 10, "connected")
    connected_at = status_of(broker).last_connected_at

    started = time.monotonic()
    subscription = retrying(
        subscription_create,
        actor=actor,
        broker=broker,
        name="all",
        topic_filter="plant/#",
        qos=1,
    )
    wait_until(state_is(broker, "connected", subscribed_topics_count=1), 2, "sub")
    assert time.monotonic() - started < 2

    publish(plain_broker.port, "plant/line1/temp", b"21.5", qos=1)
    wait_until(lambda: status_of(broker).messages_received == 1, 2, "counted")
    stored = StoredMessage.objects.get(broker=broker)
    assert (stored.topic, stored.text, stored.qos) == ("plant/line1/temp", "21.5", 1)

    # A changed filter is unsubscribed/subscribed on the live connection.
    retrying(
        subscription_update, actor=actor, subscription=subscription, topic_filter="x/#"
    )
    session = runtime.sessions[broker.pk]
    wait_until(lambda: session.subscribed == {"x/#"}, 2, "new filter granted")
    publish(plain_broker.port, "x/1")
    wait_until(lambda: status_of(broker).messages_received == 2, 2, "new filter")
    publish(plain_broker.port, "plant/line1/temp")

    retrying(subscription_delete, actor=actor, subscription=subscription)
    wait_until(state_is(broker, "connected", subscribed_topics_count=0), 2, "unsub")
    publish(plain_broker.port, "x/2")
    time.sleep(1.0)
    assert status_of(broker).messages_received == 2
    assert status_of(broker).last_connected_at == connected_at


def test_shared_subscription_filter_is_sent_as_is(
    plain_broker: Any, actor: Any, start_runtime: Any
) -> None:
    runtime = start_runtime()
    broker = running_broker(actor, plain_broker.port, protocol="5")
    retrying(
        subscription_create,
        actor=actor,
        broker=broker,
        name="shared",
        topic_filter="$share/g1/s/#",
    )
    wait_until(state_is(broker, "connected", subscribed_topics_count=1), 10, "sub")
    # Through the runtime's member session, not the owner's connection.
    assert runtime.shared_sessions[broker.pk].subscribed == {"$share/g1/s/#"}
    assert runtime.sessions[broker.pk].subscribed <= {"$SYS/#"}

    publish(plain_broker.port, "s/1")
    wait_until(lambda: status_of(broker).messages_received == 1, 2, "counted")
    assert StoredMessage.objects.filter(broker=broker, topic="s/1").exists()


def test_shared_group_splits_messages_with_another_member(
    plain_broker: Any, actor: Any, start_runtime: Any
) -> None:
    import paho.mqtt.client as mqtt

    start_runtime()
    broker = running_broker(actor, plain_broker.port, protocol="5")
    retrying(
        subscription_create,
        actor=actor,
        broker=broker,
        name="split",
        topic_filter="work/#",
        shared_group="g2",
    )
    wait_until(state_is(broker, "connected", subscribed_topics_count=1), 10, "sub")
    other: list[str] = []
    member = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="member2")
    member.on_message = lambda c, u, m: other.append(m.topic)
    member.connect("127.0.0.1", plain_broker.port)
    member.subscribe("$share/g2/work/#", 1)
    member.loop_start()
    try:
        time.sleep(0.5)
        for n in range(20):
            publish(plain_broker.port, f"work/{n}")
        wait_until(
            lambda: status_of(broker).messages_received + len(other) == 20, 5, "split"
        )
    finally:
        member.loop_stop()
        member.disconnect()
    stored = set(
        StoredMessage.objects.filter(broker=broker).values_list("topic", flat=True)
    )
    # Each message went to exactly one member of the group: none lost, none twice.
    assert stored and other and stored.isdisjoint(other)
    assert stored | set(other) == {f"work/{n}" for n in range(20)}


def test_shared_subscriptions_over_two_workers_split_without_loss_or_duplicates(
    plain_broker: Any, actor: Any, start_runtime: Any
) -> None:
    """One broker, one shared subscription, two runtime workers: one owns the
    connection (lease), both are members of the group, the broker splits the
    stream between them, and every message is stored and counted once."""
    broker = running_broker(actor, plain_broker.port, protocol="5")
    subscription = retrying(
        subscription_create,
        actor=actor,
        broker=broker,
        name="split",
        topic_filter="work/#",
        shared_group="ingest",
        qos=1,
    )
    first = start_runtime("worker-1")
    second = start_runtime("worker-2")

    def session_of(runtime: Any) -> Any:
        return runtime.shared_sessions.get(broker.pk)

    def subscribed_to_work(member: Any) -> bool:
        return member.subscribed == {"$share/ingest/work/#"}

    members = [
        wait_until(partial(session_of, r), 15, "member") for r in (first, second)
    ]
    for member in members:
        wait_until(partial(subscribed_to_work, member), 15, "sub")
    assert members[0].client_id != members[1].client_id
    owner = RuntimeLease.objects.get(broker=broker).owner

    count = 1000
    publish_messages(
        ConnectionSettings(host="127.0.0.1", port=plain_broker.port),
        [
            OutgoingMessage(topic=f"work/{n % 7}", payload=str(n).encode(), qos=1)
            for n in range(count)
        ],
    )
    wait_until(
        lambda: StoredMessage.objects.filter(broker=broker).count() >= count,
        30,
        "all stored",
    )
    time.sleep(0.5)  # anything delivered twice would arrive by now
    received = sorted(
        int(text)
        for text in StoredMessage.objects.filter(broker=broker).values_list(
            "text", flat=True
        )
    )
    assert received == list(range(count)), "none lost, none twice"
    shares = [member.received for member in members]
    assert sum(shares) == count
    assert all(share > count // 10 for share in shares), f"split: {shares}"
    subscription.refresh_from_db()
    assert subscription.messages_received == count
    assert status_of(broker).messages_received == count
    # No flapping: one owner all along.
    assert RuntimeLease.objects.get(broker=broker).owner == owner


def test_a_worker_takes_only_its_fair_share_and_the_rest_when_alone(
    plain_broker: Any, actor: Any, start_runtime: Any
) -> None:
    brokers = [
        running_broker(
            actor, plain_broker.port, name=f"fair-{n}", client_id=f"fair-{n}"
        )
        for n in range(4)
    ]
    first = start_runtime("fair-1")
    wait_until(lambda: len(first.sessions) == 4, 15, "the only worker owns all")
    second = start_runtime("fair-2")
    wait_until(
        lambda: len(first.sessions) == 2 and len(second.sessions) == 2,
        20,
        "two each once the second worker is seen",
    )
    second.stop()
    wait_until(lambda: len(first.sessions) == 4, 20, "all back to the survivor")
    for broker in brokers:
        wait_until(state_is(broker, "connected"), 10, "connected")


def test_control_connect_disconnect_reconnect(
    plain_broker: Any, actor: Any, start_runtime: Any
) -> None:
    start_runtime()
    broker = running_broker(actor, plain_broker.port)
    wait_until(state_is(broker, "connected"), 10, "connected")

    retrying(broker_control, actor=actor, broker=broker, action="disconnect")
    wait_until(state_is(broker, "disconnected"), 2, "disconnected")
    broker.refresh_from_db()
    assert broker.enabled is False
    status = status_of(broker)
    assert status.last_disconnected_at is not None and status.owner == ""
    assert not RuntimeLease.objects.filter(broker=broker).exists()

    retrying(broker_control, actor=actor, broker=broker, action="connect")
    wait_until(state_is(broker, "connected"), 5, "connected again")
    before = status_of(broker).last_connected_at
    assert before is not None

    def reconnected() -> bool:
        status = status_of(broker)
        last = status.last_connected_at
        return status.state == "connected" and last is not None and last > before

    retrying(broker_control, actor=actor, broker=broker, action="reconnect")
    wait_until(reconnected, 5, "reconnected")


def test_fallback_host_is_used_when_the_primary_is_down(
    plain_broker: Any, actor: Any, start_runtime: Any
) -> None:
    start_runtime()
    broker = running_broker(
        actor, free_port(), fallback_hosts=[f"127.0.0.1:{plain_broker.port}"]
    )

    wait_until(state_is(broker, "connected"), 10, "connected via the fallback")
    assert status_of(broker).connected_host == f"127.0.0.1:{plain_broker.port}"


def test_nudge_reaches_the_runtime_without_polling(
    plain_broker: Any, actor: Any, start_runtime: Any
) -> None:
    runtime = start_runtime(poll_interval=60)
    assert runtime.nudges_joined.wait(5)
    wait_until(lambda: runtime.ticks >= 1, 5, "first tick")

    broker = running_broker(actor, plain_broker.port)
    wait_until(state_is(broker, "connected"), 5, "connected after a nudge")
    retrying(
        subscription_create, actor=actor, broker=broker, name="a", topic_filter="n/#"
    )
    wait_until(state_is(broker, "connected", subscribed_topics_count=1), 2, "sub")


def test_status_frames_go_to_the_brokers_group_without_secrets(
    password_broker: Any, actor: Any, start_runtime: Any
) -> None:
    start_runtime("w-frames")
    broker = running_broker(
        actor, password_broker.port, username=MQTT_USER, password=MQTT_PASSWORD
    )
    wait_until(state_is(broker, "connected"), 10, "connected")
    layer = get_channel_layer()
    assert layer is not None
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(broker.group_name, channel)

    retrying(broker_control, actor=actor, broker=broker, action="disconnect")
    wait_until(state_is(broker, "disconnected"), 2, "disconnected")
    retrying(broker_control, actor=actor, broker=broker, action="connect")
    wait_until(state_is(broker, "connected"), 5, "connected again")

    async def drain() -> list[dict[str, Any]]:
        frames = []
        while True:
            try:
                frames.append(await asyncio.wait_for(layer.receive(channel), 0.3))
            except TimeoutError:
                return frames

    frames = async_to_sync(drain)()
    states = [frame["state"] for frame in frames]
    assert states[0] == "disconnected" and states[-1] == "connected"
    assert "connecting" in states
    last = frames[-1]
    assert last["type"] == "broker.status" and last["broker_id"] == broker.pk
    assert last["owner"] == "w-frames" and last["last_connected_at"]
    assert MQTT_PASSWORD not in repr(frames) and "password" not in last


def test_a_broker_whose_secret_does_not_decrypt_does_not_stop_the_others(
    password_broker: Any, actor: Any, start_runtime: Any
) -> None:
    good = running_broker(
        actor, password_broker.port, username=MQTT_USER, password=MQTT_PASSWORD
    )
    bad = running_broker(
        actor,
        password_broker.port,
        name="bad",
        username=MQTT_USER,
        password=MQTT_PASSWORD,
    )
    # As if the key it was encrypted with had been removed from the settings.
    foreign = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE brokers_broker SET password = %s WHERE id = %s",
            [foreign, bad.pk],
        )

    start_runtime()
    wait_until(state_is(good, "connected"), 10, "the good one connected")
    wait_until(state_is(bad, "error"), 5, "the bad one reported")
    assert "decrypt" in status_of(bad).connection_error


def test_stopping_releases_leases_and_says_disconnected(
    plain_broker: Any, actor: Any, start_runtime: Any
) -> None:
    runtime = start_runtime("w-stop")
    broker = running_broker(actor, plain_broker.port)
    wait_until(state_is(broker, "connected"), 10, "connected")

    runtime.stop()
    assert not RuntimeLease.objects.exists()
    assert state_is(broker, "disconnected", owner="")()
    assert not runtime_threads()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_qos1_message_is_acked_only_after_it_is_stored(
    mosquitto: Any, actor: Any, start_runtime: Any, monkeypatch: Any, protocol: str
) -> None:
    # With one message in flight per client the broker sends the next one only
    # after the PUBACK of the first: its delivery shows when the ack went out.
    # MQTT 3.1.1 takes the window from the broker's settings, MQTT 5 from the
    # runtime's Receive Maximum.
    broker_process = mosquitto("max_inflight_messages 1\n")
    monkeypatch.setattr(runtime_session, "RECEIVE_MAXIMUM", 1)
    real_store = ingest.store_batch
    entered, gate = threading.Event(), threading.Event()
    batches: list[list[str]] = []

    def gated_store(batch: list[ingest.ReceivedMessage], cache: Any = None) -> None:
        batches.append([message.topic for message in batch])
        entered.set()
        assert gate.wait(10)
        real_store(batch, cache)

    monkeypatch.setattr(ingest, "store_batch", gated_store)
    runtime = start_runtime()
    broker = running_broker(actor, broker_process.port, protocol=protocol)
    retrying(
        subscription_create,
        actor=actor,
        broker=broker,
        name="q",
        topic_filter="q/#",
        qos=1,
    )
    wait_until(state_is(broker, "connected", subscribed_topics_count=1), 10, "sub")

    publish(broker_process.port, "q/1", b"first", qos=1)
    assert entered.wait(5)
    publish(broker_process.port, "q/2", b"second", qos=1)
    time.sleep(0.5)
    # q/1 is neither stored nor acknowledged, so the broker holds q/2 back.
    assert runtime.messages.qsize() == 0
    assert batches == [["q/1"]]
    assert status_of(broker).messages_received == 0

    gate.set()
    wait_until(lambda: status_of(broker).messages_received == 2, 5, "both stored")
    # A batch whose write failed (database busy) is written again before acking.
    assert [batch for batch in batches if batch != ["q/1"]] == [["q/2"]]
    assert batches[-1] == ["q/2"]
    texts = StoredMessage.objects.filter(broker=broker).order_by("id")
    assert [m.text for m in texts] == ["first", "second"]


def test_a_full_queue_holds_the_broker_back_without_losing_messages(
    plain_broker: Any, actor: Any, start_runtime: Any, monkeypatch: Any
) -> None:
    real_store = ingest.store_batch
    entered, gate = threading.Event(), threading.Event()

    def slow_store(batch: list[ingest.ReceivedMessage], cache: Any = None) -> None:
        entered.set()
        gate.wait(10)
        real_store(batch, cache)

    monkeypatch.setattr(ingest, "store_batch", slow_store)
    runtime = start_runtime(queue_size=2)
    broker = running_broker(actor, plain_broker.port)
    retrying(
        subscription_create, actor=actor, broker=broker, name="f", topic_filter="f/#"
    )
    wait_until(state_is(broker, "connected", subscribed_topics_count=1), 10, "sub")
    publish(plain_broker.port, "f/first")
    assert entered.wait(5)

    # QoS 0: only the full queue (a blocked on_message) holds these back.
    publish_messages(
        ConnectionSettings(host="127.0.0.1", port=plain_broker.port),
        [OutgoingMessage(topic=f"f/{n}", payload=b"v") for n in range(30)],
    )
    wait_until(lambda: runtime.messages.full(), 5, "queue full")
    time.sleep(0.3)
    assert runtime.messages.full()
    gate.set()
    wait_until(lambda: status_of(broker).messages_received == 31, 10, "all stored")
    assert status_of(broker).state == "connected"


def test_unstored_qos1_message_is_delivered_again_to_the_next_owner(
    plain_broker: Any, actor: Any, start_runtime: Any, monkeypatch: Any
) -> None:
    real_store = ingest.store_batch
    entered, gate = threading.Event(), threading.Event()
    failing = {"on": True}

    def flaky_store(batch: list[ingest.ReceivedMessage], cache: Any = None) -> None:
        if failing["on"]:
            entered.set()
            gate.wait(10)
            raise OperationalError("database is down (simulated)")
        real_store(batch, cache)

    monkeypatch.setattr(ingest, "store_batch", flaky_store)
    monkeypatch.setattr("runtime.batcher.RETRIES_WHEN_STOPPING", 1)
    first = start_runtime("w1", lease_ttl=3, lease_renew=1)
    # A persistent session keeps unacknowledged messages for the next connection.
    broker = running_broker(
        actor, plain_broker.port, clean_start=False, session_expiry_interval=300
    )
    retrying(
        subscription_create,
        actor=actor,
        broker=broker,
        name="q",
        topic_filter="q/#",
        qos=1,
    )
    wait_until(state_is(broker, "connected", subscribed_topics_count=1), 10, "sub")

    publish(plain_broker.port, "q/1", b"important", qos=1)
    assert entered.wait(5)
    stopper = threading.Thread(target=first.stop, kwargs={"release": False})
    stopper.start()
    wait_until(lambda: not first.sessions, 5, "w1 closed its session")
    gate.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert status_of(broker).messages_received == 0

    failing["on"] = False
    start_runtime("w2", lease_ttl=3, lease_renew=1)
    wait_until(lambda: status_of(broker).messages_received == 1, 15, "redelivered")
    assert StoredMessage.objects.get(broker=broker).text == "important"


def test_serve_starter_runs_the_runtime(
    plain_broker: Any, actor: Any, monkeypatch: Any
) -> None:
    from mqttadmin.embedded import EmbeddedOptions
    from runtime.apps import start_runtime as serve_starter

    assert serve_starter(EmbeddedOptions(runtime=False)) is None
    stop = serve_starter(EmbeddedOptions(runtime=True))
    assert stop is not None
    try:
        broker = running_broker(actor, plain_broker.port)
        wait_until(state_is(broker, "connected"), 10, "connected")
        assert status_of(broker).owner.endswith(":serve")
    finally:
        stop()
    wait_until(lambda: not runtime_threads(), 5, "runtime threads to end")
