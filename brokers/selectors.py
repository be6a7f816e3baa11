"""Reads that span the brokers app's models, always scoped to what a user may see."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from django.db import models

from brokers.models import Broker, BrokerStatus, PublishTemplate, Subscription
from mqttadmin.listing import Listing
from mqttadmin.models import Product


@dataclass(frozen=True)
class BrokerWithStatus:
    """A broker and its live status, as the list, the cards and the detail show it."""

    broker: Broker
    status: BrokerStatus


def status_of(broker: Broker) -> BrokerStatus:
    """The broker's status row, or an unsaved "disconnected" one when the runtime has
    not written it yet (reads must not create rows)."""
    try:
        return broker.status
    except BrokerStatus.DoesNotExist:
        return BrokerStatus(broker=broker, client_id=broker.client_id)


def brokers_for(user: Any, product: Product | None) -> models.QuerySet[Broker]:
    """Brokers of `product` that `user` can see, with status and product loaded."""
    if product is None:
        return Broker.objects.none()
    return (
        Broker.objects.for_user(user)
        .filter(product=product)
        .select_related("status", "product")
        .order_by("name")
    )


def brokers_with_status(
    user: Any, product: Product | None, listing: Listing | None = None
) -> list[BrokerWithStatus]:
    """By name, or as the list's sort and search ask."""
    brokers = brokers_for(user, product)
    if listing is not None:
        brokers = listing.apply(brokers)
    return [BrokerWithStatus(broker, status_of(broker)) for broker in brokers]


def subscriptions_of(broker: Broker) -> models.QuerySet[Subscription]:
    return broker.subscriptions.order_by("name")


def publish_templates_of(broker: Broker) -> models.QuerySet[PublishTemplate]:
    return broker.publish_templates.order_by("name")


# --- Payloads as the pages show them ------------------------------------------

PREVIEW_CHARS = 2000
SHORT_PREVIEW_CHARS = 80
# A compact message row shows this much of a payload on its one line.
LINE_CHARS = 160
HEX_HEAD_BYTES = 16


@dataclass(frozen=True)
class PayloadPreview:
    """A payload as it fits: `kind` is json (pretty), text, or base64 (binary)."""

    kind: str
    text: str
    size: int
    truncated: bool
    # History kept only a prefix of the payload (the broker's stored-payload cap).
    stored_truncated: bool = False

    @property
    def is_binary(self) -> bool:
        return self.kind == "base64"

    @property
    def line(self) -> str:
        """The text on one line for a compact message row: each run of
        whitespace (line breaks of pretty JSON included) shows as one space. The
        row's expansion shows the exact text; this is only a preview."""
        line = " ".join(self.text[: LINE_CHARS * 2].split())
        if len(line) > LINE_CHARS or self.truncated:
            return line[:LINE_CHARS] + "…"
        return line

    @property
    def hex_head(self) -> str:
        """The first bytes of a binary payload in hex ("00 ff 72…"): base64 says
        nothing to a reader, the leading bytes often name the format."""
        # 24 characters of base64 are 18 whole bytes; a shorter text is complete.
        try:
            head = base64.b64decode(self.text[:24], validate=False)
        except (binascii.Error, ValueError):
            return ""
        shown = head[:HEX_HEAD_BYTES].hex(" ")
        return shown + ("…" if self.size > HEX_HEAD_BYTES else "")
