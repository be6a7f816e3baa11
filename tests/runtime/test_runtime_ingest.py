"""The runtime's ingest thread: batches, acks after storing, vanished brokers."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.utils import timezone

from brokers.models import Broker, BrokerStatus
from history.models import StoredMessage
from runtime import ingest
from runtime.batcher import IngestWorker
from runtime.message_queue import MessageQueue
from runtime.session import Delivery
from tests.factories import make_broker_subscribed_to_all

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sqlite_readers_do_not_wait"),
]


class RecordingSession:
    """Stands in for a BrokerSession: remembers what was acknowledged."""

    def __init__(self) -> None:
        self.acked: list[tuple[int, int]] = []

    def ack(self, mid: int, qos: int, generation: int) -> None:
        self.acked.append((mid, qos))


def _broker(name: str) -> Broker:
    return make_broker_subscribed_to_all(
        name=name, via_service=False, status="disconnected"
    )


def _delivery(
    broker_id: int, mid: int, session: RecordingSession, qos: int = 1
) -> Delivery:
    message = ingest.ReceivedMessage(
        broker_id=broker_id,
        topic=f"t/{mid}",
        payload=b"v",
        qos=qos,
        retain=False,
        received_at=timezone.now(),
        mid=mid,
    )
    # A stand-in session: Delivery only calls the acknowledging methods it has.
    return Delivery(message, session, 1)  # type: ignore[arg-type]


def _run(deliveries: list[Delivery], **options: Any) -> IngestWorker:
    messages: MessageQueue[Delivery] = MessageQueue(maxsize=max(len(deliveries), 1))
    messages.put_many(deliveries)
    finished = threading.Event()
    finished.set()  # drain what is there, then end
    worker = IngestWorker(messages, finished, **options)
    worker.start()
    worker.join(20)
    return worker


def test_batches_are_bounded_and_every_qos1_message_is_acked_once() -> None:
    broker = _broker("b")
    session = RecordingSession()
    sizes: list[int] = []

    def store(batch: list[ingest.ReceivedMessage]) -> None:
        sizes.append(len(batch))
        ingest.store_batch(batch)

    deliveries = [
        _delivery(broker.pk, mid, session, qos=mid % 2) for mid in range(1, 1201)
    ]
    worker = _run(deliveries, store=store, batch_window=1.0, batch_size=500)

    assert worker.stored == 1200
    assert max(sizes) <= 500 and sum(sizes) == 1200 and len(sizes) == 3
    assert sorted(session.acked) == [(mid, 1) for mid in range(1, 1201, 2)]
    assert BrokerStatus.objects.get(broker=broker).messages_received == 1200
    assert StoredMessage.objects.filter(broker=broker).count() == 1200


def test_messages_of_a_deleted_broker_are_dropped_and_the_rest_stored() -> None:
    kept, deleted = _broker("kept"), _broker("deleted")
    session = RecordingSession()
    deliveries = [
        _delivery(kept.pk, 1, session),
        _delivery(deleted.pk, 2, session),
        _delivery(kept.pk, 3, session),
    ]
    Broker.objects.filter(pk=deleted.pk).delete()

    worker = _run(deliveries)

    assert worker.stored == 2
    assert sorted(session.acked) == [(1, 1), (3, 1)]
    assert BrokerStatus.objects.get(broker=kept).messages_received == 2


def test_a_failing_store_does_not_ack() -> None:
    broker = _broker("b")
    session = RecordingSession()

    def broken(batch: list[ingest.ReceivedMessage]) -> None:
        raise ValueError("a bug")

    worker = _run([_delivery(broker.pk, 1, session)], store=broken)

    assert worker.stored == 0 and session.acked == []
