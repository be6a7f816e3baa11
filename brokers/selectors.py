"""Reads that span the brokers app's models, always scoped to what a user may see."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from django.db import models

from brokers.models import Broker, BrokerStatus, PublishTemplate, Subscription
from mqttadmin.lib.payloads import parse_json
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


def brokers_with_status(user: Any, product: Product | None) -> list[BrokerWithStatus]:
    return [
        BrokerWithStatus(broker, status_of(broker))
        for broker in brokers_for(user, product)
    ]


def subscriptions_of(broker: Broker) -> models.QuerySet[Subscription]:
    return broker.subscriptions.order_by("name")


def publish_templates_of(broker: Broker) -> models.QuerySet[PublishTemplate]:
    return broker.publish_templates.order_by("name")


# --- Payloads as the pages show them ------------------------------------------

PREVIEW_CHARS = 2000
SHORT_PREVIEW_CHARS = 80


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


def payload_view(payload: bytes | None, text: str | None = None) -> dict[str, Any]:
    """A payload shown as it fits: JSON, text, or base64 for binary.

    JSON only when `mqttadmin.lib.payloads.parse_json` reads it within its bounds
    (depth, size, finite numbers); anything else is the text exactly as received.
    """
    if text is None and payload is not None:
        try:
            text = payload.decode("utf-8") if b"\x00" not in payload else None
        except UnicodeDecodeError:
            text = None
    if text is not None:
        stripped = text.strip()
        if stripped[:1] in ("{", "[") or _is_json_scalar(stripped):
            parsed = parse_json(stripped)
            if parsed is not None:
                return {"payload": parsed.value, "payload_encoding": "json"}
        return {"payload": text, "payload_encoding": "text"}
    return {
        "payload": base64.b64encode(payload or b"").decode("ascii"),
        "payload_encoding": "base64",
    }


def _is_json_scalar(text: str) -> bool:
    return bool(re.fullmatch(r"-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null", text))


def payload_preview(
    payload: bytes | None, text: str | None = None, limit: int = PREVIEW_CHARS
) -> PayloadPreview:
    """At most `limit` characters of a payload, JSON indented, binary as base64."""
    view = payload_view(payload, text)
    value = view["payload"]
    if view["payload_encoding"] == "json":
        # Indented only where there is room: one-line previews stay compact.
        indent = 2 if limit >= PREVIEW_CHARS else None
        shown = json.dumps(value, indent=indent, ensure_ascii=False)
    else:
        shown = value
    size = len(text.encode("utf-8")) if text is not None else len(payload or b"")
    return PayloadPreview(
        view["payload_encoding"],
        shown[:limit],
        size,
        len(shown) > limit,
    )
