"""The Runtime: reconciles desired state in the database with live sessions.

Level-triggered like a controller. Every tick (a nudge, a status event or the poll
interval) it takes leases, reads enabled brokers and subscriptions, and starts,
stops, restarts or re-subscribes sessions until they match. Status events from the
paho callbacks are written to BrokerStatus and broadcast from here, the only
thread besides the ingest thread that talks to the database.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import (
    DatabaseError,
    IntegrityError,
    close_old_connections,
    connection,
    transaction,
)
from django.utils import timezone

from brokers.choices import ConnectionState
from brokers.models import Broker, BrokerStatus, Subscription
from mqttadmin.audit import audit_record
from mqttadmin.frames import BROKER_STATUS
from mqttadmin.lib.crypto import SecretDecryptionError
from mqttadmin.lib.topics import parse_topic_filter
from mqttadmin.realtime import broker_group, group_send
from observe.sys_stats import SYS_FILTER, sys_subscriptions
from runtime.batcher import IngestWorker
from runtime.lease import LeaseKeeper
from runtime.live_feed import LiveFeed
from runtime.message_queue import MessageQueue
from runtime.nudge import NudgeListener
from runtime.session import (
    BrokerSession,
    Delivery,
    PortalSubscriptions,
    StatusEvent,
    fingerprint,
)

logger = logging.getLogger(__name__)

# Statistics: `$SYS/#` on the owner's session of the brokers that want it (the
# portal's own subscription, not one of the broker's topics).
PORTAL_SUBSCRIPTIONS = PortalSubscriptions(
    wanted=sys_subscriptions, filters=frozenset({SYS_FILTER})
)

# Sent in "broker.status" frames; nothing secret is in BrokerStatus.
FRAME_FIELDS = (
    "state",
    "last_connected_at",
    "last_disconnected_at",
    "messages_received",
    "subscribed_topics_count",
    "client_id",
    "connection_error",
    "connected_host",
    "owner",
)
STOP_TIMEOUT = 15.0
# Messages received and not yet stored, across the process's brokers: room for
# the network threads to keep reading while a few batches commit (~30 MB of small
# messages at most); when full, reading stops and brokers hold messages back.
QUEUE_SIZE = 50000
EVENT_QUEUE_SIZE = 10000
# Filters already checked against the broker's rules (filter -> error or "").
FILTER_CHECKS_MAX = 10000


class Runtime:
    """Keeps the connections of the brokers this process owns live.

    `owner` names the process in leases and statuses (host:pid:role). `stop()` closes
    every session and gives the leases back; `stop(release=False)` leaves the lease
    rows to expire, as a killed process would (for tests).
    """

    def __init__(
        self,
        owner: str,
        poll_interval: float = 1.0,
        lease_ttl: float = 15.0,
        lease_renew: float = 5.0,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.owner = owner
        self.poll_interval = poll_interval
        self.leases = LeaseKeeper(owner, ttl=lease_ttl, renew_every=lease_renew)
        self.sessions: dict[int, BrokerSession] = {}
        # This runtime's member of each broker's $share groups (no lease needed).
        self.shared_sessions: dict[int, BrokerSession] = {}
        self.messages: MessageQueue[Delivery] = MessageQueue(maxsize=queue_size)
        self.events: queue.Queue[StatusEvent] = queue.Queue(maxsize=EVENT_QUEUE_SIZE)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._sessions_closed = threading.Event()
        self._release = True
        self._thread: threading.Thread | None = None
        # One frame per broker per tick to the browsers (at most once).
        self.live = LiveFeed()
        self._ingest = IngestWorker(
            self.messages, self._sessions_closed, live=self.live
        )
        self._nudges = NudgeListener(self.wake)
        # Brokers whose row cannot be loaded, with the reason already reported.
        self._unusable: dict[int, str] = {}
        self._filter_checks: dict[str, str] = {}
        self.ticks = 0

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("a Runtime starts once")
        self.live.start()
        self._ingest.start()
        self._nudges.start()
        self._thread = threading.Thread(
            target=self._run, name="mqtt-runtime-reconcile", daemon=True
        )
        self._thread.start()
        logger.info("MQTT runtime %s started", self.owner)

    def stop(self, release: bool = True) -> None:
        """Close every session, then (with `release`) mark them disconnected and
        delete this runtime's leases so another runtime takes over at once."""
        if self._thread is None or self._stopping.is_set():
            return
        self._release = release
        self._stopping.set()
        self._wake.set()
        self._nudges.stop()
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            logger.warning("the reconcile thread did not stop in %ss", STOP_TIMEOUT)
            self._sessions_closed.set()
        self._ingest.join(STOP_TIMEOUT)
        self.live.stop()
        logger.info("MQTT runtime %s stopped", self.owner)

    def wake(self) -> None:
        """Reconcile now (called by nudges and by session callbacks)."""
        self._wake.set()

    @property
    def nudges_joined(self) -> threading.Event:
        return self._nudges.joined

    # --- the reconcile thread -----------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                close_old_connections()
                try:
                    self._apply_events()
                    self._reconcile()
                except DatabaseError as exc:
                    logger.warning("reconcile failed (database: %s); retrying", exc)
                    connection.close()
                    self._fence()
                except Exception:
                    logger.exception("reconcile failed; retrying")
                    self._fence()
                self.ticks += 1
                self._wake.wait(self.poll_interval)
        finally:
            try:
                self._shutdown()
            finally:
                self._sessions_closed.set()
                connection.close()

    def _reconcile(self) -> None:
        enabled = set(Broker.objects.filter(enabled=True).values_list("pk", flat=True))
        held = self.leases.sync(enabled)
        # Disabled or deleted: stop, and say so (nobody else owns it).
        self._close(set(self.sessions) - enabled, write_status=True)
        # Lease lost to another runtime: that one writes the status from now on.
        self._close(set(self.sessions) - held, write_status=False)
        desired, shared = self._desired_subscriptions(enabled)
        self._close_shared(set(self.shared_sessions) - set(shared))
        wanted = held | set(shared)
        if not wanted:
            return
        brokers = self._load_brokers(wanted)
        for broker_id, broker in brokers.items():
            try:
                if broker_id in held:
                    self._reconcile_one(broker, desired[broker_id])
                if broker_id in shared:
                    self._reconcile_shared(broker, shared[broker_id])
            except DatabaseError:
                raise
            except Exception:
                # One broker's trouble must not hold the others back.
                logger.exception("broker %s: reconcile failed", broker_id)
        self._apply_events()

    def _desired_subscriptions(
        self, enabled: set[int]
    ) -> tuple[dict[int, dict[str, int]], dict[int, dict[str, int]]]:
        """(unshared filters per broker, $share filters per broker) -> QoS.

        Unshared ones go to the lease owner's session. $share ones go to a shared
        session that every runtime opens, so the broker splits a group's messages
        over all workers; the owner's session does not join, or it would take a
        member's share through a connection that also carries everything else.
        """
        desired: dict[int, dict[str, int]] = defaultdict(dict)
        shared: dict[int, dict[str, int]] = defaultdict(dict)
        rows = Subscription.objects.filter(broker_id__in=enabled, enabled=True)
        for broker_id, topic_filter, shared_group, qos in rows.values_list(
            "broker_id", "topic_filter", "shared_group", "qos"
        ):
            target = desired
            if shared_group:
                topic_filter = f"$share/{shared_group}/{topic_filter}"
            problem = self._filter_problem(topic_filter)
            if problem:
                # A row saved before today's rules (or written around them): the
                # broker would drop the connection on it, so it is never sent.
                self._isolate(broker_id, {topic_filter: problem})
                continue
            if topic_filter.startswith("$share/"):
                target = shared
            # Two rows with one filter are one subscription, at the higher QoS.
            target[broker_id][topic_filter] = max(
                qos, target[broker_id].get(topic_filter, 0)
            )
        return desired, dict(shared)

    def _filter_problem(self, topic_filter: str) -> str:
        """Why the broker would not take `topic_filter` ("" when it would)."""
        problem = self._filter_checks.get(topic_filter)
        if problem is None:
            try:
                parse_topic_filter(topic_filter)
                problem = ""
            except ValidationError as exc:
                problem = "Invalid filter, never sent to the broker: " + " ".join(
                    exc.messages
                )
            if len(self._filter_checks) >= FILTER_CHECKS_MAX:
                self._filter_checks.clear()
            self._filter_checks[topic_filter] = problem
        return problem

    def _isolate(self, broker_id: int, refused: dict[str, str]) -> None:
        """Disable the broker's subscriptions behind refused filters, keeping why in
        `last_error`: the connection goes on with the others, and enabling one
        again (after fixing the broker's ACL, say) gives it another try."""
        rows = Subscription.objects.filter(broker_id=broker_id, enabled=True).only(
            "pk", "name", "topic_filter", "shared_group", "broker_id"
        )
        now = timezone.now()
        for row in rows:
            reason = refused.get(row.subscribe_filter)
            if reason is None:
                continue
            with transaction.atomic():
                updated = Subscription.objects.filter(pk=row.pk, enabled=True).update(
                    enabled=False,
                    last_error=reason[:2000],
                    refused_reason=reason[:2000],
                    granted_qos=None,
                    updated_at=now,
                )
                if updated:
                    audit_record(
                        actor=None,
                        action="subscription.refused",
                        target=row,
                        product=Broker.objects.get(pk=broker_id).product,
                        changes={
                            "enabled": [True, False],
                            "last_error": [None, reason],
                        },
                    )
            logger.warning(
                "broker %s: subscription %s disabled: %s", broker_id, row.pk, reason
            )

    def _apply_granted_qos(self, broker_id: int, granted: dict[str, int]) -> None:
        """Keep the QoS the broker granted (SUBACK) on the enabled subscriptions
        behind each filter; rows already holding it are not written again."""
        rows = Subscription.objects.filter(broker_id=broker_id, enabled=True).only(
            "pk", "topic_filter", "shared_group", "granted_qos"
        )
        stale: dict[int, list[int]] = defaultdict(list)
        for row in rows:
            qos = granted.get(row.subscribe_filter)
            if qos is not None and row.granted_qos != qos:
                stale[qos].append(row.pk)
        for qos, pks in stale.items():
            # Still enabled: a subscription disabled since keeps no granted QoS.
            Subscription.objects.filter(pk__in=pks, enabled=True).update(
                granted_qos=qos, refused_reason=""
            )

    def _reconcile_shared(self, broker: Broker, subscriptions: dict[str, int]) -> None:
        session = self.shared_sessions.get(broker.pk)
        if session is not None:
            if (
                session.fingerprint == fingerprint(broker)
                and session.reconnect_marker == broker.reconnect_requested_at
            ):
                session.set_subscriptions(subscriptions)
                return
            self._close_shared({broker.pk})
        session = self._new_session(broker, subscriptions, shared=True)
        session.start()
        self.shared_sessions[broker.pk] = session

    def _new_session(
        self, broker: Broker, subscriptions: dict[str, int], shared: bool = False
    ) -> BrokerSession:
        return BrokerSession(
            broker,
            subscriptions,
            owner=self.owner,
            messages=self.messages,
            events=self.events,
            wake=self.wake,
            shared=shared,
            portal=PORTAL_SUBSCRIPTIONS,
        )

    def _close_shared(self, broker_ids: set[int]) -> None:
        sessions = [
            self.shared_sessions.pop(pk)
            for pk in broker_ids
            if pk in self.shared_sessions
        ]
        for session in sessions:
            session.begin_close()
        for session in sessions:
            session.wait_closed()

    def _load_brokers(self, ids: set[int]) -> dict[int, Broker]:
        """The enabled brokers among `ids`; one whose stored secret no longer
        decrypts is reported (state "error") and left out, not the others."""
        query = Broker.objects.filter(pk__in=ids, enabled=True)
        try:
            brokers = {broker.pk: broker for broker in query}
        except SecretDecryptionError:
            brokers = {}
            for broker_id in sorted(ids):
                try:
                    broker = query.filter(pk=broker_id).first()
                except SecretDecryptionError as exc:
                    self._report_unusable(broker_id, str(exc))
                    continue
                if broker is not None:
                    brokers[broker_id] = broker
        for broker_id in brokers:
            self._unusable.pop(broker_id, None)
        return brokers

    def _report_unusable(self, broker_id: int, reason: str) -> None:
        if self._unusable.get(broker_id) == reason:
            return  # said once; the row has not changed since
        self._write_status(
            broker_id,
            {
                "state": ConnectionState.ERROR,
                "connection_error": reason,
                "owner": self.owner,
            },
        )
        self._unusable[broker_id] = reason

    def _reconcile_one(self, broker: Broker, subscriptions: dict[str, int]) -> None:
        session = self.sessions.get(broker.pk)
        restarted = False
        if session is not None:
            restart = ""
            if session.fingerprint != fingerprint(broker):
                restart = "its connection settings changed"
            elif session.reconnect_marker != broker.reconnect_requested_at:
                restart = "a reconnect was requested"
            if not restart:
                session.set_subscriptions(subscriptions)
                return
            logger.info("broker %s: reconnecting, %s", broker.pk, restart)
            self._close({broker.pk}, write_status=False)
            restarted = True
        session = self._new_session(broker, subscriptions)
        # Started before the status write: a failing write must not leave a
        # session registered but never started.
        session.start()
        self.sessions[broker.pk] = session
        fields: dict[str, Any] = {
            "state": ConnectionState.CONNECTING,
            "owner": self.owner,
            "client_id": broker.client_id,
            "connection_error": "",
            "connected_host": "",
            "subscribed_topics_count": 0,
        }
        if restarted:
            fields["last_disconnected_at"] = timezone.now()
        self._write_status(broker.pk, fields)

    def _close(self, broker_ids: set[int], *, write_status: bool) -> None:
        """Close sessions (all disconnect first, then join: one wait, not N)."""
        sessions = [self.sessions.pop(pk) for pk in broker_ids if pk in self.sessions]
        for session in sessions:
            session.begin_close()
        for session in sessions:
            session.wait_closed()
        if write_status:
            now = timezone.now()
            for session in sessions:
                self._write_status(
                    session.broker_id,
                    {
                        "state": ConnectionState.DISCONNECTED,
                        "last_disconnected_at": now,
                        "owner": "",
                        "connected_host": "",
                        "connection_error": "",
                        "subscribed_topics_count": 0,
                    },
                )

    def _fence(self) -> None:
        """Without the database our leases may run out unseen: once they certainly
        could have, close everything so two runtimes never share a broker."""
        # One renew interval early: the others see the rows expire by their clock.
        deadline = self.leases.valid_until - self.leases.renew_every
        if self.sessions and time.monotonic() > deadline:
            logger.warning("%s cannot renew its leases; closing sessions", self.owner)
            self._close(set(self.sessions), write_status=False)
            self.leases.drop(set(self.leases.held))

    def _shutdown(self) -> None:
        if self._release:
            try:
                self._apply_events()
            except DatabaseError:
                logger.warning("could not record the last events", exc_info=True)
        self._close_shared(set(self.shared_sessions))
        ids = set(self.sessions)
        try:
            self._close(ids, write_status=self._release)
        except DatabaseError:
            logger.warning("could not record the final status", exc_info=True)
        finally:
            # Anything that slipped through _close (it raised midway) still closes.
            for session in list(self.sessions.values()):
                session.close()
            self.sessions.clear()
        if self._release:
            try:
                self.leases.release()
                self.leases.retire()
            except DatabaseError:
                logger.warning("could not release leases; they expire", exc_info=True)

    # --- status -------------------------------------------------------------------

    def _apply_events(self) -> None:
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            session = event.session
            fields = event.fields
            # SUBACK answers go to the subscription rows, not to the broker's status.
            answers: dict[str, Callable[[int, Any], None]] = {
                "refused": self._isolate,
                "granted_qos": self._apply_granted_qos,
            }
            if answers.keys() & fields.keys():
                try:
                    for name, apply in answers.items():
                        if name in fields:
                            apply(session.broker_id, fields[name])
                except Exception:
                    self._requeue(event)
                    raise
                fields = {k: v for k, v in fields.items() if k not in answers}
                if not fields:
                    continue
            if "subscribed_topics_count" in fields:
                # The broker's count covers the owner's and this runtime's shared
                # session, read now rather than as each callback saw it.
                fields = {
                    **fields,
                    "subscribed_topics_count": self._subscribed_count(
                        session.broker_id
                    ),
                }
            if session.shared:
                # The owner reports the broker's status; a member's trouble is logged.
                if fields.get("connection_error") and not session.closing:
                    logger.warning(
                        "broker %s: shared session %s: %s",
                        session.broker_id,
                        session.client_id,
                        fields["connection_error"],
                    )
                if session.broker_id not in self.sessions or session.closing:
                    continue
                fields = {
                    k: v for k, v in fields.items() if k == "subscribed_topics_count"
                }
                if not fields:
                    continue
            elif self.sessions.get(session.broker_id) is not session or session.closing:
                continue  # from a session closed since: its successor reports
            try:
                self._write_status(session.broker_id, fields)
            except Exception:
                # Keep the event for the next tick rather than lose a state change.
                self._requeue(event)
                raise

    def _subscribed_count(self, broker_id: int) -> int:
        sessions = (self.sessions.get(broker_id), self.shared_sessions.get(broker_id))
        return sum(
            len(session.subscribed - PORTAL_SUBSCRIPTIONS.filters)
            for session in sessions
            if session is not None and session.connected
        )

    def _requeue(self, event: StatusEvent) -> None:
        pending = [event]
        while True:
            try:
                pending.append(self.events.get_nowait())
            except queue.Empty:
                break
        for item in pending:
            try:
                self.events.put_nowait(item)
            except queue.Full:
                break

    def _write_status(self, broker_id: int, fields: dict[str, Any]) -> None:
        """Set these fields (never counters: the ingest thread increments those)
        and broadcast the row to the broker's group."""
        fields = {**fields, "updated_at": timezone.now()}
        updated = BrokerStatus.objects.filter(broker_id=broker_id).update(**fields)
        if not updated:
            try:
                with transaction.atomic():
                    BrokerStatus.objects.create(broker_id=broker_id, **fields)
            except IntegrityError:
                # Created meanwhile, or the broker is gone.
                if not BrokerStatus.objects.filter(broker_id=broker_id).update(
                    **fields
                ):
                    return
        row = (
            BrokerStatus.objects.filter(broker_id=broker_id)
            .values(*FRAME_FIELDS)
            .first()
        )
        if row is None:
            return
        frame: dict[str, Any] = {"type": BROKER_STATUS, "broker_id": broker_id}
        for name, value in row.items():
            frame[name] = value.isoformat() if hasattr(value, "isoformat") else value
        group_send(broker_group(broker_id), frame)
