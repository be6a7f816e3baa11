"""Writes on brokers and subscriptions, publishing and connection tests.

Every change is audited and then nudges the MQTT runtime, which reconciles the
database's desired state with its live connections (it also polls, so a lost nudge
costs a second, not correctness).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from brokers.action_headers import keep_masked_headers
from brokers.action_kinds import dry_run
from brokers.choices import ControlAction, PayloadEncoding, Protocol
from brokers.client import (
    ConnectionSettings,
    ConnectionTestResult,
    OutgoingMessage,
    PublishError,
    probe_connection,
    publish_messages,
)
from brokers.models import (
    MQTT_MAX_PAYLOAD_BYTES,
    Broker,
    BrokerStatus,
    PublishTemplate,
    Subscription,
)
from brokers.retained import RetainedListing, retained_clear, retained_listing
from brokers.secret_binding import binding_snapshot, check_secret_binding
from mqttadmin.audit import audit_record, diff, snapshot
from mqttadmin.lib.payloads import json_problem, parse_json
from mqttadmin.lib.topics import (
    check_publish_target,
    check_subscribe_target,
    topic_matches,
    validate_topic_name,
)
from mqttadmin.models import Product
from mqttadmin.realtime import runtime_nudge
from mqttadmin.roles import Role

logger = logging.getLogger(__name__)


BROKER_FIELDS = (
    "name",
    "enabled",
    "max_payload_bytes",
    "history_payload_max_bytes",
    "history_max_age_days",
    "history_max_messages",
    *Broker.CONNECTION_FIELDS,
)
SUBSCRIPTION_FIELDS = (
    "name",
    "description",
    "topic_filter",
    "shared_group",
    "qos",
    "enabled",
    "store_messages",
    "actions",
)


def _save_broker(broker: Broker) -> None:
    broker.full_clean()
    broker.save()


@transaction.atomic
def broker_create(*, actor: Any, product: Product, **fields: Any) -> Broker:
    """Create a broker connection; the runtime connects it when enabled."""
    unknown = set(fields) - set(BROKER_FIELDS)
    if unknown:
        raise ValueError(f"unknown broker fields: {sorted(unknown)}")
    broker = Broker(product=product, **fields)
    _save_broker(broker)
    BrokerStatus.objects.create(broker=broker, client_id=broker.client_id)
    audit_record(
        actor=actor,
        action="broker.create",
        target=broker,
        changes=diff({}, snapshot(broker, BROKER_FIELDS), Broker.SECRET_FIELDS),
    )
    runtime_nudge()
    return broker


@transaction.atomic
def broker_update(*, actor: Any, broker: Broker, **fields: Any) -> Broker:
    """Change a broker; connection settings make the runtime reconnect it.

    Secrets are passed only when given anew (or cleared with ""). A change that
    would send a stored password or client key to another host:port, or over
    weaker TLS, without giving it again raises ValidationError on that field and
    saves nothing.
    """
    unknown = set(fields) - set(BROKER_FIELDS)
    if unknown:
        raise ValueError(f"unknown broker fields: {sorted(unknown)}")
    before = snapshot(broker, BROKER_FIELDS)
    saved = binding_snapshot(broker)
    for name, value in fields.items():
        setattr(broker, name, value)
    broker.full_clean()
    # A secret given in `fields` is given anew; one left out stays bound to the
    # destinations it was saved for (see brokers.secret_binding).
    check_secret_binding(
        saved, broker, supplied={n for n in Broker.SECRET_FIELDS if n in fields}
    )
    broker.save()
    changes = diff(before, snapshot(broker, BROKER_FIELDS), Broker.SECRET_FIELDS)
    if changes:
        audit_record(
            actor=actor, action="broker.update", target=broker, changes=changes
        )
        runtime_nudge()
    return broker


@transaction.atomic
def broker_delete(*, actor: Any, broker: Broker) -> None:
    audit_record(
        actor=actor,
        action="broker.delete",
        target=broker,
        changes={"name": [broker.name, None]},
    )
    broker.delete()
    runtime_nudge()


@transaction.atomic
def broker_control(*, actor: Any, broker: Broker, action: str) -> Broker:
    """connect/disconnect set `enabled` (so the choice survives restarts);
    reconnect asks the owning runtime to drop and re-open the connection."""
    if action not in ControlAction.values:
        raise ValidationError(
            {"action": _("Action must be one of: connect, disconnect, reconnect.")}
        )
    if action == ControlAction.RECONNECT:
        broker.reconnect_requested_at = timezone.now()
        broker.save(update_fields=["reconnect_requested_at", "updated_at"])
        changes: dict[str, Any] = {}
    else:
        enabled = action == ControlAction.CONNECT
        changes = (
            {"enabled": [broker.enabled, enabled]} if broker.enabled != enabled else {}
        )
        broker.enabled = enabled
        broker.save(update_fields=["enabled", "updated_at"])
    audit_record(actor=actor, action=f"broker.{action}", target=broker, changes=changes)
    runtime_nudge()
    return broker


def may_control(actor: Any, broker: Broker) -> bool:
    """Whether `actor` may reach the broker's `$CONTROL` API through the portal:
    product admins (and superusers) only, never the system (actor None)."""
    return broker.product.allows(actor, Role.ADMIN) if actor is not None else False


def broker_status(broker: Broker) -> BrokerStatus:
    """The broker's status row (created on demand for rows made before it existed)."""
    status, _created = BrokerStatus.objects.get_or_create(
        broker=broker, defaults={"client_id": broker.client_id}
    )
    return status


def broker_test_connection(
    settings: ConnectionSettings,
    *,
    broker: Broker | None = None,
    supplied: Collection[str] = (),
) -> ConnectionTestResult:
    """Try the settings once (saved or not), within their connect timeout.

    With `broker`, the settings started from its saved ones: a stored secret not
    in `supplied` (given anew with this test) is used only with the destinations
    it was saved for, else ValidationError names the field and nothing is sent.
    Brokers are often private, so the outbound policy does not apply here; the
    views restrict testing to operators and throttle it per user.
    """
    if broker is not None:
        check_secret_binding(broker, settings, supplied)
    return probe_connection(settings)


# --- Publishing ---------------------------------------------------------------


@dataclass(frozen=True)
class PublishRequest:
    topic: str
    payload: Any = ""
    encoding: str = PayloadEncoding.UTF8
    qos: int = 0
    retain: bool = False
    properties: dict[str, Any] | None = None


def encode_payload(payload: Any, encoding: str) -> bytes:
    """Bytes to send for a payload given as text, base64 or JSON."""
    if encoding == PayloadEncoding.UTF8:
        if not isinstance(payload, str):
            raise ValidationError({"payload": _("A utf8 payload is a string.")})
        return payload.encode("utf-8")
    if encoding == PayloadEncoding.BASE64:
        if not isinstance(payload, str):
            raise ValidationError({"payload": _("A base64 payload is a string.")})
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(
                {"payload": _("The payload is not valid base64.")}
            ) from None
    if encoding == PayloadEncoding.JSON:
        if isinstance(payload, str):
            # Bounded parse (depth, size, finite numbers): deep JSON is a 400.
            parsed = parse_json(payload, max_bytes=MQTT_MAX_PAYLOAD_BYTES)
            if parsed is None:
                problem = json_problem(payload, max_bytes=MQTT_MAX_PAYLOAD_BYTES)
                raise ValidationError(
                    {"payload": _("The payload is not valid JSON: %s") % problem}
                ) from None
            payload = parsed.value
        return json.dumps(payload, separators=(",", ":")).encode("utf-8")
    raise ValidationError(
        {"encoding": _("Encoding must be one of: utf8, base64, json.")}
    )


def _mqtt5_properties(
    values: dict[str, Any] | None, broker: Broker
) -> Properties | None:
    if not values:
        return None
    if broker.protocol != Protocol.MQTT_5:
        raise ValidationError(
            {"properties": _("Message properties need an MQTT 5 connection.")}
        )
    properties = Properties(PacketTypes.PUBLISH)
    if values.get("content_type"):
        properties.ContentType = str(values["content_type"])
    if values.get("message_expiry_interval") is not None:
        properties.MessageExpiryInterval = int(values["message_expiry_interval"])
    if values.get("response_topic"):
        try:
            validate_topic_name(values["response_topic"])
        except ValidationError as exc:
            # Keyed, so the error names the field (and batch errors can prefix it).
            raise ValidationError({"properties.response_topic": exc.messages}) from None
        properties.ResponseTopic = values["response_topic"]
    if values.get("correlation_data"):
        properties.CorrelationData = str(values["correlation_data"]).encode("utf-8")
    user_properties = values.get("user_properties") or {}
    if user_properties:
        pairs = (
            list(user_properties.items())
            if isinstance(user_properties, dict)
            else [tuple(pair) for pair in user_properties]
        )
        properties.UserProperty = [(str(k), str(v)) for k, v in pairs]
    return properties


def prepare_message(
    broker: Broker, request: PublishRequest, *, may_control: bool = False
) -> OutgoingMessage:
    """Validate one message completely; raises ValidationError naming the field.

    `$` topics are refused (`$CONTROL` too, unless `may_control`): see
    `mqttadmin.lib.topics.check_publish_target`.
    """
    try:
        validate_topic_name(request.topic)
        check_publish_target(request.topic, may_control=may_control)
    except ValidationError as exc:
        raise ValidationError({"topic": exc.messages}) from None
    if request.qos not in (0, 1, 2):
        raise ValidationError({"qos": _("QoS must be 0, 1 or 2.")})
    payload = encode_payload(request.payload, request.encoding)
    if len(payload) > broker.max_payload_bytes:
        raise ValidationError(
            {
                "payload": _(
                    "The payload is %(size)d bytes; this broker takes at most %(max)d."
                )
                % {"size": len(payload), "max": broker.max_payload_bytes}
            }
        )
    return OutgoingMessage(
        topic=request.topic,
        payload=payload,
        qos=request.qos,
        retain=request.retain,
        properties=_mqtt5_properties(request.properties, broker),
    )


def broker_publish(
    *,
    actor: Any,
    broker: Broker,
    requests: Iterable[PublishRequest],
    batch: bool = False,
) -> int:
    """Validate every message first (nothing is sent if one is bad), then publish.

    In a batch, errors name the message: `messages[3].topic`. The broker's `$`
    topics are refused; `$CONTROL/...` only for a product admin (the connection's
    credentials may be the broker's Dynamic Security admin's).

    A batch is validated as a whole but not delivered as a whole: MQTT has no
    transaction, so when the broker refuses a message (MQTT 5 reason code >= 0x80)
    or closes the connection, the messages it acknowledged before stay delivered.
    PublishError then says how many those were; the failure is audited as
    `broker.publish_failed` with the broker's reason.
    """
    control = may_control(actor, broker)
    messages = []
    for index, request in enumerate(requests):
        try:
            messages.append(prepare_message(broker, request, may_control=control))
        except ValidationError as exc:
            if not batch:
                raise
            raise ValidationError(
                {f"messages[{index}].{k}": v for k, v in exc.message_dict.items()}
            ) from None
    if not messages:
        raise ValidationError({"messages": _("Nothing to publish.")})
    topics = sorted({m.topic for m in messages})[:20]
    try:
        published = publish_messages(ConnectionSettings.from_broker(broker), messages)
    except PublishError as exc:
        audit_record(
            actor=actor,
            action="broker.publish_failed",
            target=broker,
            changes={
                "topics": [None, topics],
                "error": [None, str(exc)],
                "reason_code": [None, exc.reason_code],
                "acknowledged": [None, f"{exc.acknowledged} of {len(messages)}"],
            },
        )
        raise
    audit_record(
        actor=actor,
        action="broker.publish",
        target=broker,
        changes={"topics": [None, topics]},
    )
    return published


# --- Subscriptions ------------------------------------------------------------


def _actions_to_store(
    fields: dict[str, Any], subscription: Subscription | None
) -> dict[str, Any]:
    """`fields` with "***" header values of `actions` replaced by the stored ones."""
    if "actions" not in fields:
        return fields
    # From the database, not the instance: a caller may have changed that already.
    stored = (
        Subscription.objects.filter(pk=subscription.pk)
        .values_list("actions", flat=True)
        .first()
        if subscription is not None
        else None
    )
    try:
        actions = keep_masked_headers(fields["actions"], stored or [])
    except ValidationError as exc:
        raise ValidationError({"actions": exc.messages}) from None
    return {**fields, "actions": actions}


def _check_subscription_access(actor: Any, subscription: Subscription) -> None:
    """Below product admin, no subscription under `$CONTROL` (the broker's control
    API carries MQTT passwords in clear)."""
    if not subscription.topic_filter:
        return
    try:
        check_subscribe_target(
            subscription.subscribe_filter,
            may_control=may_control(actor, subscription.broker),
        )
    except ValidationError as exc:
        raise ValidationError({"topic_filter": exc.messages}) from None


@transaction.atomic
def subscription_create(*, actor: Any, broker: Broker, **fields: Any) -> Subscription:
    """Add a filter to the broker's desired state; the runtime subscribes within ~1s.

    Header values in `actions` are secrets: stored encrypted, audited as "***". A
    new subscription has none to keep, so a "***" value is refused.
    """
    subscription = Subscription(broker=broker, **_actions_to_store(fields, None))
    subscription.full_clean()
    _check_subscription_access(actor, subscription)
    subscription.save()
    audit_record(
        actor=actor,
        action="subscription.create",
        target=subscription,
        product=broker.product,
        changes=diff({}, snapshot(subscription, SUBSCRIPTION_FIELDS)),
    )
    runtime_nudge()
    return subscription


@transaction.atomic
def subscription_update(
    *, actor: Any, subscription: Subscription, **fields: Any
) -> Subscription:
    """Change a subscription; audited and handed to the runtime when it changed.

    A header value given as "***" (what reads show) keeps the stored secret of that
    header (see `brokers.action_headers.keep_masked_headers`); another value
    replaces it, and a header left out is removed. The audit entry names changed
    headers, never their values.
    """
    before = snapshot(subscription, SUBSCRIPTION_FIELDS)
    # Checked on the stored filter too: below admin, a $CONTROL subscription an
    # admin made is not to be re-enabled, re-pointed or given actions.
    _check_subscription_access(actor, subscription)
    fields = _actions_to_store(fields, subscription)
    for name, value in fields.items():
        setattr(subscription, name, value)
    subscription.full_clean()
    _check_subscription_access(actor, subscription)
    subscription.save()
    changes = diff(before, snapshot(subscription, SUBSCRIPTION_FIELDS))
    if changes:
        audit_record(
            actor=actor,
            action="subscription.update",
            target=subscription,
            product=subscription.broker.product,
            changes=changes,
        )
        runtime_nudge()
    return subscription


@transaction.atomic
def subscription_delete(*, actor: Any, subscription: Subscription) -> None:
    audit_record(
        actor=actor,
        action="subscription.delete",
        target=subscription,
        product=subscription.broker.product,
        changes={"topic_filter": [subscription.topic_filter, None]},
    )
    subscription.delete()
    runtime_nudge()


def subscription_dry_run(
    *, subscription: Subscription, topic: str, payload: bytes
) -> dict[str, Any]:
    """What the subscription's actions would do with a sample message (no effects)."""
    message = subscription.message_context(
        topic=topic,
        payload=payload,
        qos=subscription.qos,
        retain=False,
        received_at=timezone.now(),
    )
    return {
        "matches": topic_matches(subscription.match_filter, topic),
        "actions": dry_run(subscription.actions, message),
    }


# --- Publish templates --------------------------------------------------------


TEMPLATE_FIELDS = (
    "name",
    "topic",
    "payload",
    "encoding",
    "qos",
    "retain",
    "properties",
)


@transaction.atomic
def publish_template_save(
    *,
    actor: Any,
    broker: Broker,
    template: PublishTemplate | None = None,
    **fields: Any,
) -> PublishTemplate:
    """Create or change a saved publish template; its payload must encode."""
    template = template or PublishTemplate(broker=broker)
    before = snapshot(template, TEMPLATE_FIELDS) if template.pk else {}
    for name, value in fields.items():
        setattr(template, name, value)
    template.full_clean()
    try:
        check_publish_target(template.topic, may_control=may_control(actor, broker))
    except ValidationError as exc:
        raise ValidationError({"topic": exc.messages}) from None
    encode_payload(template.payload, template.encoding)
    template.save()
    audit_record(
        actor=actor,
        action="publish_template.save",
        target=template,
        product=broker.product,
        changes=diff(before, snapshot(template, TEMPLATE_FIELDS)),
    )
    return template


@transaction.atomic
def publish_template_delete(*, actor: Any, template: PublishTemplate) -> None:
    audit_record(
        actor=actor,
        action="publish_template.delete",
        target=template,
        product=template.broker.product,
        changes={"name": [template.name, None]},
    )
    template.delete()


# --- Retained messages -----------------------------------------------------------


def broker_retained_list(
    *, broker: Broker, topic_filter: str = "#", limit: int = 10_000
) -> RetainedListing:
    """The retained messages the live broker holds under `topic_filter`, with
    whether the list is complete (see `brokers.retained.retained_listing`).

    Raises ValidationError for a bad filter and PublishError when the broker cannot
    be reached or refuses the subscription.
    """
    try:
        return retained_listing(
            ConnectionSettings.from_broker(broker), topic_filter, limit=limit
        )
    except ValidationError as exc:
        raise ValidationError({"topic": exc.messages}) from None


def broker_retained_clear(
    *, actor: Any, broker: Broker, topic: str, recursive: bool
) -> list[str]:
    """Clear the retained message of `topic` on the live broker (with its whole
    subtree when `recursive`); returns the topics that held one.

    Raises ValidationError for a bad topic and PublishError when the broker cannot
    be reached; nothing is audited then, since nothing changed. Clearing sends a
    message, so the broker's `$` topics are refused as for publishing.
    """
    try:
        check_publish_target(topic, may_control=may_control(actor, broker))
    except ValidationError as exc:
        raise ValidationError({"topic": exc.messages}) from None
    cleared = retained_clear(
        ConnectionSettings.from_broker(broker), topic, recursive=recursive
    )
    audit_record(
        actor=actor,
        action="broker.retained_clear",
        target=broker,
        changes={
            "topic": [None, topic],
            "recursive": [None, recursive],
            # Bounded: a subtree may hold thousands of topics.
            "cleared": [None, cleared[:50]],
        },
    )
    return cleared
