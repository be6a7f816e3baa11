"""The live sockets accept only the portal's own origin (scheme, host and port),
through the real ASGI application: a page on another port of the same host, or on
another host, cannot open a socket with the user's cookies and publish."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings

from brokers.models import Broker, BrokerStatus
from mqttadmin.models import AuditEntry
from tests.clients import logged_in
from tests.factories import make_product, make_user
from tests.live.conftest import receive_until

pytestmark = pytest.mark.django_db(transaction=True)

HOST = b"127.0.0.1:8000"


def handshake(path: str, client: Any, origin: bytes | None, host: bytes = HOST) -> Any:
    from mqttadmin.asgi import application

    headers = [(b"host", host)]
    if origin is not None:
        headers.append((b"origin", origin))
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def try_to_publish(broker: Broker, client: Any, origin: bytes | None) -> bool:
    """Open the broker's socket from `origin` and publish; True when it opened."""
    opened: list[bool] = []

    async def scenario() -> None:
        communicator = handshake(f"/ws/brokers/{broker.pk}/", client, origin)
        connected, _code = await communicator.connect()
        opened.append(connected)
        if connected:
            await receive_until(communicator, lambda f: 'id="broker-status"' in f)
            await communicator.send_json_to(
                {"action": "publish", "topic": "qx/cmd", "payload": "open-valve"}
            )
            await receive_until(communicator, lambda f: "live-publish-result" in f)
            await communicator.disconnect()

    async_to_sync(scenario)()
    return opened[0]


class Listener:
    """A subscriber on the real broker: what reached `qx/cmd`."""

    def __init__(self, port: int) -> None:
        self.received: list[bytes] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_a: c.subscribe("qx/#")
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.on_message = lambda _c, _u, m: self.received.append(m.payload)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(5)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def operator_on_a_broker(mosquitto: Any) -> Any:
    process = mosquitto()
    operator = make_user("oscar")
    product = make_product("Qxa Plant", operator=operator)
    broker = Broker.objects.create(
        product=product, name="Line 1", host="127.0.0.1", port=process.port
    )
    BrokerStatus.objects.create(broker=broker, state="connected")
    listener = Listener(process.port)
    yield broker, logged_in(operator), listener
    listener.stop()


@pytest.mark.parametrize(
    "origin",
    [
        b"http://127.0.0.1:8115",  # another program on the same host
        b"http://127.0.0.1",  # same host, default port: not 8000
        b"https://127.0.0.1:8000",  # another scheme
        b"http://evil.example",
        b"http://127.0.0.1:8000.evil.example",
        b"null",
        None,
    ],
)
def test_a_socket_from_another_origin_is_refused_and_publishes_nothing(
    operator_on_a_broker: Any, origin: bytes | None
) -> None:
    broker, client, listener = operator_on_a_broker
    assert try_to_publish(broker, client, origin) is False
    listener.client.loop_stop()  # drain: anything published would have arrived
    listener.client.loop(timeout=0.5)
    assert listener.received == []
    assert not AuditEntry.objects.filter(action="broker.publish").exists()


def test_the_portals_own_origin_still_publishes(operator_on_a_broker: Any) -> None:
    broker, client, listener = operator_on_a_broker
    assert try_to_publish(broker, client, b"http://127.0.0.1:8000") is True
    deadline = threading.Event()
    for _ in range(50):
        if listener.received:
            break
        deadline.wait(0.1)
    assert listener.received == [b"open-valve"]


def test_csrf_trusted_origins_are_accepted(settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://portal.example.com"]
    user = make_user("victor")
    make_product("Qxa Plant", viewer=user)
    client = logged_in(user)

    async def opens(origin: bytes) -> bool:
        communicator = handshake("/ws/overview/", client, origin)
        connected, _code = await communicator.connect()
        if connected:
            await communicator.disconnect()
        return connected

    assert async_to_sync(opens)(b"https://portal.example.com") is True
    assert async_to_sync(opens)(b"https://other.example.com") is False
