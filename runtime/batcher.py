"""The ingest thread: drains the message queue in batches into storage, then acks.

A batch closes at BATCH_SIZE messages, BATCH_WINDOW seconds after its first one, or
as soon as the stream pauses for STALL_GAP while the batch holds QoS>0 messages.
QoS>0 messages are acknowledged only after `store_batch` returned (committed): a
crash before that leaves them unacknowledged for the broker to deliver again.

Why the stall rule: a broker sends at most its in-flight window of unacknowledged
QoS>0 messages (Mosquitto's `max_inflight_messages`, 20 by default, for MQTT 3.1.1
clients) and queues the rest, dropping what overflows `max_queued_messages`. A
batch that waited out its window for messages the broker will not send until it
gets acks would hold the window still for BATCH_WINDOW per round; a pause in the
stream is the sign that the window is full, so the batch commits and acks at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import DatabaseError, IntegrityError, close_old_connections, connection

from brokers.models import Broker
from mqttadmin.pipeline import ReceivedMessage
from runtime import ingest
from runtime.live_feed import LiveFeed
from runtime.message_queue import MessageQueue
from runtime.session import Delivery

logger = logging.getLogger(__name__)

# Large enough that a busy stream pays one commit per few thousand messages;
# the window bounds latency when the stream is slow.
BATCH_SIZE = 5000
BATCH_WINDOW = 0.025
# A pause this long with unacknowledged messages in hand closes the batch: far
# longer than the gap between packets of one burst, far shorter than the window.
STALL_GAP = 0.002
IDLE_WAIT = 0.2
RETRY_MIN, RETRY_MAX = 0.5, 10.0
# Once the runtime is stopping, a failing database gets this many more tries.
RETRIES_WHEN_STOPPING = 3


def _of_existing_brokers(batch: list[Delivery]) -> list[Delivery]:
    ids = {delivery.message.broker_id for delivery in batch}
    existing = set(Broker.objects.filter(pk__in=ids).values_list("pk", flat=True))
    return [d for d in batch if d.message.broker_id in existing]


class IngestWorker:
    """Runs until `finished` is set (no session can add messages any more) and the
    queue is empty."""

    def __init__(
        self,
        messages: MessageQueue[Delivery],
        finished: threading.Event,
        store: Callable[[list[ReceivedMessage]], list[ReceivedMessage] | None]
        | None = None,
        batch_size: int = BATCH_SIZE,
        batch_window: float = BATCH_WINDOW,
        live: LiveFeed | None = None,
    ) -> None:
        self._messages = messages
        self._live = live
        self._finished = finished
        self._store = store
        # Subscriptions for matching, re-read about once a second, not per batch.
        self._subscriptions = ingest.SubscriptionCache()
        self._batch_size = batch_size
        self._batch_window = batch_window
        self._thread: threading.Thread | None = None
        self.stored = 0

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="mqtt-runtime-ingest", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the ingest thread did not stop in %ss", timeout)

    def _run(self) -> None:
        try:
            while True:
                batch = self._collect()
                if batch:
                    recorded = self._write(batch)
                    if recorded is not None:
                        self._ack(batch)
                        if self._live is not None:
                            # Committed only: the live feed never shows a message
                            # the history does not have (when it stores them).
                            self._live.offer(recorded)
                elif self._finished.is_set() and self._messages.empty():
                    return
        except Exception:
            logger.exception("the ingest thread stopped on an error")
        finally:
            connection.close()

    def _collect(self) -> list[Delivery]:
        batch = self._messages.get_many(self._batch_size, timeout=IDLE_WAIT)
        if not batch:
            return batch
        deadline = time.monotonic() + self._batch_window
        awaits_ack = any(d.message.qos for d in batch)
        while len(batch) < self._batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = self._messages.get_many(
                self._batch_size - len(batch),
                timeout=min(remaining, STALL_GAP if awaits_ack else 0.01),
            )
            if not more:
                if awaits_ack:
                    break  # the broker's window is likely full: commit and ack
                continue
            awaits_ack = awaits_ack or any(d.message.qos for d in more)
            batch += more
        return batch

    def _write(self, batch: list[Delivery]) -> list[ReceivedMessage] | None:
        """Store the batch; once it is committed, the messages recorded (copies
        and replays left out), else None."""
        delay = RETRY_MIN
        tries_left = RETRIES_WHEN_STOPPING
        messages = [d.message for d in batch if not d.copy]
        while True:
            close_old_connections()
            try:
                if self._store is not None:
                    recorded = self._store(messages)
                else:
                    # Looked up per call so tests can wrap the real one.
                    recorded = ingest.store_batch(messages, cache=self._subscriptions)
            except IntegrityError:
                # Typically a broker deleted while its messages waited here: they
                # have nowhere to go. Anything else is retried like other errors.
                try:
                    kept = _of_existing_brokers(batch)
                except DatabaseError:
                    kept = batch
                if len(kept) < len(batch):
                    logger.info(
                        "dropped %d messages of deleted brokers", len(batch) - len(kept)
                    )
                    batch[:] = kept
                    messages = [d.message for d in batch if not d.copy]
                    if not batch:
                        return None
                    continue
                logger.warning("storing %d messages failed", len(batch), exc_info=True)
            except DatabaseError:
                # Keep the batch and try again: the queue fills meanwhile and the
                # callbacks hold the brokers back (backpressure, nothing lost).
                logger.warning(
                    "storing %d messages failed; retrying in %.1fs",
                    len(batch),
                    delay,
                    exc_info=True,
                )
                connection.close()
            except Exception:
                # store_batch dead-letters poison itself; anything else is a bug.
                # Unacknowledged, the broker delivers the messages again later.
                logger.exception("storing %d messages failed; dropped", len(batch))
                return None
            else:
                self.stored += len(messages)
                return messages if recorded is None else recorded
            if self._finished.is_set():
                tries_left -= 1
                if tries_left <= 0:
                    logger.error("gave up storing %d messages at shutdown", len(batch))
                    return None
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _ack(self, batch: list[Delivery]) -> None:
        for delivery in batch:
            message = delivery.message
            if message.qos > 0:
                try:
                    delivery.session.ack(message.mid, message.qos, delivery.generation)
                except Exception:
                    logger.exception("ack of message %s failed", message.mid)
