"""Broker connections, their live status, subscriptions and publish templates."""

from __future__ import annotations

import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.fields.json import KeyTransform
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

from brokers.action_headers import header_audit_values, header_count, map_header_values
from brokers.action_kinds import MessageContext, validate_actions
from brokers.choices import ConnectionState, PayloadEncoding, Protocol, Transport
from mqttadmin.lib.crypto import EncryptedField, EncryptedTextField, decrypt, encrypt
from mqttadmin.lib.topics import (
    validate_client_id,
    validate_mqtt_username,
    validate_share_group,
    validate_topic_filter,
    validate_topic_name,
    validate_topic_text,
)
from mqttadmin.models import Product, ProductScopedQuerySet

DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
# Stored messages keep at most this much of a payload by default (per broker).
DEFAULT_HISTORY_PAYLOAD_BYTES = 256 * 1024
# A stored payload can be no larger than MQTT allows (about 256 MB).
MQTT_MAX_PAYLOAD_BYTES = 268435455
SESSION_EXPIRY_MAX = 0xFFFFFFFF


def generate_client_id() -> str:
    # 23 characters of [0-9a-z]: every broker must accept that (MQTT 3.1.1 §3.1.3.1).
    return "mqttadmin" + secrets.token_hex(7)


def parse_host_port(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` into its parts; ValidationError when malformed."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValidationError(
            _("“%(value)s” is not host:port with a port from 1 to 65535.")
            % {"value": value}
        )
    return host, int(port)


def validate_ca_pem(value: str) -> None:
    if value and value.strip():
        try:
            x509.load_pem_x509_certificates(value.encode())
        except ValueError as exc:
            # cryptography's own text ("Unable to load PEM file. See https://…
            # MalformedFraming") tells a user nothing: say what is expected.
            raise ValidationError(
                _(
                    "Not a PEM certificate bundle: paste one or more certificates, "
                    "each from -----BEGIN CERTIFICATE----- to "
                    "-----END CERTIFICATE-----."
                ),
                code="pem",
            ) from exc


def validate_cert_pem(value: str) -> None:
    if value and value.strip():
        try:
            x509.load_pem_x509_certificate(value.encode())
        except ValueError as exc:
            raise ValidationError(
                _(
                    "Not a PEM certificate: paste it from -----BEGIN CERTIFICATE----- "
                    "to -----END CERTIFICATE-----."
                ),
                code="pem",
            ) from exc


def validate_key_pem(value: str) -> None:
    if value and value.strip():
        try:
            load_pem_private_key(value.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValidationError(
                _(
                    "Not an unencrypted PEM private key: paste it from -----BEGIN "
                    "PRIVATE KEY----- (or RSA/EC PRIVATE KEY) to its END line, "
                    "without a passphrase."
                ),
                code="pem",
            ) from exc


def validate_ws_path(value: str) -> None:
    if value and (not value.startswith("/") or any(ch.isspace() for ch in value)):
        raise ValidationError(
            _("The WebSocket path starts with / and has no spaces (e.g. /mqtt)."),
            code="ws_path",
        )


def validate_fallback_hosts(value: Any) -> None:
    if not isinstance(value, list):
        raise ValidationError(_("Fallback hosts are a list of host:port strings."))
    for item in value:
        if not isinstance(item, str):
            raise ValidationError(_("Fallback hosts are a list of host:port strings."))
        parse_host_port(item)


class BrokerScopedQuerySet(ProductScopedQuerySet):
    """For models that belong to a product through their broker."""

    product_path = "broker__product"


class BrokerQuerySet(ProductScopedQuerySet):
    product_path = "product"


class Broker(models.Model):
    """A connection to an MQTT broker, kept live by the runtime while enabled."""

    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="brokers"
    )
    name = models.CharField(_l("name"), max_length=120)
    host = models.CharField(_l("host"), max_length=255)
    port = models.PositiveIntegerField(
        _l("port"),
        default=1883,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
    )
    transport = models.CharField(
        _l("transport"), max_length=12, choices=Transport.choices, default=Transport.TCP
    )
    ws_path = models.CharField(
        _l("WebSocket path"),
        max_length=255,
        default="/mqtt",
        blank=True,
        validators=[validate_ws_path],
    )
    use_tls = models.BooleanField(_l("use TLS"), default=False)
    tls_insecure = models.BooleanField(
        _l("skip certificate verification"),
        default=False,
        help_text=_l("Accept any certificate and host name. For testing only."),
    )
    ca_cert = models.TextField(
        _l("CA certificate (PEM)"), blank=True, validators=[validate_ca_pem]
    )
    client_cert = models.TextField(
        _l("client certificate (PEM)"), blank=True, validators=[validate_cert_pem]
    )
    client_key = EncryptedTextField(
        _l("client key (PEM)"), blank=True, validators=[validate_key_pem]
    )
    protocol = models.CharField(
        _l("protocol"),
        max_length=6,
        choices=Protocol.choices,
        # MQTT 5 by default: its Receive Maximum lets the runtime take a burst at
        # the rate it can store it, where MQTT 3.1.1 leaves the broker's in-flight
        # window (20 on a default Mosquitto) as the limit and the broker drops what
        # overflows its queue. Brokers that speak only 3.1.1 refuse the CONNECT
        # with "unsupported protocol version".
        default=Protocol.MQTT_5,
    )
    client_id = models.CharField(
        _l("client id"),
        max_length=128,
        blank=True,
        validators=[validate_client_id],
        help_text=_l("Left empty, one is generated and kept."),
    )
    keepalive = models.PositiveIntegerField(
        _l("keepalive (s)"), default=60, validators=[MaxValueValidator(65535)]
    )
    clean_start = models.BooleanField(
        _l("clean start / clean session"),
        default=True,
        help_text=_l("Off keeps a persistent session on the broker across reconnects."),
    )
    session_expiry_interval = models.PositiveBigIntegerField(
        _l("session expiry interval (s)"),
        default=0,
        validators=[MaxValueValidator(SESSION_EXPIRY_MAX)],
        help_text=_l("MQTT 5 only. 0 ends the session on disconnect."),
    )
    username = models.CharField(
        _l("username"), max_length=256, blank=True, validators=[validate_mqtt_username]
    )
    password = EncryptedTextField(_l("password"), blank=True)
    enabled = models.BooleanField(_l("enabled"), default=True)
    connect_timeout = models.FloatField(
        _l("connect timeout (s)"),
        default=10.0,
        validators=[MinValueValidator(0.5), MaxValueValidator(120)],
    )
    fallback_hosts = models.JSONField(
        _l("fallback hosts"),
        default=list,
        blank=True,
        validators=[validate_fallback_hosts],
        help_text=_l("host:port, tried in order when the primary does not answer."),
    )
    max_payload_bytes = models.PositiveIntegerField(
        _l("largest payload to publish (bytes)"),
        default=DEFAULT_MAX_PAYLOAD_BYTES,
        validators=[MinValueValidator(1), MaxValueValidator(268435455)],
    )
    history_payload_max_bytes = models.PositiveIntegerField(
        _l("largest payload to store (bytes)"),
        default=DEFAULT_HISTORY_PAYLOAD_BYTES,
        validators=[MinValueValidator(64), MaxValueValidator(MQTT_MAX_PAYLOAD_BYTES)],
        help_text=_l(
            "History keeps the first this many bytes of a larger payload, marked as "
            "truncated with its real size."
        ),
    )
    history_max_age_days = models.PositiveIntegerField(
        _l("keep history for (days)"),
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
    )
    history_max_messages = models.PositiveBigIntegerField(
        _l("keep at most (messages)"),
        default=1_000_000,
        validators=[MinValueValidator(1)],
    )
    collect_sys_stats = models.BooleanField(
        _l("collect $SYS statistics and connected clients"),
        default=False,
        help_text=_l(
            "Subscribe to $SYS/# for broker statistics and, when the broker "
            "publishes its log (log_dest topic), its connected clients. Managed "
            "brokers always do."
        ),
    )
    reconnect_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BrokerQuerySet.as_manager()

    SECRET_FIELDS = ("password", "client_key")
    # Fields whose change makes the runtime drop and re-open the connection.
    CONNECTION_FIELDS = (
        "host",
        "port",
        "transport",
        "ws_path",
        "use_tls",
        "tls_insecure",
        "ca_cert",
        "client_cert",
        "client_key",
        "protocol",
        "client_id",
        "keepalive",
        "clean_start",
        "session_expiry_interval",
        "username",
        "password",
        "connect_timeout",
        "fallback_hosts",
        # A new session starts with an empty connected-clients list, which is what
        # turning $SYS collection on or off needs too.
        "collect_sys_stats",
    )

    class Meta:
        ordering = ["product", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "name"], name="broker_unique_name_per_product"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A fixed client id is what lets a persistent session survive restarts.
        if not self.client_id:
            self.client_id = generate_client_id()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.tls_insecure and not self.use_tls:
            errors["tls_insecure"] = _("Only meaningful with TLS on.")
        if (self.ca_cert or self.client_cert or self.client_key) and not self.use_tls:
            errors["use_tls"] = _("Certificates are given: turn TLS on.")
        if bool(self.client_cert) != bool(self.client_key):
            errors["client_key" if self.client_cert else "client_cert"] = _(
                "A client certificate and its key go together."
            )
        if self.transport == Transport.WEBSOCKETS and not self.ws_path:
            errors["ws_path"] = _("WebSockets need a path, e.g. /mqtt.")
        if self.session_expiry_interval and self.protocol != Protocol.MQTT_5:
            errors["session_expiry_interval"] = _(
                "Session expiry is an MQTT 5 setting; use protocol 5 or set 0."
            )
        if (
            self.protocol == Protocol.MQTT_5
            and not self.clean_start
            and not self.session_expiry_interval
        ):
            # MQTT 5 ends a session at disconnect unless it has an expiry: without
            # one, "clean start off" would keep nothing across a reconnect.
            errors["session_expiry_interval"] = _(
                "A persistent session (clean start off) on MQTT 5 needs a session "
                "expiry above 0, e.g. 86400 to keep it a day; or use protocol 3.1.1."
            )
        if self.password and not self.username:
            errors["username"] = _("A password needs a username.")
        if errors:
            raise ValidationError(errors)

    @property
    def address(self) -> str:
        scheme = {
            (Transport.TCP, False): "mqtt",
            (Transport.TCP, True): "mqtts",
            (Transport.WEBSOCKETS, False): "ws",
            (Transport.WEBSOCKETS, True): "wss",
        }[(Transport(self.transport), self.use_tls)]
        path = self.ws_path if self.transport == Transport.WEBSOCKETS else ""
        return f"{scheme}://{self.host}:{self.port}{path}"

    @property
    def hosts(self) -> list[tuple[str, int]]:
        """The primary, then the fallbacks, in the order the runtime tries them."""
        return [(self.host, self.port)] + [
            parse_host_port(h) for h in self.fallback_hosts
        ]

    @property
    def group_name(self) -> str:
        """The channel layer group that carries this broker's live updates."""
        return f"broker.{self.pk}"


class BrokerStatus(models.Model):
    """The live state of a broker's connection, written by the runtime that owns it."""

    broker = models.OneToOneField(
        Broker, on_delete=models.CASCADE, primary_key=True, related_name="status"
    )
    state = models.CharField(
        max_length=12,
        choices=ConnectionState.choices,
        default=ConnectionState.DISCONNECTED,
    )
    last_connected_at = models.DateTimeField(null=True, blank=True)
    last_disconnected_at = models.DateTimeField(null=True, blank=True)
    messages_received = models.PositiveBigIntegerField(default=0)
    subscribed_topics_count = models.PositiveIntegerField(default=0)
    client_id = models.CharField(max_length=128, blank=True)
    connection_error = models.TextField(blank=True)
    connected_host = models.CharField(max_length=300, blank=True)
    owner = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "broker statuses"

    def __str__(self) -> str:
        return f"{self.broker}: {self.state}"

    @property
    def connected(self) -> bool:
        return self.state == ConnectionState.CONNECTED


def validate_share_group_or_empty(value: str) -> None:
    if value:
        validate_share_group(value)


def validate_actions_field(value: Any) -> None:
    validate_actions(value)


class ActionsField(EncryptedField, models.JSONField):
    """Subscription actions as JSON, every header value encrypted at rest.

    Python code sees plain values, as with EncryptedTextField; the column holds a
    Fernet token in place of each header value, while types, URLs, templates and
    header names stay readable JSON.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        value = super().from_db_value(value, expression, connection)
        if isinstance(expression, KeyTransform):
            # A part of the list (`actions__0__headers`): handed back as stored.
            return value
        return map_header_values(value, decrypt)

    def get_prep_value(self, value: Any) -> Any:
        return map_header_values(super().get_prep_value(value), encrypt)

    def secret_count(self, value: Any) -> int:
        return header_count(value)

    def audit_values(self, name: str, value: Any) -> dict[str, Any]:
        return header_audit_values(name, value)


class Subscription(models.Model):
    """A topic filter the runtime keeps subscribed on its broker."""

    broker = models.ForeignKey(
        Broker, on_delete=models.CASCADE, related_name="subscriptions"
    )
    name = models.CharField(_l("name"), max_length=120)
    topic_filter = models.CharField(
        _l("topic filter"), max_length=65535, validators=[validate_topic_filter]
    )
    qos = models.PositiveSmallIntegerField(
        _l("QoS"), default=0, choices=[(0, "0"), (1, "1"), (2, "2")]
    )
    enabled = models.BooleanField(_l("enabled"), default=True)
    store_messages = models.BooleanField(_l("store messages"), default=True)
    description = models.TextField(_l("description"), blank=True)
    shared_group = models.CharField(
        _l("shared subscription group"),
        max_length=120,
        blank=True,
        validators=[validate_share_group_or_empty],
        help_text=_l("Subscribe as $share/<group>/<filter> so workers split the load."),
    )
    actions = ActionsField(
        _l("actions"), default=list, blank=True, validators=[validate_actions_field]
    )
    messages_received = models.PositiveBigIntegerField(default=0, editable=False)
    actions_executed = models.PositiveBigIntegerField(default=0, editable=False)
    actions_failed = models.PositiveBigIntegerField(default=0, editable=False)
    last_message_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    # What the broker answered in SUBACK to the subscription as it stands: the QoS
    # it granted (it may grant less than `qos`, e.g. Mosquitto's `max_qos`), or
    # why it refused it (the runtime then disables the subscription). Both are
    # forgotten when the filter, QoS or enabled state changes: they described a
    # subscription that no longer exists.
    granted_qos = models.PositiveSmallIntegerField(
        _l("granted QoS"), null=True, blank=True, editable=False
    )
    # Also set for a stored filter the broker would drop the connection on, which
    # the runtime refuses to send. A database default too: code of the previous
    # release (and its migrations' historical models) inserts rows without it.
    refused_reason = models.TextField(
        _l("refused by the broker"),
        blank=True,
        editable=False,
        default="",
        db_default="",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BrokerScopedQuerySet.as_manager()

    # The fields whose change makes the broker's last SUBACK answer stale.
    SUBACK_FIELDS = ("topic_filter", "shared_group", "qos", "enabled")
    # Their values as loaded, to notice that change on save.
    _subscribed_as: tuple[Any, ...] | None = None

    class Meta:
        ordering = ["broker", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker", "name"], name="subscription_unique_name_per_broker"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.topic_filter})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._subscribed_as not in (None, self._suback_key()):
            self.granted_qos = None
            self.refused_reason = ""
            update_fields = kwargs.get("update_fields")
            if update_fields is not None:
                kwargs["update_fields"] = {
                    *update_fields,
                    "granted_qos",
                    "refused_reason",
                }
        super().save(*args, **kwargs)
        self._subscribed_as = self._suback_key()

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Subscription:
        instance = super().from_db(db, field_names, values)
        if all(name in field_names for name in cls.SUBACK_FIELDS):
            instance._subscribed_as = instance._suback_key()
        return instance

    def _suback_key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.SUBACK_FIELDS)

    @property
    def granted_qos_differs(self) -> bool:
        """The broker granted another QoS than the one asked for."""
        return self.granted_qos is not None and self.granted_qos != self.qos

    def clean(self) -> None:
        if self.shared_group and self.topic_filter.startswith("$share/"):
            raise ValidationError(
                {"shared_group": _("The filter already names a $share group.")}
            )
        if self.shared_group and self.topic_filter:
            # The group's two levels count towards the broker's level limit.
            try:
                validate_topic_filter(self.subscribe_filter)
            except ValidationError as exc:
                raise ValidationError({"topic_filter": exc.messages}) from None

    @property
    def product(self) -> Product:
        return self.broker.product

    @property
    def subscribe_filter(self) -> str:
        """What goes into SUBSCRIBE: the filter, shared when a group is set."""
        if self.shared_group:
            return f"$share/{self.shared_group}/{self.topic_filter}"
        return self.topic_filter

    @property
    def match_filter(self) -> str:
        """The filter messages are matched against (without any $share prefix)."""
        if self.topic_filter.startswith("$share/"):
            return self.topic_filter.split("/", 2)[2]
        return self.topic_filter

    def message_context(
        self, *, topic: str, payload: bytes, qos: int, retain: bool, received_at: Any
    ) -> MessageContext:
        """A message on this subscription as its action templates see it."""
        broker = self.broker
        return MessageContext(
            topic=topic,
            payload=payload,
            qos=qos,
            retain=retain,
            received_at=received_at,
            broker={"id": broker.pk, "name": broker.name, "host": broker.host},
            subscription={
                "id": self.pk,
                "name": self.name,
                "topic_filter": self.topic_filter,
            },
        )


class PublishTemplate(models.Model):
    """A saved message an operator publishes again with one click."""

    broker = models.ForeignKey(
        Broker, on_delete=models.CASCADE, related_name="publish_templates"
    )
    name = models.CharField(_l("name"), max_length=120)
    topic = models.CharField(
        _l("topic"), max_length=65535, validators=[validate_topic_name]
    )
    payload = models.TextField(_l("payload"), blank=True)
    encoding = models.CharField(
        _l("encoding"),
        max_length=8,
        choices=PayloadEncoding.choices,
        default=PayloadEncoding.UTF8,
    )
    qos = models.PositiveSmallIntegerField(
        _l("QoS"), default=0, choices=[(0, "0"), (1, "1"), (2, "2")]
    )
    retain = models.BooleanField(_l("retain"), default=False)
    properties = models.JSONField(_l("MQTT 5 properties"), default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = BrokerScopedQuerySet.as_manager()

    class Meta:
        ordering = ["broker", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker", "name"], name="publish_template_unique_name"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def product(self) -> Product:
        return self.broker.product


class ProductMqttConfig(models.Model):
    """A product's MQTT settings for services that run their own listener: which
    broker is primary and how its topics are laid out."""

    product = models.OneToOneField(
        Product, on_delete=models.CASCADE, primary_key=True, related_name="mqtt_config"
    )
    primary_broker = models.ForeignKey(
        Broker, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    topic_prefix = models.CharField(_l("topic prefix"), max_length=500, blank=True)
    topic_pattern = models.CharField(_l("topic pattern"), max_length=500, blank=True)
    use_shared = models.BooleanField(_l("use shared subscriptions"), default=False)
    shared_group = models.CharField(
        _l("shared group"),
        max_length=120,
        blank=True,
        validators=[validate_share_group_or_empty],
    )
    qos = models.PositiveSmallIntegerField(
        _l("QoS"), default=1, choices=[(0, "0"), (1, "1"), (2, "2")]
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"MQTT settings of {self.product}"

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if self.use_shared and not self.shared_group:
            errors["shared_group"] = _("Shared subscriptions need a group name.")
        # Services build their filters from these: what the broker would refuse
        # (control characters, more than 200 levels) is refused here.
        for name in ("topic_prefix", "topic_pattern"):
            try:
                validate_topic_text(getattr(self, name))
            except ValidationError as exc:
                errors[name] = exc.messages
        if errors:
            raise ValidationError(errors)


class ServiceStatusReport(models.Model):
    """The connection state a product's own MQTT service reports about itself."""

    product = models.OneToOneField(
        Product, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    connected = models.BooleanField(default=False)
    last_connected_at = models.DateTimeField(null=True, blank=True)
    last_disconnected_at = models.DateTimeField(null=True, blank=True)
    messages_received = models.PositiveBigIntegerField(default=0)
    subscribed_topics_count = models.PositiveIntegerField(default=0)
    client_id = models.CharField(max_length=128, blank=True)
    broker_info = models.JSONField(default=dict, blank=True)
    connection_error = models.TextField(blank=True)
    reported_by = models.CharField(max_length=150, blank=True)
    reported_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.product}: {'connected' if self.connected else 'disconnected'}"
