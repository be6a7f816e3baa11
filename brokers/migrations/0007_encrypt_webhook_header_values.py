"""Webhook header values are secrets: encrypt the ones stored in clear.

The data step runs while `actions` is still a plain JSONField in the migration
state, so it reads the stored (clear) values as they are and writes Fernet tokens;
only then does the field become ActionsField, which decrypts on read. Backwards,
the field goes back first and the tokens are decrypted into clear values again.
"""

from typing import Any

from django.db import migrations

import brokers.models
from mqttadmin.lib.crypto import decrypt, encrypt


def _with_header_values(actions: Any, transform: Any) -> Any:
    # A copy of brokers.actions.map_header_values as it was when this was written,
    # so later changes there cannot change what this migration does.
    if not isinstance(actions, list):
        return actions
    result = []
    for action in actions:
        if isinstance(action, dict) and isinstance(action.get("headers"), dict):
            action = {
                **action,
                "headers": {
                    name: transform(value) if isinstance(value, str) else value
                    for name, value in action["headers"].items()
                },
            }
        result.append(action)
    return result


def _rewrite(apps: Any, transform: Any) -> None:
    Subscription = apps.get_model("brokers", "Subscription")
    rows = Subscription.objects.exclude(actions=[]).values_list("pk", "actions")
    for pk, actions in rows:
        rewritten = _with_header_values(actions, transform)
        if rewritten != actions:
            Subscription.objects.filter(pk=pk).update(actions=rewritten)


def encrypt_header_values(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, encrypt)


def decrypt_header_values(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, decrypt)


class Migration(migrations.Migration):
    dependencies = [
        ("brokers", "0006_history_without_fk_check_and_runtime_workers"),
    ]

    operations = [
        migrations.RunPython(encrypt_header_values, decrypt_header_values),
        migrations.AlterField(
            model_name="subscription",
            name="actions",
            field=brokers.models.ActionsField(
                blank=True,
                default=list,
                validators=[brokers.models.validate_actions_field],
                verbose_name="actions",
            ),
        ),
    ]
