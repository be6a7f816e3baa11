"""The ingest thread: drains the message queue in batches into storage, then acks.

A batch closes at BATCH_SIZE messages or BATCH_WINDOW seconds after its first one.
QoS>0 messages are acknowledged only after `store_batch` returned (committed): a
crash before that leaves them unacknowledged for the broker to deliver again.
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
        store: Callable[[list[ReceivedMessage]], None] | None = None,
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
                    if self._write(batch):
                        self._ack(batch)
                        if self._live is not None:
                            # Committed only: the live feed never shows a message
                            # the history does not have (when it stores them).
                            self._live.offer(d.message for d in batch)
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
        while len(batch) < self._batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            batch += self._messages.get_many(
                self._batch_size - len(batch), timeout=min(remaining, 0.01)
            )
        return batch

    def _write(self, batch: list[Delivery]) -> bool:
        """Store the batch; True once it is committed."""
        delay = RETRY_MIN
        tries_left = RETRIES_WHEN_STOPPING
        messages = [delivery.message for delivery in batch]
        while True:
            close_old_connections()
            try:
                if self._store is not None:
                    self._store(messages)
                else:
                    # Looked up per call so tests can wrap the real one.
                    ingest.store_batch(messages, cache=self._subscriptions)
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
                    messages = [delivery.message for delivery in batch]
                    if not batch:
                        return False
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
                return False
            else:
                self.stored += len(batch)
                return True
            if self._finished.is_set():
                tries_left -= 1
                if tries_left <= 0:
                    logger.error("gave up storing %d messages at shutdown", len(batch))
                    return False
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
