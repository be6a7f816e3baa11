"""API tokens move from rest_framework.authtoken (stored in clear) to
django-rest-knox (stored as digests). Existing tokens keep working: each clear key
becomes a knox row with its SHA-512 digest, then the clear table is dropped."""

import hashlib

from django.db import migrations

CLEAR_TABLE = "authtoken_token"
# knox.settings.CONSTANTS.TOKEN_KEY_LENGTH: the clear prefix knox looks rows up by.
TOKEN_KEY_LENGTH = 15


def hash_clear_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if CLEAR_TABLE not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    quoted = schema_editor.quote_name(CLEAR_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {quoted}")  # noqa: S608
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        # knox.crypto.hash_token with knox's default SHA-512, frozen here.
        digest = hashlib.sha512(key.encode("utf-8")).hexdigest()
        token, _created = AuthToken.objects.get_or_create(
            digest=digest,
            defaults={
                "token_key": key[:TOKEN_KEY_LENGTH],
                "user_id": user_id,
                "expiry": None,
            },
        )
        AuthToken.objects.filter(pk=token.pk).update(created=created)
    schema_editor.execute(f"DROP TABLE {quoted}")
    # The app is gone: reinstalling it must create its table anew.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = %s", ["authtoken"])


class Migration(migrations.Migration):
    dependencies = [
        ("mqttadmin", "0003_user_sessions"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        migrations.RunPython(hash_clear_tokens, migrations.RunPython.noop),
    ]
