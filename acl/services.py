"""Writes of the acl app: management settings, MQTT users and roles, sync, lifecycle.

Every change is saved and audited first (the database holds the desired state), then
applied to the broker at once. A failed apply keeps the change and reports
`failed` with the broker's reason; a later sync brings the broker in line.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from acl.backends import ApplyError, backend_for
from acl.backends.base import Change, DesiredState
from acl.backends.dynsec import DynsecBackend
from acl.backends.files import FilesBackend
from acl.choices import Management, SyncState
from acl.hashing import make_password_hash
from acl.lifecycle import LifecycleOutcome, LifecycleUnavailable, run_lifecycle
from acl.models import (
    ManagedBroker,
    MqttRole,
    MqttRule,
    MqttUser,
    audit_fields_of_role,
    audit_fields_of_user,
)
from brokers.models import Broker
from mqttadmin.audit import audit_record, diff, snapshot

MAX_PASSWORD_LENGTH = 1024
_apply_locks: dict[int, threading.Lock] = {}
_apply_locks_guard = threading.Lock()


def passwordless_note(username: str) -> str:
    return (
        _(
            "%s: the Dynamic Security plugin takes plain passwords only and the portal "
            "keeps none, so the broker lacks this user's current password: set it again"
        )
        % username
    )


@dataclass
class SyncResult:
    """How applying to the broker went: `applied`, or `failed` with the reason."""

    state: str
    error: str = ""

    @property
    def applied(self) -> bool:
        return self.state == SyncState.APPLIED

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "error": self.error or None}


@dataclass
class SyncReport:
    """The answer of a full sync: its result, the drift found, what was pruned."""

    sync: SyncResult
    drift: dict[str, Any] | None = None
    pruned: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sync": self.sync.as_dict(), "drift": self.drift, "pruned": self.pruned}


@dataclass
class _Applied:
    result: SyncResult
    management: str
    passwordless: list[str] = field(default_factory=list)


@contextmanager
def _broker_lock(broker_id: int) -> Iterator[None]:
    """Changes to one broker are applied one at a time (in this process)."""
    with _apply_locks_guard:
        lock = _apply_locks.setdefault(broker_id, threading.Lock())
    with lock:
        yield


# --- Management settings --------------------------------------------------------


def managed_of(broker: Broker) -> ManagedBroker:
    """The broker's management settings; an unsaved "not managed" row when none."""
    managed = ManagedBroker.objects.filter(broker=broker).first()
    if managed is None:
        managed = ManagedBroker(broker=broker)
    managed.broker = broker
    return managed


def can_change_host_settings(user: Any) -> bool:
    """Paths the portal writes and commands it runs act on the portal's own host,
    beyond any one product: only superusers set them."""
    return bool(getattr(user, "is_superuser", False))


def management_update(*, actor: Any, broker: Broker, **fields: Any) -> ManagedBroker:
    """Change how the broker is managed. Nothing is applied: a sync does that."""
    unknown = set(fields) - set(ManagedBroker.FIELDS)
    if unknown:
        raise ValueError(f"unknown management fields: {sorted(unknown)}")
    managed = managed_of(broker)
    created = managed._state.adding
    before = {} if created else snapshot(managed, ManagedBroker.FIELDS)
    host_changes = [
        name
        for name in ManagedBroker.HOST_FIELDS
        if name in fields and fields[name] != getattr(managed, name)
    ]
    if host_changes and not can_change_host_settings(actor):
        raise PermissionDenied(
            _("Only superusers set files and commands on the portal's host: %s.")
            % ", ".join(host_changes)
        )
    for name, value in fields.items():
        setattr(managed, name, value)
    if fields.get("management_password"):
        # Typed now: bound to where the broker points now (see ManagedBroker.save).
        managed.management_bound_to = {}
    managed.full_clean()
    with transaction.atomic():
        managed.save()
        changes = diff(
            before,
            snapshot(managed, ManagedBroker.FIELDS),
            ManagedBroker.SECRET_FIELDS,
        )
        if changes or created:
            audit_record(
                actor=actor,
                action="acl.management_update",
                target=managed,
                product=broker.product,
                changes=changes,
            )
    return managed


def _record(managed: ManagedBroker, result: SyncResult) -> None:
    if managed._state.adding:  # not managed: nothing to remember it on
        return
    managed.last_sync_state = result.state
    managed.last_sync_error = result.error
    managed.last_sync_at = timezone.now()
    ManagedBroker.objects.filter(pk=managed.pk).update(
        last_sync_state=result.state,
        last_sync_error=result.error,
        last_sync_at=managed.last_sync_at,
    )


def _apply(broker: Broker, change: Change) -> _Applied:
    managed = managed_of(broker)
    passwordless: list[str] = []
    try:
        backend = backend_for(managed)
        with _broker_lock(broker.pk):
            state = DesiredState.of_broker(broker)
            passwordless = backend.apply_change(state, change)
    except ApplyError as exc:
        result = SyncResult(SyncState.FAILED, str(exc))
    else:
        if passwordless:
            notes = [passwordless_note(name) for name in passwordless]
            result = SyncResult(SyncState.FAILED, "; ".join(notes))
        else:
            result = SyncResult(SyncState.APPLIED)
    _record(managed, result)
    return _Applied(result, managed.management, passwordless)


# --- MQTT users -------------------------------------------------------------------


def _validate_password(password: str) -> None:
    if not password:
        raise ValidationError({"password": _("A password is required.")})
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(
            {"password": _("At most %d characters.") % MAX_PASSWORD_LENGTH}
        )


def _validate_user(user: MqttUser, roles: Iterable[MqttRole]) -> None:
    user.full_clean(exclude=["broker"], validate_constraints=False)
    taken = MqttUser.objects.filter(broker=user.broker, username=user.username)
    if user.pk:
        taken = taken.exclude(pk=user.pk)
    if taken.exists():
        raise ValidationError(
            {"username": _("This broker already has a user with this username.")}
        )
    managed = managed_of(user.broker)
    admin_username = ""
    if managed.management == Management.DYNSEC:
        admin_username = managed.management_username or user.broker.username
    if admin_username and user.username == admin_username:
        raise ValidationError(
            {
                "username": _(
                    "This is the broker's management user; the portal does not manage "
                    "it as an MQTT user."
                )
            }
        )
    if any(role.broker_id != user.broker_id for role in roles):
        raise ValidationError({"roles": _("Roles must belong to the same broker.")})


def _settle_password(user: MqttUser, applied: _Applied, password_set: bool) -> None:
    """Remember whether the Dynamic Security plugin has this user's password."""
    pending = user.password_pending
    if password_set:
        pending = not (
            applied.result.applied and applied.management == Management.DYNSEC
        )
    if user.username in applied.passwordless:
        pending = True
    if pending != user.password_pending:
        user.password_pending = pending
        MqttUser.objects.filter(pk=user.pk).update(password_pending=pending)


def mqtt_user_create(
    *,
    actor: Any,
    broker: Broker,
    username: str,
    password: str,
    roles: Iterable[MqttRole] = (),
    enabled: bool = True,
    client_id: str = "",
) -> tuple[MqttUser, SyncResult]:
    """Add an MQTT user and apply it to the broker (the answer says how that went)."""
    roles = list(roles)
    _validate_password(password)
    user = MqttUser(
        broker=broker,
        username=username,
        enabled=enabled,
        client_id=client_id,
        password_hash=make_password_hash(password),
        password_pending=True,
    )
    _validate_user(user, roles)
    with transaction.atomic():
        user.save()
        user.roles.set(roles)
        audit_record(
            actor=actor,
            action="mqtt_user.create",
            target=user,
            changes=diff({}, audit_fields_of_user(user), MqttUser.SECRET_FIELDS),
        )
    applied = _apply(broker, Change("user", user.username, password=password))
    _settle_password(user, applied, password_set=True)
    return user, applied.result


def mqtt_user_update(
    *,
    actor: Any,
    user: MqttUser,
    password: str | None = None,
    **fields: Any,
) -> tuple[MqttUser, SyncResult]:
    """Change a user (a password of None keeps the current one), then apply."""
    unknown = set(fields) - {"username", "enabled", "client_id", "roles"}
    if unknown:
        raise ValueError(f"unknown MQTT user fields: {sorted(unknown)}")
    if "username" in fields and fields["username"] != user.username:
        raise ValidationError(
            {
                "username": _(
                    "The username cannot change: create a new user and delete this one."
                )
            }
        )
    before = audit_fields_of_user(user)
    roles = list(fields["roles"]) if "roles" in fields else list(user.roles.all())
    for name in ("enabled", "client_id"):
        if name in fields:
            setattr(user, name, fields[name])
    if password is not None:
        _validate_password(password)
        user.password_hash = make_password_hash(password)
        user.password_pending = True
    _validate_user(user, roles)
    with transaction.atomic():
        user.save()
        if "roles" in fields:
            user.roles.set(roles)
        changes = diff(before, audit_fields_of_user(user), MqttUser.SECRET_FIELDS)
        if changes:
            audit_record(
                actor=actor, action="mqtt_user.update", target=user, changes=changes
            )
    applied = _apply(user.broker, Change("user", user.username, password=password))
    _settle_password(user, applied, password_set=password is not None)
    return user, applied.result


def mqtt_user_delete(*, actor: Any, user: MqttUser) -> SyncResult:
    """Remove a user from the portal and from the broker."""
    broker = user.broker
    username = user.username
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="mqtt_user.delete",
            target=user,
            changes=diff(audit_fields_of_user(user), {}, MqttUser.SECRET_FIELDS),
        )
        user.delete()
    return _apply(broker, Change("user", username, deleted=True)).result


# --- MQTT roles -------------------------------------------------------------------


def _rules_from(role: MqttRole, rules: Iterable[dict[str, Any]]) -> list[MqttRule]:
    """Validated rule rows; errors are keyed `rules[<index>].<field>`."""
    objects: list[MqttRule] = []
    errors: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for index, data in enumerate(rules):
        rule = MqttRule(
            role=role,
            topic=data.get("topic", ""),
            access=data.get("access", ""),
            priority=data.get("priority", 0) or 0,
        )
        try:
            rule.full_clean(exclude=["role"], validate_constraints=False)
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                errors[f"rules[{index}].{name}"] = messages
        if rule.topic in seen:
            errors.setdefault(f"rules[{index}].topic", []).append(
                _("The same filter is in rule %d: one rule per filter.")
                % (seen[rule.topic] + 1)
            )
        seen.setdefault(rule.topic, index)
        objects.append(rule)
    if errors:
        raise ValidationError(errors)
    return objects


def _validate_role(role: MqttRole) -> None:
    role.full_clean(exclude=["broker"], validate_constraints=False)
    taken = MqttRole.objects.filter(broker=role.broker, name=role.name)
    if role.pk:
        taken = taken.exclude(pk=role.pk)
    if taken.exists():
        raise ValidationError({"name": _("This broker already has a role named so.")})


def mqtt_role_create(
    *, actor: Any, broker: Broker, name: str, rules: Iterable[dict[str, Any]] = ()
) -> tuple[MqttRole, SyncResult]:
    """Add a role with its rules and apply it to the broker."""
    role = MqttRole(broker=broker, name=name)
    _validate_role(role)
    rule_objects = _rules_from(role, rules)
    with transaction.atomic():
        role.save()
        for rule in rule_objects:
            rule.role = role
        MqttRule.objects.bulk_create(rule_objects)
        audit_record(
            actor=actor,
            action="mqtt_role.create",
            target=role,
            changes=diff({}, audit_fields_of_role(role)),
        )
    return role, _apply(broker, Change("role", role.name)).result


def mqtt_role_update(
    *,
    actor: Any,
    role: MqttRole,
    name: str | None = None,
    rules: Iterable[dict[str, Any]] | None = None,
) -> tuple[MqttRole, SyncResult]:
    """Rename a role and/or replace its rules, then apply."""
    before = audit_fields_of_role(role)
    old_name = role.name
    if name is not None:
        role.name = name
    _validate_role(role)
    rule_objects = _rules_from(role, rules) if rules is not None else None
    with transaction.atomic():
        role.save()
        if rule_objects is not None:
            role.rules.all().delete()
            MqttRule.objects.bulk_create(rule_objects)
        changes = diff(before, audit_fields_of_role(role))
        if changes:
            audit_record(
                actor=actor, action="mqtt_role.update", target=role, changes=changes
            )
    change = Change("role", role.name, old_name=old_name)
    return role, _apply(role.broker, change).result


def mqtt_role_delete(*, actor: Any, role: MqttRole) -> SyncResult:
    """Remove a role (its users lose it) here and on the broker."""
    broker = role.broker
    name = role.name
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="mqtt_role.delete",
            target=role,
            changes=diff(audit_fields_of_role(role), {}),
        )
        role.delete()
    return _apply(broker, Change("role", name, deleted=True)).result


# --- Sync, export, lifecycle ------------------------------------------------------


def acl_sync(*, actor: Any, broker: Broker, prune: bool = False) -> SyncReport:
    """Re-apply everything; report the drift found first, prune unknown entries
    (Dynamic Security) only when asked."""
    managed = managed_of(broker)
    report = SyncReport(SyncResult(SyncState.APPLIED))
    try:
        backend = backend_for(managed)
        with _broker_lock(broker.pk):
            state = DesiredState.of_broker(broker)
            outcome = backend.sync(state, prune=prune)
    except ApplyError as exc:
        report.sync = SyncResult(SyncState.FAILED, str(exc))
    else:
        report.drift = outcome.drift.as_dict()
        report.pruned = outcome.pruned
        errors = outcome.errors + [
            passwordless_note(name) for name in outcome.passwordless
        ]
        if outcome.passwordless:
            MqttUser.objects.filter(
                broker=broker, username__in=outcome.passwordless
            ).update(password_pending=True)
        if errors:
            report.sync = SyncResult(SyncState.FAILED, "; ".join(errors))
    _record(managed, report.sync)
    audit_record(
        actor=actor,
        action="acl.sync",
        target=broker,
        changes={
            "state": [None, report.sync.state],
            "prune": [None, prune],
            "drift_found": [None, bool(report.drift and report.drift["found"])],
            **({"pruned": [None, report.pruned]} if report.pruned else {}),
            **({"error": [None, report.sync.error[:500]]} if report.sync.error else {}),
        },
    )
    return report


def acl_export(broker: Broker) -> dict[str, Any]:
    """What the broker gets (passwords as hashes). An unmanaged broker shows both
    renderings, to help choose."""
    managed = managed_of(broker)
    state = DesiredState.of_broker(broker)
    if managed.is_managed:
        return backend_for(managed).export(state)
    preview = ManagedBroker(broker=broker)
    preview.password_file, preview.acl_file = "(password_file)", "(acl_file)"
    return {
        "backend": Management.NONE.value,
        "files": FilesBackend(preview).export(state),
        "dynsec": DynsecBackend(managed).export(state),
    }


def broker_lifecycle(*, actor: Any, broker: Broker, action: str) -> LifecycleOutcome:
    """Reload or restart the broker with its method; audited whatever happens.
    Raises LifecycleUnavailable when no method is configured."""
    managed = managed_of(broker)
    try:
        outcome = run_lifecycle(
            broker, None if managed._state.adding else managed, action
        )
    except LifecycleUnavailable as exc:
        audit_record(
            actor=actor,
            action=f"acl.lifecycle_{action}",
            target=broker,
            changes={"ok": [None, False], "detail": [None, str(exc)]},
        )
        raise
    audit_record(
        actor=actor,
        action=f"acl.lifecycle_{action}",
        target=broker,
        changes={
            "method": [None, outcome.method],
            "ok": [None, outcome.ok],
            "detail": [None, outcome.detail],
        },
    )
    return outcome
