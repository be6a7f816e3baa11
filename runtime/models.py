"""What the runtime records of itself: who owns which broker's connection, which
runtime processes are alive, and the messages whose processing failed.

The tables were created by the brokers app and keep their names.
"""

from __future__ import annotations

from django.db import models

from brokers.models import Broker


class RuntimeLease(models.Model):
    """Which runtime process owns a broker's connection, until `expires_at`.

    Owners renew the lease every few seconds; a killed owner's lease runs out and
    another runtime takes the broker over.
    """

    broker = models.OneToOneField(
        Broker, on_delete=models.CASCADE, primary_key=True, related_name="lease"
    )
    owner = models.CharField(max_length=200)
    expires_at = models.DateTimeField(db_index=True)
    acquired_at = models.DateTimeField()

    class Meta:
        db_table = "brokers_runtimelease"

    def __str__(self) -> str:
        return f"{self.broker_id} owned by {self.owner}"


class RuntimeWorker(models.Model):
    """A runtime process that is alive, seen at its last lease renewal.

    Runtimes count the live ones to take only their fair share of the brokers,
    so brokers spread over workers instead of all going to whichever started
    first (and shared subscriptions over several connections split the work).
    """

    owner = models.CharField(max_length=200, unique=True)
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "brokers_runtimeworker"

    def __str__(self) -> str:
        return f"{self.owner} seen {self.seen_at:%Y-%m-%d %H:%M:%S}"


class DeadLetter(models.Model):
    """A message whose processing raised: kept with its error, the stream goes on."""

    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="+")
    topic = models.TextField()
    payload = models.BinaryField()
    qos = models.PositiveSmallIntegerField(default=0)
    error = models.TextField()
    received_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "brokers_deadletter"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.topic}: {self.error[:60]}"
