"""The product MQTT configuration of seed 001: one primary broker and its topic
layout, served to services that run their own MQTT listener."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from brokers import services
from brokers.models import Broker, ProductMqttConfig, ServiceStatusReport
from mqttadmin.audit import SECRET_MASK, audit_record, diff, snapshot
from mqttadmin.models import Product

# Seed 001's names for broker settings -> the Broker model's fields.
BROKER_KEYS = {
    "host": "host",
    "port": "port",
    "use_tls": "use_tls",
    "username": "username",
    "password": "password",
    "keep_alive": "keepalive",
    "clean_session": "clean_start",
    "client_id": "client_id",
    "protocol": "protocol",
}
TOPIC_KEYS = {
    "prefix": "topic_prefix",
    "pattern": "topic_pattern",
    "use_shared": "use_shared",
    "shared_group": "shared_group",
    "qos": "qos",
}
STATUS_KEYS = (
    "connected",
    "last_connected_at",
    "last_disconnected_at",
    "messages_received",
    "subscribed_topics_count",
    "client_id",
    "broker_info",
    "connection_error",
)


def config_of(product: Product) -> ProductMqttConfig | None:
    return (
        ProductMqttConfig.objects.filter(product=product)
        .select_related("primary_broker")
        .first()
    )


def broker_fields_from(payload: dict[str, Any]) -> dict[str, Any]:
    """Seed-001 broker settings as Broker fields; unknown keys are an error."""
    unknown = set(payload) - set(BROKER_KEYS) - {"verify_cert"}
    if unknown:
        raise ValidationError(
            {f"broker.{key}": _("Unknown setting.") for key in sorted(unknown)}
        )
    fields = {
        BROKER_KEYS[key]: value for key, value in payload.items() if key in BROKER_KEYS
    }
    if "verify_cert" in payload:
        fields["tls_insecure"] = not bool(payload["verify_cert"])
    # Writing back what was read ("***" or null) keeps the stored password; only
    # a password given here is "given anew" (brokers.secret_binding).
    if fields.get("password") is None or fields.get("password") == SECRET_MASK:
        fields.pop("password", None)
    return fields


def _prefixed(
    exc: ValidationError, prefix: str, names: dict[str, str]
) -> ValidationError:
    reverse = {field: key for key, field in names.items()}
    reverse["tls_insecure"] = "verify_cert"
    if not hasattr(exc, "error_dict"):
        return ValidationError({prefix: exc.messages})
    return ValidationError(
        {
            f"{prefix}.{reverse.get(field, field)}": messages
            for field, messages in exc.message_dict.items()
        }
    )


@transaction.atomic
def mqtt_config_put(
    *, actor: Any, product: Product, broker: dict[str, Any], topics: dict[str, Any]
) -> tuple[ProductMqttConfig, bool]:
    """Create or update the primary broker and topic settings.

    Returns the config and whether the connection changed (a listener restarts).
    """
    config = config_of(product) or ProductMqttConfig(product=product)
    fields = broker_fields_from(broker)
    unknown = set(topics) - set(TOPIC_KEYS)
    if unknown:
        raise ValidationError(
            {f"topics.{k}": _("Unknown setting.") for k in sorted(unknown)}
        )
    primary = config.primary_broker
    try:
        if primary is None:
            primary = services.broker_create(
                actor=actor, product=product, name=_unique_name(product), **fields
            )
            requires_restart = True
        else:
            before = snapshot(primary, Broker.CONNECTION_FIELDS)
            primary = services.broker_update(actor=actor, broker=primary, **fields)
            requires_restart = before != snapshot(primary, Broker.CONNECTION_FIELDS)
    except ValidationError as exc:
        raise _prefixed(exc, "broker", BROKER_KEYS) from None
    before_topics = snapshot(config, TOPIC_KEYS.values()) if config.pk else {}
    config.primary_broker = primary
    for key, value in topics.items():
        setattr(config, TOPIC_KEYS[key], value)
    try:
        config.full_clean()
    except ValidationError as exc:
        raise _prefixed(exc, "topics", TOPIC_KEYS) from None
    config.save()
    changes = diff(before_topics, snapshot(config, TOPIC_KEYS.values()))
    if changes:
        audit_record(
            actor=actor, action="mqtt_config.update", target=product, changes=changes
        )
    return config, requires_restart


def _unique_name(product: Product) -> str:
    name, n = "Primary", 2
    while Broker.objects.filter(product=product, name=name).exists():
        name, n = f"Primary {n}", n + 1
    return name


@transaction.atomic
def service_status_report(
    *, actor: Any, product: Product, **values: Any
) -> ServiceStatusReport:
    """Store what a product's own MQTT service says about its connection."""
    unknown = set(values) - set(STATUS_KEYS)
    if unknown:
        raise ValidationError({k: _("Unknown status field.") for k in sorted(unknown)})
    report, _created = ServiceStatusReport.objects.get_or_create(product=product)
    for key, value in values.items():
        setattr(report, key, value)
    report.reported_by = actor.get_username() if actor else ""
    report.full_clean()
    report.save()
    return report
