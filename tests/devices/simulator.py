"""A device simulator and a capturing subscriber for the devices tests: real paho
clients on a real Mosquitto."""

from __future__ import annotations

import itertools
import queue
import socket
import threading
from typing import Any, cast

import paho.mqtt.client as mqtt
from django.utils import timezone
from paho.mqtt.enums import CallbackAPIVersion

from mqttadmin.pipeline import ReceivedMessage

_ids = itertools.count(1)


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        # A lost connection ends the network thread instead of reconnecting.
        reconnect_on_failure=False,
    )


class Capture:
    """A subscriber on a real broker that turns what it receives into the
    ReceivedMessage rows the runtime would hand to brokers.ingest.store_batch."""

    def __init__(self, port: int, broker_id: int, topic: str = "#") -> None:
        self.broker_id = broker_id
        self.messages: queue.Queue[ReceivedMessage] = queue.Queue()
        self.client = _client(f"capture-{next(_ids)}")
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(5), "no SUBACK"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(
            ReceivedMessage(
                broker_id=self.broker_id,
                topic=msg.topic,
                payload=bytes(msg.payload),
                qos=msg.qos,
                retain=bool(msg.retain),
                received_at=timezone.now(),
                mid=msg.mid,
            )
        )

    def take(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        return [self.messages.get(timeout=timeout) for _ in range(count)]

    def stop(self) -> None:
        # The network thread ends by itself after DISCONNECT; joining it would
        # wait out paho's one-second select.
        self.client.disconnect()


class Simulator:
    """A device: connects with a retained last will of "offline" on its
    availability topic, says "online" (retained) and publishes telemetry."""

    def __init__(
        self, port: int, availability_topic: str, client_id: str | None = None
    ) -> None:
        self.client = _client(client_id or f"sim-{next(_ids)}")
        self.client.will_set(availability_topic, "offline", qos=1, retain=True)
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()
        assert connected.wait(5), "the simulator did not connect"
        self.publish(availability_topic, "online", retain=True)

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def die(self) -> None:
        """Lose the connection without DISCONNECT, as a crash or a pulled cable
        would: the broker then publishes the last will."""
        sock = self.client.socket()
        if sock is not None:
            try:
                # paho's type for its socket names only the methods paho calls.
                cast(socket.socket, sock).shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()

    def stop(self) -> None:
        self.client.disconnect()
