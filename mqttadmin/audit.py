"""Recording changes in the audit log.

Services call `audit_record` for every change. Where the change came from (page, API,
admin) is taken from the request being served, set by `AuditSourceMiddleware`, so
services need not be told.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models

from mqttadmin.lib.crypto import EncryptedField, Secret
from mqttadmin.models import AuditEntry, AuditSource, Product

SECRET_MASK = "***"  # noqa: S105 (a mask, not a password)

current_source: contextvars.ContextVar[str] = contextvars.ContextVar(
    "audit_source", default=AuditSource.SYSTEM
)


def source_for_path(path: str) -> str:
    if path.startswith("/api/"):
        return AuditSource.API
    if path.startswith("/admin/"):
        return AuditSource.ADMIN
    return AuditSource.PAGE


def _plain(value: Any) -> Any:
    """A JSON-safe rendering of a field value."""
    if isinstance(value, models.Model):
        return value.pk
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    return str(value)


def snapshot(instance: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """Field values of `instance`, for diffing before and after a change.

    An encrypted field says itself what may be recorded (`audit_values`): its secrets
    come wrapped in Secret, so `diff()` masks them whatever the caller passes as
    `secret_fields`.
    """
    values: dict[str, Any] = {}
    for name in fields:
        value = _plain(getattr(instance, name, None))
        try:
            field = instance._meta.get_field(name)
        except FieldDoesNotExist:
            field = None
        if isinstance(field, EncryptedField):
            values.update(field.audit_values(name, value))
        else:
            values[name] = value
    return values


def _masked(value: Any) -> str | None:
    if isinstance(value, Secret):
        value = value.value
    return SECRET_MASK if value else None


def diff(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    secret_fields: Iterable[str] = (),
) -> dict[str, list[Any]]:
    """`{field: [old, new]}` for fields that changed; secrets are masked."""
    secrets = set(secret_fields)
    changes: dict[str, list[Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name in secrets or isinstance(old, Secret) or isinstance(new, Secret):
            changes[name] = [_masked(old), _masked(new)]
        else:
            changes[name] = [old, new]
    return changes


def audit_record(
    *,
    actor: Any,
    action: str,
    target: models.Model | None = None,
    product: Product | None = None,
    changes: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> AuditEntry:
    """Write one audit entry. `actor` may be None for system changes."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    if product is None and target is not None:
        product = _product_of(target)
    return AuditEntry.objects.create(
        actor=user,
        actor_name=user.get_username() if user else "system",
        product=product,
        source=source or current_source.get(),
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None and target.pk else "",
        target_repr=str(target)[:200] if target is not None else "",
        changes=dict(changes or {}),
    )


def _product_of(target: models.Model) -> Product | None:
    if isinstance(target, Product):
        return target if target.pk else None
    product = getattr(target, "product", None)
    return product if isinstance(product, Product) else None
