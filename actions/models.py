"""Action runs: the durable record of what one message owes one subscription."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _l

from brokers.models import Subscription


class ActionRunState(models.TextChoices):
    PENDING = "pending", _l("Pending")
    DONE = "done", _l("Done")
    FAILED = "failed", _l("Failed")


class ActionRun(models.Model):
    """The actions one message owes one subscription, written in the same
    transaction as ingest (so before the message is acknowledged).

    Workers run the actions and record which indexes are done, so a redelivered
    task skips them; webhooks carry `Idempotency-Key: <run id>-<action index>`.
    A worker claims a run before running it and renews the claim while it works
    (`claimed_by`, `claimed_until`): a run is executed by one worker at a time, and
    a killed worker's runs are free again once its claim runs out.
    """

    id = models.BigAutoField(primary_key=True)
    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="action_runs"
    )
    topic = models.TextField()
    payload = models.BinaryField()
    qos = models.PositiveSmallIntegerField(default=0)
    retain = models.BooleanField(default=False)
    received_at = models.DateTimeField()
    state = models.CharField(
        max_length=8, choices=ActionRunState.choices, default=ActionRunState.PENDING
    )
    done_indexes = models.JSONField(default=list)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=32, blank=True, editable=False)
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "brokers_actionrun"  # moved from brokers with its table
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["state", "created_at"], name="brokers_act_state_538181_idx"
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.subscription_id} ({self.state})"
