"""Managed Mosquitto: how a broker is managed, its MQTT users, roles and ACL rules.

The database holds the desired state; `acl.services` applies it to the broker through
a backend (Dynamic Security plugin or password/acl files) and records how that went.
"""

from __future__ import annotations

import os
import re
import shlex
from types import SimpleNamespace
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _l

from acl.choices import Access, Management, ReloadMethod, SyncState
from brokers.models import Broker, BrokerScopedQuerySet
from brokers.secret_binding import binding_of, what_moved
from mqttadmin.lib.crypto import EncryptedTextField
from mqttadmin.lib.topics import (
    SHARE_PREFIX,
    validate_client_id,
    validate_mqtt_username,
    validate_topic_filter,
)
from mqttadmin.models import Product, ProductScopedQuerySet

ROLE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,119}$")
PATTERN_TOKENS = ("%u", "%c")


def validate_role_name(value: str) -> None:
    if not ROLE_NAME_RE.match(value or ""):
        raise ValidationError(
            _(
                "A role name is 1-120 letters, digits, _ . @ or -, starting with a "
                "letter or digit."
            ),
            code="role_name",
        )


def _check_mosquitto_acl_safe(value: str, what: str) -> None:
    """Mosquitto refuses ACL matches (and `%u` / `%c` patterns) for usernames and
    client ids with `+`, `#` or `/`. Only the users the portal manages on
    Mosquitto keep clear of them: a broker connection's own credentials follow
    MQTT's rules alone (RabbitMQ's `vhost:user`, for one)."""
    if any(ch in value for ch in "+#/"):
        raise ValidationError(
            _("%s must not contain +, # or / (Mosquitto's ACLs refuse them).") % what,
            code="acl_chars",
        )


def validate_managed_username(value: str) -> None:
    """An MQTT username both backends can hold: Mosquitto's ACL rules (no +, #, /),
    and a password file line `user:hash` (no colon)."""
    if not value:
        raise ValidationError(_("A username is required."), code="required")
    validate_mqtt_username(value)
    _check_mosquitto_acl_safe(value, _("Username"))
    if ":" in value:
        raise ValidationError(
            _("A username must not contain : (the password file's separator)."),
            code="colon",
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValidationError(
            _("A username must not contain control characters."), code="control"
        )


def validate_managed_client_id(value: str) -> None:
    """The client id a managed user is bound to: MQTT's rules and Mosquitto's ACL
    rules (no +, #, /)."""
    if value:
        validate_client_id(value)
        _check_mosquitto_acl_safe(value, _("Client id"))


def validate_rule_filter(value: str) -> None:
    """A topic filter as an ACL rule: MQTT's filter rules, %u/%c as whole levels,
    nothing an acl_file line could not carry."""
    validate_topic_filter(value)
    if value.startswith(SHARE_PREFIX):
        raise ValidationError(
            _("ACL rules apply to topics, not to $share/ subscriptions."),
            code="share",
        )
    if any(ch in value for ch in "\r\n\t") or value[:1].isspace():
        # The acl_file is line based and Mosquitto strips leading spaces.
        raise ValidationError(
            _("A rule's filter must not start with a space or contain line breaks."),
            code="whitespace",
        )
    for level in value.split("/"):
        if any(token in level for token in PATTERN_TOKENS) and level not in (
            PATTERN_TOKENS
        ):
            raise ValidationError(
                _("%u and %c must fill a whole level of the filter (“a/%u/#”)."),
                code="pattern_level",
            )


def validate_absolute_path(value: str) -> None:
    if value and not os.path.isabs(value):
        raise ValidationError(_("Give an absolute path."), code="relative")
    if value and any(ch in value for ch in "\r\n\x00"):
        raise ValidationError(_("A path must not contain line breaks."), code="path")


def validate_command(value: str) -> None:
    if not value:
        return
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise ValidationError(
            _("The command does not parse: %s") % exc, code="command"
        ) from None
    if not words:
        raise ValidationError(_("The command is empty."), code="command")


class ManagedBroker(models.Model):
    """How the portal manages a broker's users and ACLs, and how it reloads it.

    `dynsec` talks to the Dynamic Security plugin with admin credentials (the
    connection's own when left empty); `files` writes the password and ACL files and
    reloads the broker by signal or command.
    """

    broker = models.OneToOneField(
        Broker, on_delete=models.CASCADE, primary_key=True, related_name="management"
    )
    management = models.CharField(
        _l("management"),
        max_length=10,
        choices=Management.choices,
        default=Management.NONE,
    )
    management_username = models.CharField(
        _l("admin username"),
        max_length=256,
        blank=True,
        validators=[validate_mqtt_username],
        help_text=_l("Dynamic Security admin; empty uses the connection's username."),
    )
    management_password = EncryptedTextField(_l("admin password"), blank=True)
    # Where the admin password may be sent: the broker's destinations and TLS
    # settings when it was saved (see brokers.secret_binding). An operator may move
    # the connection elsewhere; the admin password must not follow it.
    management_bound_to = models.JSONField(default=dict, blank=True, editable=False)
    password_file = models.CharField(
        _l("password file"),
        max_length=1024,
        blank=True,
        validators=[validate_absolute_path],
        help_text=_l("Mosquitto's password_file, e.g. /etc/mosquitto/passwd."),
    )
    acl_file = models.CharField(
        _l("ACL file"),
        max_length=1024,
        blank=True,
        validators=[validate_absolute_path],
        help_text=_l("Mosquitto's acl_file, e.g. /etc/mosquitto/acl."),
    )
    reload_method = models.CharField(
        _l("reload method"),
        max_length=10,
        choices=ReloadMethod.choices,
        default=ReloadMethod.SIGNAL,
    )
    pid_file = models.CharField(
        _l("pid file"),
        max_length=1024,
        blank=True,
        validators=[validate_absolute_path],
        help_text=_l("Mosquitto's pid_file, for reloading by SIGHUP."),
    )
    reload_command = models.CharField(
        _l("reload command"),
        max_length=1024,
        blank=True,
        validators=[validate_command],
        help_text=_l("Run without a shell, e.g. systemctl reload mosquitto."),
    )
    restart_command = models.CharField(
        _l("restart command"),
        max_length=1024,
        blank=True,
        validators=[validate_command],
        help_text=_l("Run without a shell, e.g. systemctl restart mosquitto."),
    )
    last_sync_state = models.CharField(
        max_length=10, choices=SyncState.choices, blank=True, editable=False
    )
    last_sync_error = models.TextField(blank=True, editable=False)
    last_sync_at = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BrokerScopedQuerySet.as_manager()

    SECRET_FIELDS = ("management_password",)
    # Settings that reach the portal's own host (files it writes, commands it runs).
    HOST_FIELDS = (
        "password_file",
        "acl_file",
        "pid_file",
        "reload_command",
        "restart_command",
    )
    FIELDS = (
        "management",
        "management_username",
        "management_password",
        "reload_method",
        *HOST_FIELDS,
    )

    class Meta:
        verbose_name = _l("managed broker")

    def __str__(self) -> str:
        return f"{self.broker}: {self.get_management_display()}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Derived state, not a side effect: an admin password is bound to where the
        # broker points when it is entered. Whoever takes a newly typed password
        # empties the binding first (management_update, the admin form).
        bound = self.management_bound_to
        if not self.management_password:
            self.management_bound_to = {}
        elif not bound:
            self.management_bound_to = binding_of(self.broker)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and self.management_bound_to != bound:
            kwargs["update_fields"] = {*update_fields, "management_bound_to"}
        super().save(*args, **kwargs)

    def management_password_moved(self) -> str | None:
        """Why the stored admin password may not be sent to the broker as it is now
        configured (its host, port or TLS changed since it was entered), or None."""
        if not self.management_password or not self.management_bound_to:
            return None
        saved = SimpleNamespace(**self.management_bound_to)
        return what_moved(saved, self.broker)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.management == Management.FILES:
            for name in ("password_file", "acl_file"):
                if not getattr(self, name):
                    errors[name] = _("The files backend needs this path.")
            if self.password_file and self.password_file == self.acl_file:
                errors["acl_file"] = _(
                    "The ACL file must differ from the password file."
                )
            if self.broker_id:
                pinned = list(
                    MqttUser.objects.filter(broker_id=self.broker_id)
                    .exclude(client_id="")
                    .order_by("username")
                    .values_list("username", flat=True)[:5]
                )
                if pinned:
                    errors["management"] = _(
                        "The files backend cannot enforce a client id, and these "
                        "users have one: %(users)s. Clear their client ids first."
                    ) % {"users": ", ".join(pinned)}
        if self.management == Management.FILES or self.pid_file or self.reload_command:
            if self.reload_method == ReloadMethod.SIGNAL and not self.pid_file:
                errors["pid_file"] = _("Reloading by signal needs the pid file.")
            if self.reload_method == ReloadMethod.COMMAND and not self.reload_command:
                errors["reload_command"] = _("Reloading by command needs a command.")
        if errors:
            raise ValidationError(errors)

    @property
    def product(self) -> Product:
        return self.broker.product

    @property
    def is_managed(self) -> bool:
        return self.management != Management.NONE


class MqttRole(models.Model):
    """A named set of ACL rules on one broker, given to MQTT users."""

    broker = models.ForeignKey(
        Broker, on_delete=models.CASCADE, related_name="mqtt_roles"
    )
    name = models.CharField(_l("name"), max_length=120, validators=[validate_role_name])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BrokerScopedQuerySet.as_manager()

    class Meta:
        ordering = ["broker", "name"]
        verbose_name = _l("MQTT role")
        constraints = [
            models.UniqueConstraint(
                fields=["broker", "name"], name="mqttrole_unique_name_per_broker"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def product(self) -> Product:
        return self.broker.product


class MqttRuleQuerySet(ProductScopedQuerySet):
    product_path = "role__broker__product"


class MqttRule(models.Model):
    """One ACL rule of a role: access to a topic filter, with a priority (higher
    first, as the Dynamic Security plugin orders ACLs)."""

    role = models.ForeignKey(MqttRole, on_delete=models.CASCADE, related_name="rules")
    topic = models.CharField(
        _l("topic filter"), max_length=1024, validators=[validate_rule_filter]
    )
    access = models.CharField(_l("access"), max_length=10, choices=Access.choices)
    priority = models.IntegerField(_l("priority"), default=0)

    objects = MqttRuleQuerySet.as_manager()

    class Meta:
        ordering = ["role", "-priority", "id"]
        verbose_name = _l("MQTT ACL rule")
        constraints = [
            models.UniqueConstraint(
                fields=["role", "topic"], name="mqttrule_unique_topic_per_role"
            )
        ]

    def __str__(self) -> str:
        return f"{self.access} {self.topic}"

    @property
    def is_pattern(self) -> bool:
        """Whether the filter names the client (%c) or user (%u)."""
        return any(token in self.topic for token in PATTERN_TOKENS)


class MqttUser(models.Model):
    """An MQTT client account on a managed broker.

    Only the `$7$` hash of its password is kept (what the password file needs); the
    plain password reaches the Dynamic Security plugin once, when it is set.
    """

    broker = models.ForeignKey(
        Broker, on_delete=models.CASCADE, related_name="mqtt_users"
    )
    username = models.CharField(
        _l("username"), max_length=256, validators=[validate_managed_username]
    )
    password_hash = models.CharField(_l("password hash"), max_length=300, blank=True)
    # Dynamic Security takes plain passwords only: when setting one failed, the
    # portal cannot send it later and says so until the password is set again.
    password_pending = models.BooleanField(default=False, editable=False)
    enabled = models.BooleanField(_l("enabled"), default=True)
    client_id = models.CharField(
        _l("client id"),
        max_length=128,
        blank=True,
        validators=[validate_managed_client_id],
        help_text=_l("When set, this user may connect only with this client id."),
    )
    roles = models.ManyToManyField(
        MqttRole, blank=True, related_name="users", verbose_name=_l("roles")
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BrokerScopedQuerySet.as_manager()

    SECRET_FIELDS = ("password_hash",)

    class Meta:
        ordering = ["broker", "username"]
        verbose_name = _l("MQTT user")
        constraints = [
            models.UniqueConstraint(
                fields=["broker", "username"], name="mqttuser_unique_name_per_broker"
            )
        ]

    def __str__(self) -> str:
        return self.username

    def clean(self) -> None:
        # Mosquitto's password and ACL files have no place for a client id: pinned
        # there, any client could still log in as this user under another id.
        if self.client_id and self.broker_id:
            management = (
                ManagedBroker.objects.filter(broker_id=self.broker_id)
                .values_list("management", flat=True)
                .first()
            )
            if management == Management.FILES:
                raise ValidationError(
                    {
                        "client_id": _(
                            "The files backend cannot enforce a client id (Mosquitto's "
                            "password and ACL files have no place for it): leave it "
                            "empty, or manage this broker with Dynamic Security."
                        )
                    }
                )

    @property
    def product(self) -> Product:
        return self.broker.product

    def role_names(self) -> list[str]:
        return sorted(role.name for role in self.roles.all())


def audit_fields_of_user(user: MqttUser) -> dict[str, Any]:
    """What the audit log records of a user (the hash only as a masked secret)."""
    return {
        "username": user.username,
        "enabled": user.enabled,
        "client_id": user.client_id,
        "roles": user.role_names() if user.pk else [],
        "password_hash": user.password_hash,
    }


def audit_fields_of_role(role: MqttRole) -> dict[str, Any]:
    return {
        "name": role.name,
        "rules": [
            {"topic": r.topic, "access": r.access, "priority": r.priority}
            for r in role.rules.all()
        ]
        if role.pk
        else [],
    }
