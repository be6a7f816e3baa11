"""One live connection to one broker: a paho-mqtt 2.x client and its callbacks.

Callbacks run on paho's network thread and only enqueue: received messages go on
the runtime's bounded message queue, connection events on its status-event queue.
The reconcile thread owns everything that touches the database.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import queue
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from django.utils import timezone
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from brokers.choices import ConnectionState
from brokers.client import (
    BufferedReadClient,
    ConnectionSettings,
    build_client,
    connect_kwargs,
    describe_connack,
    describe_connection_lost,
    tls_failure_cause,
)
from brokers.models import Broker
from mqttadmin.pipeline import ReceivedMessage
from runtime.message_queue import MessageQueue
from runtime.overlap import CopyRule, plan_wire

logger = logging.getLogger(__name__)

RECONNECT_MIN_DELAY = 1
RECONNECT_MAX_DELAY = 30
# How long on_message waits for room in a full queue before checking whether the
# session is closing; it keeps waiting after that (backpressure on the broker).
PUT_WAIT = 0.5
# A read burst hands over its messages at the latest after this many.
FLUSH_AT = 500
# A filter the broker answered by closing the connection this many times in a
# row (it was the first unanswered SUBSCRIBE each time) is given up: once could be
# a network blip, twice is the filter.
DISCONNECT_STRIKES = 2
# Unacknowledged QoS>0 messages an MQTT 5 broker may send the runtime (the most
# MQTT 5 allows).
RECEIVE_MAXIMUM = 65535


def shared_client_id(client_id: str, owner: str) -> str:
    """The client id of `owner`'s shared session on a broker.

    Stable across restarts of the same worker (the pid in the owner name is left
    out), so a persistent session keeps what the group queued for this member.
    """
    host, _pid, role = [*owner.split(":"), "", ""][:3]
    stable = f"{host}:{role}" if role else owner
    tag = hashlib.sha256(stable.encode()).hexdigest()[:6]
    return f"{(client_id or 'mqttadmin')[:14]}-s{tag}"


def fingerprint(broker: Broker) -> str:
    """A hash of the fields whose change needs a new connection (memory only)."""
    values = [getattr(broker, name) for name in Broker.CONNECTION_FIELDS]
    blob = json.dumps(values, default=str, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class StatusEvent:
    """A change of a session's status, applied to BrokerStatus by the reconcile
    thread (callbacks never touch the database)."""

    session: BrokerSession
    fields: dict[str, Any]


@dataclass(slots=True)
class Delivery:
    """A received message with what it takes to acknowledge it later.

    Not frozen: built once per message on paho's network thread, where a frozen
    dataclass's per-field object.__setattr__ is a measurable cost.
    """

    message: ReceivedMessage
    session: BrokerSession
    generation: int
    # A second copy of a message the broker sent once per matching subscription:
    # acknowledged with its batch, never stored or counted.
    copy: bool = False


@dataclass
class _Subscriptions:
    """What the session wants, what it sent on this connection, what was granted."""

    desired: dict[str, int] = field(default_factory=dict)
    # What goes on the wire for `desired` (see runtime.overlap): covered filters
    # are left out, and each desired filter is carried by one wire filter.
    wire: dict[str, int] = field(default_factory=dict)
    carried_by: dict[str, str] = field(default_factory=dict)
    overlapping: bool = False
    # MQTT 5 subscription identifiers of the wire filters on this connection.
    ids: dict[str, int] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)
    granted: set[str] = field(default_factory=set)
    pending: dict[int, list[str]] = field(default_factory=dict)
    # Filters a persistent session on the broker may still hold across reconnects.
    remembered: set[str] = field(default_factory=set)
    # Filters the broker closed the connection on (first unanswered SUBSCRIBE at a
    # disconnect), with how many times in a row; cleared by a SUBACK.
    strikes: dict[str, int] = field(default_factory=dict)
    # Filters given up on (see DISCONNECT_STRIKES) and left out of `desired` until
    # the runtime stops asking for them (it disables their subscriptions).
    poisoned: set[str] = field(default_factory=set)


def _failure_reason(
    host: str, port: int, settings: ConnectionSettings
) -> tuple[str, str]:
    """(state, text) for a failed connection attempt.

    on_connect_fail runs inside paho's `except OSError:` block, so the exception
    being handled is the reason; paho passes nothing else.
    """
    exc = sys.exc_info()[1]
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        # A configuration problem that retrying will not fix: an error, not a blip.
        return ConnectionState.ERROR, (
            f"TLS certificate verification failed for {where}: {exc.verify_message}"
        )
    tls_cause = tls_failure_cause(exc, settings, handshake=True)
    if tls_cause:
        # A plain port, or a certificate the broker refuses: retrying will not fix it.
        return ConnectionState.ERROR, f"TLS with {where} failed: {tls_cause}"
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionState.DISCONNECTED, f"Connection refused by {where}"
    if isinstance(exc, socket.gaierror):
        return ConnectionState.DISCONNECTED, f"Host name {host!r} not resolved"
    if isinstance(exc, TimeoutError):
        return ConnectionState.DISCONNECTED, f"No answer from {where}"
    if isinstance(exc, OSError):
        return ConnectionState.DISCONNECTED, (
            f"Cannot connect to {where}: {exc.strerror or exc}"
        )
    return ConnectionState.DISCONNECTED, f"Cannot connect to {where}"


def _properties_dict(properties: Properties | None) -> dict[str, Any]:
    if properties is None or properties.isEmpty():
        return {}
    found = dict(properties.json())
    # Identifiers of this connection's subscriptions: they say nothing of the
    # message itself (and differ between runtimes), so they are not kept.
    found.pop("SubscriptionIdentifier", None)
    correlation = getattr(properties, "CorrelationData", None)
    if isinstance(correlation, bytes | bytearray):
        # paho writes the bytes as bare hex, which a text of hex digits would look
        # the same as; marked, they are shown as text or hex without guessing.
        found["CorrelationData"] = {"hex": bytes(correlation).hex()}
    return found


def _no_portal_subscriptions(broker_id: int, *, fresh: bool = False) -> dict[str, int]:
    return {}


@dataclass(frozen=True)
class PortalSubscriptions:
    """What the portal subscribes for itself on an owner's session, beside the
    broker's subscriptions: observe's `$SYS/#` (`wanted(broker_id, fresh=...)`).
    `filters` are never counted as the broker's topics.

    The manager hands them in, so this module, which runs on paho's network
    thread, imports nothing of the apps that consume messages.
    """

    wanted: Callable[..., dict[str, int]] = _no_portal_subscriptions
    filters: frozenset[str] = frozenset()


class BrokerSession:
    """A broker's live connection, owned by one Runtime while it holds the lease.

    Reconnects by itself (paho's loop with backoff), walks the broker's hosts in
    order when an attempt fails, and keeps its subscriptions in step with the
    desired ones without reconnecting.
    """

    def __init__(
        self,
        broker: Broker,
        subscriptions: dict[str, int],
        *,
        owner: str,
        messages: MessageQueue[Delivery],
        events: queue.Queue[StatusEvent],
        wake: Callable[[], None],
        shared: bool = False,
        portal: PortalSubscriptions = PortalSubscriptions(),
    ) -> None:
        self.broker_id: int = broker.pk
        self.portal = portal
        # A shared session is this runtime's member of the broker's $share groups:
        # every runtime has one (no lease), with a client id of its own, and it
        # carries only shared subscriptions (see Runtime._reconcile_shared).
        self.shared = shared
        self.client_id = (
            shared_client_id(broker.client_id, owner) if shared else broker.client_id
        )
        self.fingerprint = fingerprint(broker)
        # Compared by value, not with the session's start time: the request is
        # stamped by another process whose clock may differ from ours.
        self.reconnect_marker: datetime.datetime | None = broker.reconnect_requested_at
        self.settings = ConnectionSettings.from_broker(broker)
        if shared:
            self.settings = dataclasses.replace(self.settings, client_id=self.client_id)
        self.hosts = broker.hosts
        self.owner = owner
        self.client: mqtt.Client | None = None
        self.failed = False
        self.generation = 0
        # PUBLISH packets received over the session's life (all connections).
        self.received = 0
        self._messages = messages
        self._events = events
        self._wake = wake
        self._host_index = 0
        self._lock = threading.RLock()
        self._subs = _Subscriptions()
        self._plan({**subscriptions, **self._sys_subscriptions(fresh=True)})
        # Set when the broker sends a copy per matching subscription (MQTT 5 with
        # overlapping filters); read on the network thread, replaced whole.
        self._copy_rule: CopyRule | None = None
        self._next_subscription_id = 1
        self._ids_available = self.settings.is_v5
        self._connected = False
        self._refused = False
        self._closing = threading.Event()
        self._full_warned_at = 0.0
        # Messages of the current socket read, handed to the queue together by
        # _flush_received (network thread only).
        self._received: list[Delivery] = []
        self._read_at = datetime.datetime.now(datetime.UTC)

    # --- lifecycle (reconcile thread) ---------------------------------------------

    def start(self) -> None:
        """Build the client and let paho connect in its own thread."""
        try:
            client = build_client(self.settings, client_class=BufferedReadClient)
        except (ssl.SSLError, ValueError, OSError) as exc:
            # Bad PEM material and the like: nothing to retry until the row changes.
            self.failed = True
            self._emit(
                state=ConnectionState.ERROR,
                connection_error=f"Cannot set up the connection: {exc}",
            )
            return
        assert isinstance(client, BufferedReadClient)  # the class asked for
        client.manual_ack_set(True)
        client.reconnect_delay_set(
            min_delay=RECONNECT_MIN_DELAY, max_delay=RECONNECT_MAX_DELAY
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.after_read = self._flush_received
        client.on_publish_received = self._on_publish_received
        self.client = client
        client.connect_async(**self._connect_kwargs())
        client.loop_start()

    def begin_close(self) -> None:
        """Ask the client to disconnect; `wait_closed` joins its thread."""
        self._closing.set()
        if self.client is not None:
            self.client.disconnect()

    def wait_closed(self) -> None:
        if self.client is not None:
            self.client.loop_stop()

    def close(self) -> None:
        self.begin_close()
        self.wait_closed()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def subscribed(self) -> frozenset[str]:
        """The desired filters in effect on the current connection: granted by the
        broker, or covered by a filter it granted."""
        with self._lock:
            subs = self._subs
            return frozenset(
                topic
                for topic, carrier in subs.carried_by.items()
                if carrier in subs.granted
            )

    @property
    def current_host(self) -> str:
        host, port = self.hosts[self._host_index]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def set_subscriptions(self, desired: dict[str, int]) -> None:
        """Subscribe/unsubscribe the difference on the live connection.

        While disconnected only the desired set changes: on_connect subscribes it.
        """
        desired = {**desired, **self._sys_subscriptions()}
        with self._lock:
            subs = self._subs
            if subs.poisoned:
                # Asked for no more (its subscription was disabled): forget it, so
                # enabling it again gives it a fresh try.
                subs.poisoned.intersection_update(desired)
                desired = {t: q for t, q in desired.items() if t not in subs.poisoned}
            if desired == subs.desired and (
                not self._connected or subs.wire == subs.applied
            ):
                return
            self._plan(desired)
            wire = subs.wire
            if not self._connected or self.client is None:
                return
            removed = [topic for topic in subs.applied if topic not in wire]
            added = [
                (topic, qos)
                for topic, qos in wire.items()
                if subs.applied.get(topic) != qos
            ]
            if removed:
                rc, _mid = self.client.unsubscribe(removed)
                for topic in removed:
                    subs.applied.pop(topic, None)
                    subs.granted.discard(topic)
                    subs.ids.pop(topic, None)
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    subs.remembered.difference_update(removed)
            if added:
                self._subscribe(added)
            self._update_copy_rule()
            count = self._granted_count()
        # Also when nothing went on the wire: a filter another one covers is in
        # effect at once.
        self._emit(subscribed_topics_count=count)

    def ack(self, mid: int, qos: int, generation: int) -> None:
        """Acknowledge a stored QoS>0 message, if it came on the current connection
        (message ids mean nothing on another one)."""
        client = self.client
        if client is None or qos == 0 or self._closing.is_set():
            return
        with self._lock:
            if generation != self.generation or not self._connected:
                return
        client.ack(mid, qos)

    # --- helpers ------------------------------------------------------------------

    def _plan(self, desired: dict[str, int]) -> None:
        """Set the desired filters and what carries them on the wire (lock held)."""
        plan = plan_wire(desired)
        subs = self._subs
        subs.desired = dict(desired)
        subs.wire, subs.carried_by = plan.wire, plan.carried_by
        subs.overlapping = plan.overlapping

    def _granted_count(self) -> int:
        """The broker's subscriptions in effect: desired filters (the portal's own
        left out) whose wire filter the broker granted (lock held)."""
        return len(self.subscribed - self.portal.filters)

    def _update_copy_rule(self) -> None:
        """Copies can come only when wire filters overlap; then the subscription
        identifiers tell them apart (lock held)."""
        subs = self._subs
        if subs.overlapping and subs.ids and self._ids_available:
            self._copy_rule = CopyRule(dict(subs.ids))
        else:
            self._copy_rule = None

    def _sys_subscriptions(self, fresh: bool = False) -> dict[str, int]:
        # Statistics come through the owner's session only.
        return {} if self.shared else self.portal.wanted(self.broker_id, fresh=fresh)

    def _connect_kwargs(self) -> dict[str, Any]:
        host, port = self.hosts[self._host_index]
        kwargs = {**connect_kwargs(self.settings), "host": host, "port": port}
        properties = kwargs.get("properties")
        if properties is not None:
            # MQTT 5 lets the client set the broker's window of unacknowledged
            # messages to it (Mosquitto applies it in place of its default of 20).
            # Acks wait for the commit, so a small window would stall the stream
            # and make the broker queue, then drop; the runtime's own bounded queue
            # holds the stream back instead (TCP backpressure), and nothing is lost.
            properties.ReceiveMaximum = RECEIVE_MAXIMUM
        return kwargs

    def _next_host(self) -> None:
        """Point paho's own reconnect at the next host (called on its thread)."""
        if len(self.hosts) < 2 or self.client is None or self._closing.is_set():
            return
        self._host_index = (self._host_index + 1) % len(self.hosts)
        logger.info("broker %s: trying %s next", self.broker_id, self.current_host)
        self.client.connect_async(**self._connect_kwargs())

    def _subscribe(self, items: list[tuple[str, int]]) -> None:
        """One SUBSCRIBE per filter: a filter the broker answers by closing the
        connection is then the first unanswered one (see _on_disconnect), and a
        refusal names one filter."""
        assert self.client is not None
        subs = self._subs
        for topic, qos in items:
            properties = None
            if self._ids_available:
                subscription_id = subs.ids.get(topic)
                if subscription_id is None:
                    subscription_id = subs.ids[topic] = self._next_subscription_id
                    self._next_subscription_id += 1
                properties = Properties(PacketTypes.SUBSCRIBE)
                properties.SubscriptionIdentifier = subscription_id
            try:
                rc, mid = self.client.subscribe([(topic, qos)], properties=properties)
            except ValueError as exc:
                logger.warning(
                    "broker %s: the MQTT library refuses filter %r: %s",
                    self.broker_id,
                    topic,
                    exc,
                )
                self._give_up(topic, f"The MQTT library refuses this filter: {exc}")
                continue
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                subs.pending[mid] = [topic]
                subs.applied[topic] = qos
                subs.remembered.add(topic)

    def _give_up(self, topic: str, reason: str) -> None:
        """Stop asking for `topic` on this session and tell the runtime, which
        disables the subscriptions behind it (lock held by the caller)."""
        subs = self._subs
        subs.poisoned.add(topic)
        self._plan({t: q for t, q in subs.desired.items() if t != topic})
        subs.applied.pop(topic, None)
        subs.ids.pop(topic, None)
        subs.granted.discard(topic)
        # Never UNSUBSCRIBE it later either: that packet could close the
        # connection just as well.
        subs.remembered.discard(topic)
        subs.strikes.pop(topic, None)
        self._emit(refused={topic: reason})

    def _emit(self, **fields: Any) -> None:
        try:
            # Never block paho's thread on status: a stuck database must not
            # stall the connection too.
            self._events.put_nowait(StatusEvent(self, fields))
        except queue.Full:
            logger.warning("status queue full; broker %s event lost", self.broker_id)
        self._wake()

    # --- paho callbacks (network thread: enqueue only, never raise) -------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            if self._closing.is_set():
                return
            if reason.is_failure:
                _code, text, _kind = describe_connack(reason, self.settings)
                with self._lock:
                    self._refused = True
                self._emit(
                    state=ConnectionState.ERROR,
                    connection_error=f"{self.current_host} refused the connection: "
                    f"{text}",
                )
                return
            with self._lock:
                self._refused = False
                self._connected = True
                self.generation += 1
                subs = self._subs
                stale = (
                    [t for t in subs.remembered if t not in subs.wire]
                    if flags.session_present
                    else []
                )
                subs.applied, subs.granted, subs.pending = {}, set(), {}
                subs.remembered, subs.ids = set(), {}
                if properties is not None and self.settings.is_v5:
                    # Absent means available (MQTT 5, 3.2.2.3.12).
                    self._ids_available = bool(
                        getattr(properties, "SubscriptionIdentifierAvailable", 1)
                    )
                if stale:
                    # A kept session still has filters dropped while we were away.
                    client.unsubscribe(stale)
                if subs.wire:
                    # Suspects last: the others are granted before the broker
                    # closes the connection on one of them again.
                    self._subscribe(
                        sorted(
                            subs.wire.items(),
                            key=lambda item: subs.strikes.get(item[0], 0),
                        )
                    )
                self._update_copy_rule()
            self._emit(
                state=ConnectionState.CONNECTED,
                last_connected_at=timezone.now(),
                connection_error="",
                connected_host=self.current_host,
                client_id=self.client_id,
                owner=self.owner,
                subscribed_topics_count=0,
            )
        except Exception:
            logger.exception("broker %s: on_connect failed", self.broker_id)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        try:
            if self._closing.is_set():
                return
            host, port = self.hosts[self._host_index]
            state, text = _failure_reason(host, port, self.settings)
            self._emit(state=state, connection_error=text, connected_host="")
            self._next_host()
        except Exception:
            logger.exception("broker %s: on_connect_fail failed", self.broker_id)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            with self._lock:
                was_connected, refused = self._connected, self._refused
                self._connected = False
                unanswered = next(iter(self._subs.pending.values()), [])
                self._subs.applied, self._subs.granted = {}, set()
                self._subs.pending = {}
                if unanswered and was_connected and not self._closing.is_set():
                    self._suspect(unanswered[0], reason)
            if self._closing.is_set():
                return
            if refused:
                # The refusal (state "error") says more than the close that follows.
                self._next_host()
                return
            lost = describe_connection_lost(
                client,
                reason,
                self.settings,
                from_broker=flags.is_disconnect_packet_from_server,
            )
            if not was_connected:
                # Closed before CONNACK: with TLS, most often a client
                # certificate the broker wants or refuses (said by its alert).
                tls_cause = tls_failure_cause(
                    getattr(client, "last_socket_error", None),
                    self.settings,
                    handshake=False,
                )
                self._emit(
                    state=ConnectionState.ERROR
                    if tls_cause
                    else ConnectionState.DISCONNECTED,
                    connection_error=f"{self.current_host} closed the connection "
                    f"before CONNACK: {tls_cause or lost}",
                    connected_host="",
                )
                return
            self._emit(
                state=ConnectionState.DISCONNECTED,
                last_disconnected_at=timezone.now(),
                connection_error="" if not reason.is_failure else lost,
                subscribed_topics_count=0,
            )
        except Exception:
            logger.exception("broker %s: on_disconnect failed", self.broker_id)

    def _suspect(self, topic: str, reason: ReasonCode) -> None:
        """The broker closed the connection with `topic`'s SUBSCRIBE the first
        unanswered one: a strike; at DISCONNECT_STRIKES the filter is given up, so
        one bad filter cannot keep the connection in a reconnect loop (lock held)."""
        subs = self._subs
        strikes = subs.strikes.get(topic, 0) + 1
        subs.strikes[topic] = strikes
        logger.warning(
            "broker %s closed the connection (%s) right after SUBSCRIBE %r (%d/%d)",
            self.broker_id,
            reason,
            topic[:200],
            strikes,
            DISCONNECT_STRIKES,
        )
        if strikes >= DISCONNECT_STRIKES and topic in subs.wire:
            self._give_up(
                topic,
                f"The broker closed the connection right after this SUBSCRIBE "
                f"{strikes} times in a row ({reason}).",
            )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        try:
            with self._lock:
                subs = self._subs
                topics = subs.pending.pop(mid, [])
                refused: dict[str, str] = {}
                # SUBACK's success codes are the QoS granted, which may be less
                # than asked (Mosquitto's max_qos, RabbitMQ's QoS 2 as 1).
                granted_qos: dict[str, int] = {}
                for topic, code in zip(topics, reason_codes, strict=False):
                    subs.strikes.pop(topic, None)
                    if code.is_failure:
                        subs.granted.discard(topic)
                        logger.warning(
                            "broker %s refused subscription %r: %s",
                            self.broker_id,
                            topic,
                            code,
                        )
                        # Left in `applied`: not sent again on this connection.
                        refused[topic] = (
                            f"The broker refused this subscription: {code} "
                            f"(SUBACK 0x{code.value:02X})."
                        )
                    elif topic in subs.wire:
                        subs.granted.add(topic)
                        # The filters this one carries (see runtime.overlap) get
                        # what it was granted, up to the QoS each asked for.
                        for desired, carrier in subs.carried_by.items():
                            if carrier == topic and desired not in self.portal.filters:
                                granted_qos[desired] = min(
                                    code.value, subs.desired[desired]
                                )
                count = self._granted_count()
            if refused:
                self._emit(refused=refused)
            if granted_qos:
                self._emit(granted_qos=granted_qos)
            self._emit(subscribed_topics_count=count)
        except Exception:
            logger.exception("broker %s: on_subscribe failed", self.broker_id)

    def _on_message(
        self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        """paho's path: QoS 2, and topics that are not valid UTF-8."""
        try:
            topic = message.topic
        except UnicodeDecodeError:
            logger.warning(
                "broker %s: message with a non-UTF-8 topic dropped", self.broker_id
            )
            return
        self._on_publish_received(
            topic,
            message.payload,
            message.qos,
            message.retain,
            message.mid,
            getattr(message, "properties", None),
        )

    def _on_publish_received(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        mid: int,
        properties: Properties | None,
        subscription_ids: list[int] | None = None,
    ) -> None:
        """Every received PUBLISH (network thread): queued for the ingest thread."""
        if not self._received:
            # One clock reading per socket read: its messages arrived together.
            # (Not timezone.now(): it reads settings through a lazy object.)
            self._read_at = datetime.datetime.now(datetime.UTC)
        try:
            received = ReceivedMessage(
                self.broker_id,
                topic,
                bytes(payload),
                qos,
                bool(retain),
                self._read_at,
                mid,
                _properties_dict(properties) if properties is not None else {},
                self.shared,
            )
        except Exception:
            logger.exception("broker %s: unreadable message dropped", self.broker_id)
            return
        self.received += 1
        copy = False
        rule = self._copy_rule
        if rule is not None:
            ids = subscription_ids or getattr(
                properties, "SubscriptionIdentifier", None
            )
            if ids:
                copy = not rule.keeps(topic, ids)
        self._received.append(Delivery(received, self, self.generation, copy))
        if len(self._received) >= FLUSH_AT:
            self._flush_received()

    def _flush_received(self) -> None:
        """Hand the messages of this read to the runtime's queue (network thread).

        Blocking here is the backpressure: paho stops reading, the broker holds
        further QoS>0 messages back (in-flight window) or TCP fills up.
        """
        if not self._received:
            return
        received, self._received = self._received, []
        while not self._closing.is_set():
            if self._messages.put_many(received, timeout=PUT_WAIT):
                return
            now = time.monotonic()
            if now - self._full_warned_at > 10:
                self._full_warned_at = now
                logger.warning(
                    "message queue full: broker %s waits for storage",
                    self.broker_id,
                )
