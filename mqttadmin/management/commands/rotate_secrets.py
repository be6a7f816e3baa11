"""`manage.py rotate_secrets`: re-encrypt every stored secret under the newest key."""

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from mqttadmin.lib.crypto import EncryptedField, encrypted_fields


class Command(BaseCommand):
    help = (
        "Re-encrypt stored secrets with the first key of MQTTADMIN_SECRET_KEYS. "
        "Run it after putting a new key first; then the old keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        with transaction.atomic():
            for model, name in encrypted_fields():
                field = model._meta.get_field(name)
                assert isinstance(field, EncryptedField)
                # Reading decrypts with any key; update() encrypts with the newest.
                # Rows without a secret (empty passwords, actions without headers)
                # are left alone.
                for pk, value in model._default_manager.values_list("pk", name):
                    count = field.secret_count(value)
                    if count:
                        model._default_manager.filter(pk=pk).update(**{name: value})
                        total += count
        self.stdout.write(f"Re-encrypted {total} secret(s) under the newest key.")
