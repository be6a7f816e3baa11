"""Message history: the stored messages of each broker and its topic index.

Both tables keep the names they had in the brokers app (`Meta.db_table`).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _l

from brokers.models import Broker, BrokerScopedQuerySet
from mqttadmin.models import Product


class StoredMessage(models.Model):
    """One message of a broker's history.

    The payload is kept once: as `text` when it is valid UTF-8 without NUL (most
    payloads; searchable), otherwise as raw bytes in `data`. A payload larger than
    the broker's `history_payload_max_bytes` is kept cut to that size:
    `payload_truncated` is set and `payload_size` is the size received.
    """

    id = models.BigAutoField(primary_key=True)
    # No database-level foreign key and no index of its own: the constraint's
    # per-row check costs about a third of COPY's time at ingest rates, and the
    # composite indexes below all start with broker_id. Deletion still cascades
    # (Django deletes the rows), and no row can outlive its broker: ingest writes
    # each batch with its Topic rows in one transaction, and Topic's foreign key
    # fails the whole batch for a broker deleted meanwhile.
    broker = models.ForeignKey(
        Broker,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    topic = models.TextField()
    # NULL (not "") marks a binary payload kept in `data`.
    text = models.TextField(null=True, blank=True)  # noqa: DJ001
    data = models.BinaryField(null=True, blank=True)
    qos = models.PositiveSmallIntegerField(default=0)
    retain = models.BooleanField(default=False)
    properties = models.JSONField(null=True, blank=True)
    received_at = models.DateTimeField()
    # The size of the payload as received (bytes); NULL for rows stored before
    # sizes were kept (their payload is whole: its size is that of text or data).
    payload_size = models.PositiveBigIntegerField(null=True, blank=True)
    payload_truncated = models.BooleanField(default=False)

    objects = BrokerScopedQuerySet.as_manager()

    class Meta:
        db_table = "brokers_storedmessage"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["broker", "-id"], name="message_broker_newest"),
            models.Index(
                fields=["broker", "topic", "-id"], name="message_broker_topic"
            ),
            models.Index(fields=["broker", "received_at"], name="message_broker_time"),
        ]

    def __str__(self) -> str:
        return f"{self.topic} @ {self.received_at:%Y-%m-%d %H:%M:%S}"

    @property
    def payload(self) -> bytes:
        if self.text is not None:
            return self.text.encode("utf-8")
        return bytes(self.data or b"")


class Topic(models.Model):
    """A topic seen on a broker: counts and last value, kept once per ingest batch,
    with an operator's description and unit."""

    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="topics")
    topic = models.TextField()
    messages = models.PositiveBigIntegerField(default=0)
    # The last value, cut at LAST_PAYLOAD_BYTES (flagged), and the SHA-256 of the
    # whole payload: a retained message replayed on resubscribe is recognised by it.
    last_payload = models.BinaryField(null=True, blank=True)
    last_payload_truncated = models.BooleanField(default=False)
    last_payload_digest = models.BinaryField(null=True, blank=True, max_length=32)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    retained = models.BooleanField(default=False)
    description = models.CharField(_l("description"), max_length=500, blank=True)
    unit = models.CharField(_l("unit"), max_length=32, blank=True)

    objects = BrokerScopedQuerySet.as_manager()

    class Meta:
        db_table = "brokers_topic"
        ordering = ["broker", "topic"]
        constraints = [
            models.UniqueConstraint(fields=["broker", "topic"], name="topic_unique")
        ]

    def __str__(self) -> str:
        return self.topic

    @property
    def product(self) -> Product:
        return self.broker.product
