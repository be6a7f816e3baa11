"""Secrets at rest: Fernet encryption with rotation (MultiFernet).

Keys come from MQTTADMIN_SECRET_KEYS (comma-separated, newest first). An embedded
install without keys gets one generated into var/ with a warning. Encrypt always uses
the newest key; decrypt tries each, so old rows stay readable until
`manage.py rotate_secrets` re-encrypts them.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from mqttadmin.lib.files import create_private

KEY_FILE = "secret_keys"


class SecretDecryptionError(RuntimeError):
    """A stored secret does not decrypt with any configured key."""


def _configured_keys() -> list[str]:
    keys = [k.strip() for k in settings.MQTTADMIN_SECRET_KEYS if k.strip()]
    if keys:
        return keys
    if not settings.MQTTADMIN_GENERATE_SECRET_KEYS:
        raise ImproperlyConfigured(
            "MQTTADMIN_SECRET_KEYS must be set (generate one with: python -c "
            '"from cryptography.fernet import Fernet; print(Fernet.generate_key()'
            '.decode())")'
        )
    path = settings.VAR_DIR / KEY_FILE
    if create_private(path, Fernet.generate_key().decode() + "\n"):
        warnings.warn(
            f"Generated an encryption key for stored secrets in {path}; back it up, "
            "or set MQTTADMIN_SECRET_KEYS.",
            stacklevel=2,
        )
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@functools.cache
def fernet() -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in _configured_keys()])
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"MQTTADMIN_SECRET_KEYS holds an invalid Fernet key: {exc}"
        ) from exc


def encrypt(plain: str) -> str:
    return fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise SecretDecryptionError(
            "A stored secret does not decrypt with MQTTADMIN_SECRET_KEYS: was a key "
            "removed before `manage.py rotate_secrets` ran?"
        ) from None


@dataclass(frozen=True, repr=False)
class Secret:
    """A secret value that compares by value but never shows itself.

    Audit snapshots wrap secrets in it: `diff()` still sees that a secret changed and
    records the mask, and a stray repr in a log or traceback shows no value.
    """

    value: Any

    def __repr__(self) -> str:
        return "Secret('***')"


class EncryptedField:
    """Mixin of model fields that keep secrets encrypted at rest.

    `rotate_secrets` finds every field with it (`encrypted_fields()`) and re-saves the
    rows that hold secrets: reading decrypts with any key, writing encrypts with the
    newest. The audit log asks it which parts of a value are secret.
    """

    def secret_count(self, value: Any) -> int:
        """How many encrypted secrets this (decrypted) value holds in the column."""
        raise NotImplementedError

    def audit_values(self, name: str, value: Any) -> dict[str, Any]:
        """What an audit snapshot records for the field, secrets wrapped in Secret."""
        raise NotImplementedError


class EncryptedTextField(EncryptedField, models.TextField):
    """Text kept encrypted in the database; Python code sees plain text.

    Empty and None stay as they are, so "no secret" is visible without decrypting.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value in (None, ""):
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return encrypt(value)

    def secret_count(self, value: Any) -> int:
        return 0 if value in (None, "") else 1

    def audit_values(self, name: str, value: Any) -> dict[str, Any]:
        return {name: Secret(value)}


def encrypted_fields() -> list[tuple[type[models.Model], str]]:
    """Every (model, field name) holding encrypted secrets."""
    from django.apps import apps

    return [
        (model, field.name)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedField)
    ]
