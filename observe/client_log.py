"""Connected clients, disconnects and refused logins, from a broker's own log.

Mosquitto 2.0 has no API that lists its clients. With `log_dest topic` it publishes
its log lines on `$SYS/broker/log/<level>`; the runtime routes them here (see
observe.sys_stats). A client is listed from its "New client connected" line until a
line says it left; clients that connected before the portal's session started are
unknown, so the list is complete only from that moment (`since`).

Lines, as Mosquitto 2.0.11 writes them (2.1 adds `[<address>]` and a reason after
a colon to the disconnect lines):
  1795344906: New connection from 127.0.0.1:56854 on port 1883.
  1795344906: New client connected from 127.0.0.1:56854 as c31 (p1, c1, k60, u'alice').
  1795344907: Client c31 disconnected.
  1795344909: Client raw1 closed its connection.
  1795344889: Client <unknown> disconnected, not authorised.
  1795345248: Client dave-1 been disconnected by administrative action.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
import threading
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

from acl import services as acl_services
from acl.choices import Management
from acl.models import MqttUser
from alerts.models import Alert, AlertState, Severity, alert_key
from alerts.services import alert_open, alert_resolve
from brokers.models import Broker, BrokerStatus
from mqttadmin.frames import BROKER_CLIENTS, frame
from mqttadmin.lib.units import format_duration
from mqttadmin.realtime import broadcast_on_commit, broker_group
from observe.models import ClientEvent, ClientEventKind, ConnectedClient
from observe.selectors import collects_sys_stats

logger = logging.getLogger(__name__)

LOG_PREFIX = "$SYS/broker/log/"
# How many recent disconnects and refused logins are kept per broker (each).
KEEP_EVENTS = 100
# Refused logins: this many within the window open an alert (settings override).
DEFAULT_REFUSED_BURST = 5
DEFAULT_REFUSED_WINDOW_S = 60
# Addresses of connections not yet identified, per broker: Mosquitto 2.0 names a
# refused client "<unknown>", the "New connection from" line before it has the
# address.
PENDING_ADDRESSES = 50
UNKNOWN_CLIENT = "<unknown>"

# "p" in the connect line: Mosquitto 2.0 prints its protocol enum (1 = 3.1,
# 2 = 3.1.1, 5 = 5), 2.1 the protocol level (3 = 3.1, 4 = 3.1.1, 5 = 5).
PROTOCOLS = {1: "3.1", 2: "3.1.1", 3: "3.1", 4: "3.1.1", 5: "5"}

LOG_HINT = _l(
    "The broker does not publish its log. Add `log_dest topic` and `log_type all` "
    "(or at least notice) to its configuration, and let the portal's MQTT user "
    "read $SYS/broker/log/#."
)

_TIMESTAMP = re.compile(r"^(?P<ts>\d{9,12}): (?P<text>.*)$", re.DOTALL)
_NEW_CONNECTION = re.compile(r"^New connection from (?P<address>\S+) on port \d+\.$")
_CONNECTED = re.compile(
    r"^New client connected from (?P<address>\S+) as (?P<client_id>.+) "
    r"\(p(?P<protocol>\d+), c(?P<clean>[01]), k(?P<keepalive>\d+)"
    r"(?:, u'(?P<username>.*)')?\)\.$",
    re.DOTALL,
)
_CLIENT = re.compile(
    r"^Client (?P<client_id>.+?)(?: \[(?P<address>[^\]]+)\])? "
    r"(?P<rest>(?:disconnected|closed its connection|has exceeded timeout|"
    r"already connected|(?:has )?been disconnected).*)$",
    re.DOTALL,
)
_SOCKET_ERROR = re.compile(
    r"^Socket error on client (?P<client_id>.+), disconnecting\.$"
)
_REFUSAL = re.compile(r"not authori[sz]ed|bad user ?name or password", re.IGNORECASE)


@dataclass(frozen=True)
class LogEvent:
    """What one log line says about a client."""

    kind: str  # "connecting", "connected", "disconnect" or "refused"
    at: datetime.datetime | None = None
    client_id: str = ""
    address: str = ""
    username: str = ""
    protocol: str = ""
    clean_session: bool | None = None
    keepalive: int | None = None
    reason: str = ""


def _disconnect_reason(rest: str) -> tuple[str, str]:
    """(kind, reason) of the text after `Client <id>`."""
    rest = rest.rstrip(".").strip()
    if rest.startswith("closed its connection"):
        return ClientEventKind.DISCONNECT, "closed its connection"
    if rest.startswith("has exceeded timeout"):
        return ClientEventKind.DISCONNECT, "keepalive timeout"
    if rest.startswith("already connected"):
        return ClientEventKind.DISCONNECT, "taken over by a new connection"
    if "been disconnected" in rest:
        # 2.0.11 writes "Client x been disconnected by administrative action."
        # (a kick, e.g. by the Dynamic Security plugin).
        return ClientEventKind.DISCONNECT, rest.split("been ", 1)[1]
    reason = rest.removeprefix("disconnected").lstrip(",:").strip()
    if _REFUSAL.search(reason):
        return ClientEventKind.REFUSED, reason
    return ClientEventKind.DISCONNECT, reason or "disconnected"


def parse_log_line(payload: str) -> LogEvent | None:
    """The client event of one `$SYS/broker/log/...` payload; None for other lines."""
    text = payload.strip()
    at = None
    stamped = _TIMESTAMP.match(text)
    if stamped:
        at = datetime.datetime.fromtimestamp(int(stamped["ts"]), tz=datetime.UTC)
        text = stamped["text"]
    if match := _CONNECTED.match(text):
        level = int(match["protocol"])
        return LogEvent(
            kind="connected",
            at=at,
            client_id=match["client_id"],
            address=match["address"],
            username=match["username"] or "",
            protocol=PROTOCOLS.get(level, f"p{level}"),
            clean_session=match["clean"] == "1",
            keepalive=int(match["keepalive"]),
        )
    if match := _NEW_CONNECTION.match(text):
        return LogEvent(kind="connecting", at=at, address=match["address"])
    if match := _CLIENT.match(text):
        kind, reason = _disconnect_reason(match["rest"])
        client_id = match["client_id"]
        return LogEvent(
            kind=kind,
            at=at,
            client_id="" if client_id == UNKNOWN_CLIENT else client_id,
            address=match["address"] or "",
            reason=reason,
        )
    if match := _SOCKET_ERROR.match(text):
        return LogEvent(
            kind=ClientEventKind.DISCONNECT,
            at=at,
            client_id=match["client_id"],
            reason="socket error",
        )
    return None


# --- Recording (the runtime's ingest thread) ----------------------------------------

_pending_lock = threading.Lock()
_pending: dict[int, deque[str]] = defaultdict(lambda: deque(maxlen=PENDING_ADDRESSES))


def _take_pending(broker_id: int, address: str = "") -> str:
    """The address of a connection that got its verdict: `address` when given
    (and forgotten), else the newest one still waiting."""
    with _pending_lock:
        pending = _pending[broker_id]
        if address:
            with contextlib.suppress(ValueError):
                pending.remove(address)
            return address
        return pending.pop() if pending else ""


def refused_burst() -> tuple[int, datetime.timedelta]:
    """(count, window) of refused logins that open an alert."""
    count = int(getattr(settings, "BROKER_REFUSED_LOGIN_BURST", DEFAULT_REFUSED_BURST))
    seconds = float(
        getattr(settings, "BROKER_REFUSED_LOGIN_WINDOW_S", DEFAULT_REFUSED_WINDOW_S)
    )
    return max(1, count), datetime.timedelta(seconds=seconds)


def refused_rule_key(broker_id: int) -> str:
    return alert_key("broker", broker_id, "refused-logins")


def session_since(broker_id: int) -> datetime.datetime | None:
    """When the runtime's current connection to the broker started: the connected
    list holds only what the log said since then."""
    return (
        BrokerStatus.objects.filter(broker_id=broker_id)
        .values_list("last_connected_at", flat=True)
        .first()
    )


def record_log(broker_id: int, lines: Iterable[tuple[datetime.datetime, str]]) -> bool:
    """Apply a broker's log lines (received_at, payload) in order. True when some
    line was a log line at all (the broker publishes its log)."""
    since = session_since(broker_id)
    if since is not None:
        # The session reconnected: what was listed before may have left unseen.
        ConnectedClient.objects.filter(broker_id=broker_id, seen_at__lt=since).delete()
    events: list[ClientEvent] = []
    seen_log = False
    connected_changed = False
    for received_at, payload in lines:
        seen_log = True
        event = parse_log_line(payload)
        if event is None:
            continue
        at = event.at or received_at
        if event.kind == "connecting":
            with _pending_lock:
                _pending[broker_id].append(event.address)
        elif event.kind == "connected":
            _take_pending(broker_id, event.address)
            connected_changed = True
            ConnectedClient.objects.update_or_create(
                broker_id=broker_id,
                client_id=event.client_id,
                defaults={
                    "address": event.address,
                    "username": event.username,
                    "protocol": event.protocol,
                    "clean_session": event.clean_session,
                    "keepalive": event.keepalive,
                    "connected_at": at,
                    "seen_at": received_at,
                },
            )
        elif event.kind == ClientEventKind.DISCONNECT:
            if not event.client_id:
                _take_pending(broker_id, event.address)
                continue  # a connection that never became a client
            gone = ConnectedClient.objects.filter(
                broker_id=broker_id, client_id=event.client_id
            ).first()
            if gone is not None:
                gone.delete()
            events.append(
                ClientEvent(
                    broker_id=broker_id,
                    kind=ClientEventKind.DISCONNECT,
                    client_id=event.client_id,
                    address=event.address or (gone.address if gone else ""),
                    username=gone.username if gone else "",
                    reason=event.reason[:300],
                    at=at,
                    received_at=received_at,
                )
            )
        else:
            events.append(
                ClientEvent(
                    broker_id=broker_id,
                    kind=ClientEventKind.REFUSED,
                    client_id=event.client_id,
                    address=_take_pending(broker_id, event.address),
                    reason=event.reason[:300],
                    at=at,
                    received_at=received_at,
                )
            )
    if events:
        ClientEvent.objects.bulk_create(events)
        for kind in {event.kind for event in events}:
            _keep_newest(broker_id, kind)
    if events or connected_changed:
        # Open Clients tabs re-render their table now (best effort; the tab's
        # slow poll catches a lost push).
        broadcast_on_commit(broker_group(broker_id), frame(BROKER_CLIENTS))
    return seen_log


def _keep_newest(broker_id: int, kind: str) -> None:
    rows = ClientEvent.objects.filter(broker_id=broker_id, kind=kind)
    cut = list(rows.order_by("-id").values_list("id", flat=True)[KEEP_EVENTS:][:1])
    if cut:
        rows.filter(id__lte=cut[0]).delete()


def check_refused_logins(
    broker_id: int, now: datetime.datetime | None = None
) -> Alert | None:
    """Open the broker's refused-logins alert after a burst; resolve it once the
    window has been quiet. Returns the open alert, if any."""
    now = now or timezone.now()
    burst, window = refused_burst()
    recent = ClientEvent.objects.filter(
        broker_id=broker_id,
        kind=ClientEventKind.REFUSED,
        received_at__gte=now - window,
    ).count()
    key = refused_rule_key(broker_id)
    current = Alert.objects.filter(rule_key=key, state=AlertState.OPEN).first()
    if recent >= burst and current is None:
        broker = Broker.objects.filter(pk=broker_id).only("name", "product_id").first()
        if broker is None:
            return None
        current = alert_open(
            product_id=broker.product_id,
            key=key,
            subject=broker.name,
            severity=Severity.WARNING,
            message=_("%(count)d refused logins on %(broker)s within %(window)s")
            % {
                "count": recent,
                "broker": broker.name,
                "window": format_duration(window),
            },
            value=recent,
            threshold=burst,
        )
        if current is None:  # another writer opened it first
            current = Alert.objects.filter(rule_key=key, state=AlertState.OPEN).first()
    elif recent == 0 and current is not None:
        alert_resolve(current, at=now)
        current = None
    return current


# --- Reading ---------------------------------------------------------------------


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def clients_of(broker: Broker) -> dict[str, Any]:
    """What the clients API and the Clients tab show of a broker."""
    stats = getattr(broker, "sys_stats", None)
    log_available = bool(stats and stats.log_seen_at)
    status = BrokerStatus.objects.filter(broker=broker).first()
    connected_now = status is not None and status.connected
    since = status.last_connected_at if connected_now and status else None
    collecting = collects_sys_stats(broker)
    if not collecting:
        hint = _(
            "The portal does not read this broker's $SYS topics: turn on “collect $SYS "
            "statistics and connected clients” in the broker's settings."
        )
    elif not connected_now:
        hint = _(
            "The portal is not connected to this broker: its clients are unknown "
            "until it is."
        )
    elif not log_available:
        hint = str(LOG_HINT)
    else:
        hint = _(
            "Listed from the broker's log since the portal connected; clients "
            "connected before that appear once they reconnect."
        )
    connected: list[dict[str, Any]] = []
    if collecting and connected_now and since is not None:
        rows = ConnectedClient.objects.filter(broker=broker, seen_at__gte=since)
        connected = [
            {
                "client_id": row.client_id,
                "address": row.address,
                "username": row.username or None,
                "protocol": row.protocol,
                "clean_session": row.clean_session,
                "keepalive": row.keepalive,
                "connected_at": _iso(row.connected_at),
            }
            for row in rows.order_by("client_id")
        ]

    def events(kind: str) -> list[dict[str, Any]]:
        rows = ClientEvent.objects.filter(broker=broker, kind=kind).order_by("-id")
        return [
            {
                "client_id": row.client_id or None,
                "address": row.address or None,
                "username": row.username or None,
                "reason": row.reason,
                "at": _iso(row.at),
            }
            for row in rows[:KEEP_EVENTS]
        ]

    return {
        "connected": connected,
        "recent_disconnects": events(ClientEventKind.DISCONNECT),
        "refused": events(ClientEventKind.REFUSED),
        "log_available": log_available,
        "collecting": collecting,
        "since": _iso(since),
        "hint": hint,
    }


# --- Disabling a client's MQTT user ---------------------------------------------------


def connected_client_disable(*, actor: Any, broker: Broker, client_id: str) -> Any:
    """Disable the MQTT user a connected client logged in with. The Dynamic Security
    plugin kicks its connections (disableClient); the change is audited by the acl
    service. Returns (user, SyncResult); ValidationError names what is missing."""
    if not client_id:
        raise ValidationError({"client_id": _("This field is required.")})
    managed = acl_services.managed_of(broker)
    if managed.management != Management.DYNSEC:
        raise ValidationError(
            {
                "client_id": _(
                    "Disabling a client needs a broker managed with the Dynamic "
                    "Security plugin."
                )
            }
        )
    since = session_since(broker.pk)
    client = ConnectedClient.objects.filter(broker=broker, client_id=client_id)
    if since is not None:
        client = client.filter(seen_at__gte=since)
    row = client.first()
    if row is None:
        raise ValidationError(
            {"client_id": _("No client with this id is connected to this broker.")}
        )
    if not row.username:
        raise ValidationError(
            {
                "client_id": _(
                    "This client connected without a username: no user to disable."
                )
            }
        )
    user = MqttUser.objects.filter(broker=broker, username=row.username).first()
    if user is None:
        raise ValidationError(
            {
                "client_id": _("%s is not an MQTT user the portal manages.")
                % row.username
            }
        )
    return acl_services.mqtt_user_update(actor=actor, user=user, enabled=False)
