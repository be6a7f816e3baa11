"""Secrets at rest: EncryptedTextField, ciphertext in the column, key rotation."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from brokers.models import Broker, Subscription
from mqttadmin.lib import crypto
from mqttadmin.lib.crypto import SecretDecryptionError, encrypted_fields
from tests.factories import make_broker

pytestmark = pytest.mark.django_db

SECRET = "hunter2-Ünïcode-✓"
KEY_PEM = "-----BEGIN PRIVATE KEY-----\nnot checked by the field\n"


@pytest.fixture(autouse=True)
def _fresh_fernet() -> Iterator[None]:
    # fernet() is cached per process: reset it around every key change.
    crypto.fernet.cache_clear()
    yield
    crypto.fernet.cache_clear()


def use_keys(*keys: bytes) -> override_settings:
    crypto.fernet.cache_clear()
    return override_settings(MQTTADMIN_SECRET_KEYS=[k.decode() for k in keys])


def make_secret_broker(password: str = SECRET, client_key: str = KEY_PEM) -> Broker:
    return make_broker(
        name="Secrets",
        host="h.example",
        via_service=False,
        username="user",
        password=password,
        client_key=client_key,
    )


def raw_columns(pk: int) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT password, client_key FROM brokers_broker WHERE id = %s", [pk]
        )
        return cursor.fetchone()


def test_round_trip() -> None:
    broker = make_secret_broker()
    loaded = Broker.objects.get(pk=broker.pk)
    assert (loaded.password, loaded.client_key) == (SECRET, KEY_PEM)
    assert Broker.objects.values_list("password", flat=True).get() == SECRET


def test_the_column_holds_ciphertext_only() -> None:
    broker = make_secret_broker()
    password, client_key = raw_columns(broker.pk)
    for column, plain in ((password, SECRET), (client_key, KEY_PEM)):
        assert column != plain and "hunter2" not in column and "PRIVATE" not in column
        assert crypto.decrypt(column) == plain
        # A Fernet token: url-safe base64 of the version byte 0x80 and a timestamp.
        assert column.startswith("gAAAAA")


def test_the_same_secret_encrypts_differently_each_time() -> None:
    first = make_secret_broker()
    second = Broker.objects.create(
        product=first.product, name="Twin", host="h", username="u", password=SECRET
    )
    assert raw_columns(first.pk)[0] != raw_columns(second.pk)[0]


def test_empty_secrets_stay_empty() -> None:
    broker = make_secret_broker(password="", client_key="")
    assert raw_columns(broker.pk) == ("", "")
    assert Broker.objects.get(pk=broker.pk).password == ""


def test_updates_are_encrypted_too() -> None:
    broker = make_secret_broker()
    Broker.objects.filter(pk=broker.pk).update(password="changed-secret")
    assert "changed" not in raw_columns(broker.pk)[0]
    assert Broker.objects.get(pk=broker.pk).password == "changed-secret"


def test_encrypted_fields_are_found() -> None:
    assert {(m.__name__, f) for m, f in encrypted_fields()} >= {
        ("Broker", "password"),
        ("Broker", "client_key"),
        ("Subscription", "actions"),
    }


def test_rotation_with_a_new_key_first() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    with use_keys(old):
        broker = make_secret_broker()
        before = raw_columns(broker.pk)

    # The new key first, the old one still there: old rows stay readable.
    with use_keys(new, old):
        assert Broker.objects.get(pk=broker.pk).password == SECRET
        call_command("rotate_secrets", stdout=io.StringIO())
        after = raw_columns(broker.pk)
        assert after != before

    for token, plain in zip(after, (SECRET, KEY_PEM), strict=True):
        assert Fernet(new).decrypt(token.encode()).decode() == plain
        with pytest.raises(InvalidToken):
            Fernet(old).decrypt(token.encode())

    # Once rotated, the old key can go.
    with use_keys(new):
        loaded = Broker.objects.get(pk=broker.pk)
        assert (loaded.password, loaded.client_key) == (SECRET, KEY_PEM)


def raw_header(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT actions FROM brokers_subscription WHERE id = %s", [pk])
        (value,) = cursor.fetchone()
    actions = json.loads(value) if isinstance(value, str) else value
    return actions[0]["headers"]["Authorization"]


def test_rotation_covers_webhook_header_values(
    capsys: pytest.CaptureFixture,
) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    actions = [
        {
            "type": "webhook",
            "url": "https://h.example",
            "headers": {"Authorization": SECRET},
        },
        {"type": "telemetry"},
    ]
    with use_keys(old):
        broker = make_secret_broker(password="", client_key="")
        subscription = Subscription.objects.create(
            broker=broker, name="s", topic_filter="#", actions=actions
        )
        # Without headers: nothing to re-encrypt, not counted.
        Subscription.objects.create(
            broker=broker, name="t", topic_filter="t", actions=[{"type": "telemetry"}]
        )
        before = raw_header(subscription.pk)

    with use_keys(new, old):
        call_command("rotate_secrets")
        after = raw_header(subscription.pk)
    assert "Re-encrypted 1 secret(s)" in capsys.readouterr().out
    assert after != before
    assert Fernet(new).decrypt(after.encode()).decode() == SECRET
    with pytest.raises(InvalidToken):
        Fernet(old).decrypt(after.encode())
    with use_keys(new):
        assert Subscription.objects.get(pk=subscription.pk).actions == actions


def test_removing_a_key_before_rotation_is_a_clear_error() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    with use_keys(old):
        broker = make_secret_broker()
    with use_keys(new), pytest.raises(SecretDecryptionError, match="rotate_secrets"):
        Broker.objects.get(pk=broker.pk)


def test_rotate_secrets_reports_the_count(capsys: pytest.CaptureFixture) -> None:
    make_secret_broker()
    call_command("rotate_secrets")
    assert "Re-encrypted 2 secret(s)" in capsys.readouterr().out


def test_an_invalid_key_is_an_improperly_configured_error() -> None:
    with (
        override_settings(MQTTADMIN_SECRET_KEYS=["not-a-fernet-key"]),
        pytest.raises(ImproperlyConfigured, match="invalid Fernet key"),
    ):
        crypto.fernet.cache_clear()
        crypto.encrypt("x")
