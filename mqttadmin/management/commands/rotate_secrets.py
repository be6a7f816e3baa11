"""`manage.py rotate_secrets`: re-encrypt every stored secret under the newest key."""

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from mqttadmin.lib.crypto import encrypted_fields


class Command(BaseCommand):
    help = (
        "Re-encrypt stored secrets with the first key of MQTTADMIN_SECRET_KEYS. "
        "Run it after putting a new key first; then the old keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        with transaction.atomic():
            for model, field in encrypted_fields():
                # Reading decrypts with any key; update() encrypts with the newest.
                rows = model._default_manager.exclude(**{field: ""}).exclude(
                    **{f"{field}__isnull": True}
                )
                for pk, value in rows.values_list("pk", field):
                    model._default_manager.filter(pk=pk).update(**{field: value})
                    total += 1
        self.stdout.write(f"Re-encrypted {total} secret(s) under the newest key.")
