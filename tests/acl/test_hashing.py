"""The $7$ hasher: checked against an independent PBKDF2 computation (the broker's
side is in test_files: Mosquitto accepts the lines)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from acl.hashing import make_password_hash, parse_password_hash, verify_password


def independent_check(password: str, line_value: str) -> bool:
    """Mosquitto's rule, written out again: $7$<iterations>$<salt>$<hash>."""
    _empty, kind, iterations, salt, digest = line_value.split("$")
    assert kind == "7"
    expected = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt), int(iterations)
    )
    return expected == base64.b64decode(digest)


@pytest.mark.parametrize("password", ["s3cret", "pässwörd ✓", "x" * 300, " "])
def test_a_hash_verifies_with_an_independent_pbkdf2(password: str) -> None:
    value = make_password_hash(password)
    assert independent_check(password, value)
    assert not independent_check(password + "!", value)
    assert verify_password(password, value)
    assert not verify_password(password + "!", value)


def test_the_hash_has_the_shape_mosquitto_2_0_and_2_1_read() -> None:
    value = make_password_hash("pw")
    assert re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", value)
    parsed = parse_password_hash(value)
    assert (parsed.iterations, len(parsed.salt), len(parsed.digest)) == (101, 12, 64)
    assert make_password_hash("pw") != value  # a fresh salt each time


def test_a_known_vector() -> None:
    salt = bytes(range(12))
    value = make_password_hash("password", salt=salt)
    expected = hashlib.pbkdf2_hmac("sha512", b"password", salt, 101)
    assert value == "$7$101$AAECAwQFBgcICQoL$" + base64.b64encode(expected).decode()


@pytest.mark.parametrize(
    "value",
    [
        "$6$AAAA$BBBB",
        "$7$101$" + base64.b64encode(bytes(64)).decode() + "$" + "A" * 88,
        "$7$101$AAECAwQFBgcICQoL$" + base64.b64encode(bytes(32)).decode(),
        "$7$0$AAECAwQFBgcICQoL$" + base64.b64encode(bytes(64)).decode(),
    ],
)
def test_values_mosquitto_2_0_would_refuse_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_password_hash(value)
