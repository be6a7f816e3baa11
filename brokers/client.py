"""Building paho-mqtt 2.x clients from broker settings, testing connections, publishing.

Shared by the runtime (long-lived sessions), the connection test and publishing.
Secrets stay in memory: client certificates are loaded into an SSLContext from a
private temporary directory that is removed at once.
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from brokers.choices import Protocol, Transport

# MQTT 5 reason codes (and the 3.1.1 CONNACK codes they correspond to).
BAD_CREDENTIALS_V5, NOT_AUTHORIZED_V5 = 134, 135
V5_TO_V311 = {128: 5, 132: 1, 133: 2, 134: 4, 135: 5, 136: 3}


@dataclass(frozen=True)
class ConnectionSettings:
    """What it takes to open a connection; built from a Broker or unsaved form data."""

    host: str
    port: int = 1883
    transport: str = Transport.TCP
    ws_path: str = "/mqtt"
    use_tls: bool = False
    tls_insecure: bool = False
    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = field(default="", repr=False)
    protocol: str = Protocol.MQTT_311
    client_id: str = ""
    keepalive: int = 60
    clean_start: bool = True
    session_expiry_interval: int = 0
    username: str = ""
    password: str = field(default="", repr=False)
    connect_timeout: float = 10.0
    fallback_hosts: tuple[str, ...] = ()

    @classmethod
    def from_broker(cls, broker: Any, **overrides: Any) -> ConnectionSettings:
        values = {
            name: getattr(broker, name)
            for name in cls.__dataclass_fields__
            if name != "fallback_hosts"
        }
        values["fallback_hosts"] = tuple(broker.fallback_hosts or ())
        values.update(overrides)
        return cls(**values)

    @property
    def is_v5(self) -> bool:
        return self.protocol == Protocol.MQTT_5


def tls_context(settings: ConnectionSettings) -> ssl.SSLContext:
    """An SSLContext that verifies against the broker's CA (or the system's)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if settings.ca_cert.strip():
        context.load_verify_locations(cadata=settings.ca_cert)
    if settings.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.client_cert.strip():
        # load_cert_chain reads files only: a 0700 directory that lives for one call.
        with tempfile.TemporaryDirectory(prefix="mqttadmin-tls-") as tmp:
            cert_path = os.path.join(tmp, "cert.pem")
            key_path = os.path.join(tmp, "key.pem")
            for path, content in (
                (cert_path, settings.client_cert),
                (key_path, settings.client_key),
            ):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(content)
            context.load_cert_chain(cert_path, key_path)
    return context


def connect_properties(settings: ConnectionSettings) -> Properties | None:
    if not settings.is_v5:
        return None
    properties = Properties(PacketTypes.CONNECT)
    if settings.session_expiry_interval:
        properties.SessionExpiryInterval = settings.session_expiry_interval
    return properties


class SocketErrorMemoryClient(mqtt.Client):
    """A paho client that remembers why its socket last failed to read.

    paho logs a failed read or write and reports only "Unspecified error" to
    on_disconnect; the TLS alert that says why the broker hung up (no client
    certificate, an untrusted one) is lost. Kept per connection attempt.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_socket_error: OSError | None = None

    def reconnect(self) -> MQTTErrorCode:
        self.last_socket_error = None
        return super().reconnect()

    def _sock_recv(self, bufsize: int) -> bytes:
        try:
            return super()._sock_recv(bufsize)
        except BlockingIOError:
            raise
        except OSError as exc:
            self.last_socket_error = exc
            raise

    def _sock_send(self, buf: bytes | bytearray) -> int:
        try:
            return super()._sock_send(buf)
        except BlockingIOError:
            raise
        except OSError as exc:
            self.last_socket_error = self._pending_alert() or exc
            raise

    def _pending_alert(self) -> ssl.SSLError | None:
        """The TLS alert the broker sent before hanging up, if one is unread.

        With TLS 1.3 a broker refuses a client certificate after the client has
        finished its handshake; when the client's CONNECT is written after the
        broker closed, the write fails with a bare EOF while the alert that says
        why still waits in the receive buffer.
        """
        sock = self._sock
        if not isinstance(sock, ssl.SSLSocket):
            return None
        try:
            sock.recv(1)
        except ssl.SSLError as alert:
            return alert if "ALERT" in (alert.reason or "") else None
        except OSError:
            return None
        return None


def _varint(data: bytes | bytearray, position: int) -> tuple[int, int]:
    """An MQTT variable byte integer at `position`: (value, position after it).

    paho's `VariableByteIntegers.decode` takes a buffer that starts at the integer:
    on the read path that would copy each packet's payload once more."""
    value, shift = 0, 0
    for _ in range(4):
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    raise ValueError("malformed variable byte integer")


_SUBSCRIPTION_IDENTIFIER = 0x0B


def _subscription_ids_only(block: bytes | bytearray) -> list[int] | None:
    """The subscription identifiers of a PUBLISH properties block, or None when
    it holds any other property."""
    ids: list[int] = []
    position = 0
    while position < len(block):
        if block[position] != _SUBSCRIPTION_IDENTIFIER:
            return None
        value, position = _varint(block, position + 1)
        ids.append(value)
    return ids


class BufferedReadClient(SocketErrorMemoryClient):
    """A paho client that reads the socket in 64 KiB chunks.

    Stock paho reads each packet with three recv() calls (type byte, length bytes,
    body) and goes back to select() after every packet at QoS 0: at tens of
    thousands of messages a second those system calls are most of the network
    thread's time. Here `_sock_recv` serves from one buffer refilled by a large
    recv(), and `loop_read` keeps parsing while the buffer holds data, so a burst
    costs one select() and a few recv() calls. Both overrides keep paho's
    contracts (short reads allowed, BlockingIOError when nothing is there); the
    buffer belongs to one socket and is dropped when paho reconnects.
    """

    READ_CHUNK = 65536
    # Packets parsed per loop_read before paho gets to write (acks, pings) again.
    MAX_BURST = 2000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Called on the network thread after each read burst, e.g. to hand the
        # messages its callbacks collected to a consumer in one go.
        self.after_read: Callable[[], None] | None = None
        # (topic, payload, qos, retain, mid, properties[, subscription ids]) of
        # each QoS 0/1 PUBLISH, instead of on_message (see _handle_publish); the
        # identifiers come as a 7th argument when they are the only properties.
        self.on_publish_received: Callable[..., None] | None = None
        self._read_buffer = b""
        self._read_offset = 0
        self._read_socket: object | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        """QoS 0 and 1 PUBLISH straight to `on_publish_received`, when set.

        paho builds an MQTTMessage per PUBLISH (with a threading.Condition in
        its MQTTMessageInfo) and matches per-topic callbacks under a mutex; a
        receiver that only wants the fields skips both. QoS 2, topics that are
        not UTF-8 and clients without the hook take paho's own path.
        """
        receive = self.on_publish_received
        command = self._in_packet["command"]
        qos = (command & 0x06) >> 1
        if receive is None or qos == 2:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        try:
            topic_end = 2 + int.from_bytes(packet[:2], "big")
            topic = packet[2:topic_end].decode("utf-8")
            position, mid = topic_end, 0
            if qos:
                mid = int.from_bytes(packet[position : position + 2], "big")
                position += 2
            properties: Properties | None = None
            subscription_ids: list[int] | None = None
            if self._protocol == mqtt.MQTTv5:
                start = position
                length, position = _varint(packet, position)
                block = packet[position : position + length]
                position += length
                if block:
                    # Subscription identifiers alone (the runtime's own, on every
                    # message) are read here: paho's Properties costs more per
                    # message than the rest of the packet.
                    subscription_ids = _subscription_ids_only(block)
                    if subscription_ids is None:
                        properties = Properties(PacketTypes.PUBLISH)
                        properties.unpack(packet[start:])
        except (UnicodeDecodeError, IndexError, ValueError, MQTTException):
            # Not UTF-8, or malformed: paho's own path decides and reports.
            return super()._handle_publish()
        if not topic and self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()  # paho refuses it as malformed
        retain = bool(command & 0x01)
        payload = packet[position:]
        if subscription_ids is None:
            receive(topic, payload, qos, retain, mid, properties)
        else:
            receive(topic, payload, qos, retain, mid, None, subscription_ids)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._sock is not self._read_socket:
            self._read_socket = self._sock
            self._read_buffer, self._read_offset = b"", 0
        buffer, offset = self._read_buffer, self._read_offset
        if offset >= len(buffer):
            buffer = super()._sock_recv(self.READ_CHUNK)
            if not buffer:
                return buffer  # end of stream: paho sees the connection lost
            self._read_buffer, offset = buffer, 0
        end = offset + bufsize
        self._read_offset = end
        return buffer[offset:end]

    def _buffered(self) -> bool:
        return (
            self._sock is not None
            and self._sock is self._read_socket
            and self._read_offset < len(self._read_buffer)
        )

    def _loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        # select() cannot see data already in the buffer: parse it first, and
        # when a burst left some, only poll the socket so writes go out between.
        if self._buffered():
            rc = self.loop_read()
            if rc or self._sock is None:
                return rc
            if self._buffered():
                timeout = 0.0
        return super()._loop(timeout)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        try:
            return self._read_burst(max_packets)
        finally:
            if self.after_read is not None:
                self.after_read()

    def _read_burst(self, max_packets: int) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        burst = 0
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and burst < self.MAX_BURST:
            if not self._buffered():
                break
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            burst += 1
        return rc


def build_client(
    settings: ConnectionSettings,
    client_id: str | None = None,
    client_class: type[mqtt.Client] = SocketErrorMemoryClient,
    **kwargs: Any,
) -> mqtt.Client:
    """A configured, unconnected paho client (CallbackAPIVersion.VERSION2)."""
    v5 = settings.is_v5
    client = client_class(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id if client_id is not None else settings.client_id,
        clean_session=None if v5 else settings.clean_start,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        transport="websockets" if settings.transport == Transport.WEBSOCKETS else "tcp",
        reconnect_on_failure=kwargs.pop("reconnect_on_failure", True),
        **kwargs,
    )
    if settings.transport == Transport.WEBSOCKETS:
        client.ws_set_options(path=settings.ws_path or "/mqtt")
    if settings.use_tls:
        client.tls_set_context(tls_context(settings))
        if settings.tls_insecure:
            client.tls_insecure_set(True)
    if settings.username:
        client.username_pw_set(settings.username, settings.password or None)
    client.connect_timeout = settings.connect_timeout
    return client


def connect_kwargs(settings: ConnectionSettings) -> dict[str, Any]:
    """Arguments of connect()/connect_async() for the primary host."""
    kwargs: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "keepalive": settings.keepalive,
    }
    if settings.is_v5:
        kwargs["clean_start"] = settings.clean_start
        kwargs["properties"] = connect_properties(settings)
    return kwargs


def side_client(
    settings: ConnectionSettings, tag: str
) -> tuple[mqtt.Client, dict[str, Any]]:
    """A short-lived client beside the runtime's session, and its connect() args.

    It has a client id of its own (so it never takes the runtime's session over)
    and always starts clean, whatever the connection's own setting: with clean
    session off, every one-shot connection on MQTT 3.1.1 would leave a session
    behind on the broker (MQTT 5: clean start, and no Session Expiry Interval,
    so the session ends with the connection).
    """
    client_id = f"{(settings.client_id or 'mqttadmin')[:14]}-{tag}{os.urandom(3).hex()}"
    one_shot = replace(settings, clean_start=True, session_expiry_interval=0)
    client = build_client(
        one_shot,
        client_id=client_id,
        client_class=OneShotClient,
        reconnect_on_failure=False,
    )
    kwargs = connect_kwargs(one_shot)
    if one_shot.is_v5:
        kwargs["properties"] = None
    return client, kwargs


class OneShotClient(SocketErrorMemoryClient):
    """The client of one-shot connections (publish, connection test, retained).

    paho ignores the reason code of a PUBREC and sends PUBREL anyway, so an MQTT 5
    broker's refusal of a QoS 2 message (0x87 not authorised, ...) is lost and
    the PUBCOMP that follows says "packet identifier not found". Here a refusing
    PUBREC ends the message's flow, as MQTT 5 (4.3.3) says, and on_publish gets
    the refusal's reason code.
    """

    def _handle_pubrec(self) -> MQTTErrorCode:
        if self._protocol == mqtt.MQTTv5:
            result = _packet.decode_pubrec(
                self._in_packet["command"], self._in_packet["packet"], self._protocol
            )
            if result.reason.is_failure:
                with self._out_message_mutex:
                    if result.mid in self._out_messages:
                        return self._do_on_publish(
                            result.mid, result.reason, result.properties
                        )
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._handle_pubrec()


# --- Why a connection failed -------------------------------------------------------

# OpenSSL's names of the TLS alerts a broker sends when it refuses the client's
# certificate. With TLS 1.3 the client believes the handshake done before the
# broker has checked its certificate, so the alert arrives on the first read and
# looks like the connection closing before CONNACK.
CLIENT_CERTIFICATE_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the broker requires a client certificate",
    "TLSV1_ALERT_UNKNOWN_CA": (
        "the broker does not trust the client certificate (its issuer is unknown "
        "to the broker)"
    ),
    "SSLV3_ALERT_BAD_CERTIFICATE": "the broker refused the client certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the broker refused the client certificate",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": (
        "the broker refused the client certificate (unsupported certificate)"
    ),
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": (
        "the broker refused the client certificate: it has expired"
    ),
    "SSLV3_ALERT_CERTIFICATE_REVOKED": (
        "the broker refused the client certificate: it is revoked"
    ),
    "TLSV1_ALERT_ACCESS_DENIED": "the broker denied access to this client certificate",
}
# What a TLS handshake with a port that speaks plain MQTT ends in: the broker
# reads the ClientHello as a malformed packet and hangs up, or answers bytes that
# are no TLS record.
NOT_TLS_REASONS = {
    "WRONG_VERSION_NUMBER",
    "UNEXPECTED_EOF_WHILE_READING",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "HTTP_REQUEST",
}
NOT_TLS = "the broker did not speak TLS (is this port plain MQTT?)"


def tls_failure_cause(
    exc: BaseException | None, settings: ConnectionSettings, *, handshake: bool
) -> str | None:
    """Why TLS failed, in words, or None when `exc` is no TLS problem.

    `handshake`: `exc` came from opening the connection (TCP connect and the TLS
    handshake), not from a read after it.
    """
    if not settings.use_tls or exc is None:
        return None
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the broker's certificate was not accepted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason in CLIENT_CERTIFICATE_ALERTS:
            return CLIENT_CERTIFICATE_ALERTS[reason]
        if handshake and (
            reason in NOT_TLS_REASONS or isinstance(exc, ssl.SSLEOFError)
        ):
            return NOT_TLS
        return f"TLS failed: {reason or exc}"
    if handshake and isinstance(
        exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError
    ):
        return NOT_TLS
    return None


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe_connection_lost(
    client: mqtt.Client,
    reason: ReasonCode,
    settings: ConnectionSettings,
    *,
    from_broker: bool,
) -> str:
    """Why an open connection (or one awaiting CONNACK) ended, in words.

    paho reports a connection it lost itself as "Unspecified error"; a broker
    that sent DISCONNECT (MQTT 5) gave its own reason, which is kept.
    """
    error = getattr(client, "last_socket_error", None)
    cause = tls_failure_cause(error, settings, handshake=False)
    if cause:
        return _sentence(cause)
    if from_broker:
        return f"The broker closed the connection: {reason}"
    if str(reason) == "Keep alive timeout":
        return "Connection lost: no answer within the keepalive"
    if error is not None:
        return f"Connection lost: {error.strerror or error}"
    return "Connection lost"


# --- Connection test ----------------------------------------------------------


@dataclass
class ConnectionTestResult:
    ok: bool
    reason_code: int | None
    reason: str
    latency_ms: float | None
    # dns | refused | timeout | tls | bad_credentials | not_authorized | protocol
    # | network; empty when ok
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason_code": self.reason_code,
            "reason": self.reason,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


def describe_connack(
    reason: ReasonCode, settings: ConnectionSettings
) -> tuple[int, str, str]:
    """(code as the protocol numbers it, reason, error kind) of a refused CONNACK."""
    value = reason.value
    code = value if settings.is_v5 else V5_TO_V311.get(value, value)
    if value == BAD_CREDENTIALS_V5:
        return code, "Bad username or password", "bad_credentials"
    if value == NOT_AUTHORIZED_V5:
        if settings.username:
            # Mosquitto answers a wrong password this way (not with 4 / 134).
            return (
                code,
                "Not authorised: wrong username or password, or this user may not "
                "connect",
                "not_authorized",
            )
        return code, "Not authorised", "not_authorized"
    return code, str(reason), "protocol"


def _tls_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message}"
    return f"TLS handshake failed: {exc.reason or exc}"


def probe_connection(settings: ConnectionSettings) -> ConnectionTestResult:
    """Open one connection and close it; tell apart why it failed.

    Bounded by the connect timeout (name resolution included).
    """
    started = time.monotonic()
    deadline = started + settings.connect_timeout

    def elapsed_ms() -> float:
        return round((time.monotonic() - started) * 1000, 1)

    try:
        socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return ConnectionTestResult(
            False,
            None,
            f"Host name {settings.host!r} not resolved: {exc.strerror}",
            None,
            "dns",
        )

    done = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        outcome["reason"] = reason
        outcome["at"] = elapsed_ms()
        done.set()

    def on_disconnect(
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        props: Any,
    ) -> None:
        if "closed" not in outcome:
            outcome["closed"] = describe_connection_lost(
                client,
                reason,
                settings,
                from_broker=flags.is_disconnect_packet_from_server,
            )
            outcome["tls"] = tls_failure_cause(
                getattr(client, "last_socket_error", None), settings, handshake=False
            )
        done.set()

    try:
        client, kwargs = side_client(settings, "t")
    except ssl.SSLError as exc:
        return ConnectionTestResult(False, None, _tls_reason(exc), None, "tls")
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.connect_timeout = max(0.1, deadline - time.monotonic())
    try:
        client.connect(**kwargs)
    except ConnectionRefusedError:
        return ConnectionTestResult(
            False,
            None,
            f"Connection refused by {settings.host}:{settings.port}",
            elapsed_ms(),
            "refused",
        )
    except TimeoutError:
        return ConnectionTestResult(
            False,
            None,
            f"No answer from {settings.host}:{settings.port} "
            f"within {settings.connect_timeout:g}s",
            elapsed_ms(),
            "timeout",
        )
    except OSError as exc:  # ssl.SSLError included
        cause = tls_failure_cause(exc, settings, handshake=True)
        if cause:
            return ConnectionTestResult(
                False, None, _sentence(cause), elapsed_ms(), "tls"
            )
        return ConnectionTestResult(
            False,
            None,
            f"Network error: {exc.strerror or exc}",
            elapsed_ms(),
            "network",
        )
    client.loop_start()
    try:
        answered = done.wait(max(0.0, deadline - time.monotonic()))
    finally:
        client.disconnect()
        client.loop_stop()
    if not answered:
        return ConnectionTestResult(
            False,
            None,
            f"No CONNACK from {settings.host}:{settings.port} "
            f"within {settings.connect_timeout:g}s",
            elapsed_ms(),
            "timeout",
        )
    reason = outcome.get("reason")
    if reason is None:
        if outcome.get("tls"):
            return ConnectionTestResult(
                False,
                None,
                f"{_sentence(outcome['tls'])} (it closed the connection before "
                "CONNACK)",
                elapsed_ms(),
                "tls",
            )
        return ConnectionTestResult(
            False,
            None,
            f"Connection closed before CONNACK: {outcome['closed']}",
            elapsed_ms(),
            "network",
        )
    if reason.is_failure:
        code, text, kind = describe_connack(reason, settings)
        return ConnectionTestResult(False, code, text, outcome["at"], kind)
    return ConnectionTestResult(True, 0, "Connected", outcome["at"], "")


# --- One-shot publishing ------------------------------------------------------


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None


class PublishError(RuntimeError):
    """Publishing failed; the message says where (connect, publish, ack).

    `acknowledged` of `total` messages had been accepted by the broker (QoS 1/2
    acknowledged, QoS 0 written) when it failed; messages are not taken back, so
    a failed batch may be partly delivered. `reason_code` is the broker's MQTT 5
    reason code when it refused a message (e.g. 0x87 not authorised).
    """

    def __init__(
        self,
        message: str,
        *,
        acknowledged: int = 0,
        total: int = 0,
        reason_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.acknowledged = acknowledged
        self.total = total
        self.reason_code = reason_code


def _delivered_before(acknowledged: int, total: int) -> str:
    if total <= 1:
        return "nothing was published"
    return f"{acknowledged} of the {total} messages were acknowledged before it"


def publish_messages(
    settings: ConnectionSettings,
    messages: list[OutgoingMessage],
    timeout: float | None = None,
) -> int:
    """Connect with the broker's credentials, publish, wait for every ack, disconnect.

    Uses its own client id so the runtime's session is never taken over. Raises
    PublishError as soon as the broker refuses a message (an MQTT 5 PUBACK or
    PUBREC reason code >= 0x80) or closes the connection, saying how many of the
    messages it had acknowledged; those stay delivered.
    """
    timeout = timeout or max(settings.connect_timeout, 5.0)
    total = len(messages)
    client, kwargs = side_client(settings, "p")
    changed = threading.Condition()
    state: dict[str, Any] = {"acked": set(), "refused": {}}

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        with changed:
            state["connack"] = reason
            changed.notify_all()

    def on_disconnect(
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        props: Any,
    ) -> None:
        with changed:
            state.setdefault(
                "closed",
                describe_connection_lost(
                    client,
                    reason,
                    settings,
                    from_broker=flags.is_disconnect_packet_from_server,
                ),
            )
            changed.notify_all()

    def on_publish(
        client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        with changed:
            if reason.is_failure:
                state["refused"][mid] = reason
            else:
                state["acked"].add(mid)
            changed.notify_all()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish
    where = f"{settings.host}:{settings.port}"
    try:
        client.connect(**kwargs)
    except OSError as exc:  # ssl.SSLError included
        cause = tls_failure_cause(exc, settings, handshake=True)
        raise PublishError(
            f"cannot connect to {where}: {cause or exc}", total=total
        ) from exc
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        with changed:
            changed.wait_for(
                lambda: "connack" in state or "closed" in state,
                max(0.0, deadline - time.monotonic()),
            )
            reason = state.get("connack")
            if reason is None and "closed" in state:
                raise PublishError(
                    f"the connection to {where} closed before CONNACK: "
                    f"{state['closed']}",
                    total=total,
                )
        if reason is None:
            raise PublishError("no CONNACK from the broker", total=total)
        if reason.is_failure:
            raise PublishError(
                "the broker refused the connection: "
                + describe_connack(reason, settings)[1],
                total=total,
            )
        topics: dict[int, str] = {}
        for message in messages:
            info = client.publish(
                message.topic,
                message.payload,
                message.qos,
                message.retain,
                message.properties,
            )
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break  # the connection is gone: said below, with its reason
            topics[info.mid] = message.topic

        def settled() -> bool:
            return (
                "closed" in state
                or bool(state["refused"])
                or len(state["acked"]) >= len(topics) == total
            )

        with changed:
            changed.wait_for(settled, max(0.0, deadline - time.monotonic()))
            acked = len(state["acked"])
            refused: dict[int, ReasonCode] = dict(state["refused"])
            closed = state.get("closed")
        if refused:
            mid, refusal = min(refused.items())
            raise PublishError(
                f"the broker refused the message to {topics.get(mid, '?')!r}: "
                f"{refusal} (reason code 0x{refusal.value:02X}); "
                + _delivered_before(acked, total),
                acknowledged=acked,
                total=total,
                reason_code=refusal.value,
            )
        if acked == total:
            return total
        if closed is not None:
            hint = ""
            if any(m.qos == 2 for m in messages):
                hint = " (some brokers, NATS for one, close it on a QoS 2 publish)"
            why = "" if closed == "Connection lost" else f" ({closed})"
            raise PublishError(
                f"the broker closed the connection{why}{hint}; "
                + _delivered_before(acked, total),
                acknowledged=acked,
                total=total,
            )
        raise PublishError(
            f"the broker did not acknowledge every message within {timeout:g}s; "
            + _delivered_before(acked, total),
            acknowledged=acked,
            total=total,
        )
    finally:
        client.disconnect()
        client.loop_stop()
