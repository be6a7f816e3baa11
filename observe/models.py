"""What the portal learns of a broker from its `$SYS` topics: statistics, a time
series, the clients its log announced and recent disconnects and refused logins.

The models came from the brokers app and kept their tables (`Meta.db_table`).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _l

from brokers.models import Broker, BrokerScopedQuerySet


class BrokerSysStats(models.Model):
    """The latest `$SYS/broker/...` values a broker published, and what its log told.

    Written by the runtime's ingest thread (observe.sys_stats, observe.client_log);
    `values` maps the topic below `$SYS/broker/` to its last payload as text.
    """

    broker = models.OneToOneField(
        Broker, on_delete=models.CASCADE, primary_key=True, related_name="sys_stats"
    )
    values = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)
    sampled_at = models.DateTimeField(null=True, blank=True)
    # The last line of the broker's log (`$SYS/broker/log/...`): it publishes it.
    log_seen_at = models.DateTimeField(null=True, blank=True)
    # When `publish/messages/dropped` last grew: the drop alert resolves once this
    # is long enough ago (observe.broker_drops).
    drops_seen_at = models.DateTimeField(null=True, blank=True)

    objects = BrokerScopedQuerySet.as_manager()

    class Meta:
        db_table = "brokers_brokersysstats"
        verbose_name = _l("broker $SYS statistics")
        verbose_name_plural = _l("broker $SYS statistics")

    def __str__(self) -> str:
        return f"$SYS of {self.broker_id}"


class BrokerStatsSample(models.Model):
    """One point of a broker's $SYS time series (messages/s, clients connected),
    taken every few seconds and kept for a bounded time."""

    id = models.BigAutoField(primary_key=True)
    broker = models.ForeignKey(
        Broker, on_delete=models.CASCADE, related_name="stats_samples"
    )
    sampled_at = models.DateTimeField()
    messages_received = models.PositiveBigIntegerField(null=True, blank=True)
    messages_sent = models.PositiveBigIntegerField(null=True, blank=True)
    # Rates between this sample and the previous one; None after a broker restart
    # (its counters start again) or for the first sample.
    messages_received_per_s = models.FloatField(null=True, blank=True)
    messages_sent_per_s = models.FloatField(null=True, blank=True)
    clients_connected = models.PositiveIntegerField(null=True, blank=True)

    objects = BrokerScopedQuerySet.as_manager()

    class Meta:
        db_table = "brokers_brokerstatssample"
        ordering = ["broker", "sampled_at"]
        indexes = [
            models.Index(fields=["broker", "sampled_at"], name="stats_sample_time")
        ]

    def __str__(self) -> str:
        return f"{self.broker_id} @ {self.sampled_at:%H:%M:%S}"


class ConnectedClient(models.Model):
    """A client connected to a broker, as the broker's log announced it.

    Only clients that connected while the runtime's session listened are known:
    `seen_at` older than the session's connect time means the row is stale.
    """

    broker = models.ForeignKey(
        Broker, on_delete=models.CASCADE, related_name="connected_clients"
    )
    client_id = models.CharField(max_length=65535)
    address = models.CharField(max_length=300, blank=True)
    username = models.CharField(max_length=65535, blank=True)
    protocol = models.CharField(max_length=8, blank=True)
    clean_session = models.BooleanField(null=True, blank=True)
    keepalive = models.PositiveIntegerField(null=True, blank=True)
    connected_at = models.DateTimeField()
    seen_at = models.DateTimeField()

    objects = BrokerScopedQuerySet.as_manager()

    class Meta:
        db_table = "brokers_connectedclient"
        ordering = ["broker", "client_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker", "client_id"], name="connected_client_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.client_id} on {self.broker_id}"


class ClientEventKind(models.TextChoices):
    DISCONNECT = "disconnect", _l("Disconnected")
    REFUSED = "refused", _l("Refused")


class ClientEvent(models.Model):
    """A recent disconnect or refused connection from a broker's log (a bounded
    number per broker and kind is kept)."""

    id = models.BigAutoField(primary_key=True)
    broker = models.ForeignKey(
        Broker, on_delete=models.CASCADE, related_name="client_events"
    )
    kind = models.CharField(max_length=10, choices=ClientEventKind.choices)
    client_id = models.CharField(max_length=65535, blank=True)
    address = models.CharField(max_length=300, blank=True)
    username = models.CharField(max_length=65535, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    at = models.DateTimeField()
    received_at = models.DateTimeField()

    objects = BrokerScopedQuerySet.as_manager()

    class Meta:
        db_table = "brokers_clientevent"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["broker", "kind", "-id"], name="client_event_newest"),
            models.Index(
                fields=["broker", "kind", "received_at"], name="client_event_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.client_id or self.address}"
