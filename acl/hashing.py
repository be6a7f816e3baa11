"""Mosquitto's `$7$` password hashes (PBKDF2-HMAC-SHA512), as `mosquitto_passwd` writes.

A password file line is `user:$7$<iterations>$<base64 salt>$<base64 hash>` with a
64-byte hash and standard base64 with padding. Mosquitto 2.0 accepts only 12-byte
salts and writes 101 iterations; 2.1 writes 64-byte salts and 1000 iterations but
reads 12-byte salts too, so 12 bytes serve both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64
_B64 = r"[A-Za-z0-9+/]+={0,2}"
HASH_RE = re.compile(
    rf"^\$7\$(?P<iterations>[1-9][0-9]*)\$(?P<salt>{_B64})\$(?P<hash>{_B64})$"
)


@dataclass(frozen=True)
class PasswordHash:
    iterations: int
    salt: bytes
    digest: bytes


def _digest(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(
        "sha512", password.encode("utf-8"), salt, iterations, HASH_BYTES
    )


def make_password_hash(
    password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS
) -> str:
    """The `$7$...` value of a password file line, with a fresh 12-byte salt."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = _digest(password, salt, iterations)
    return "$7${}${}${}".format(
        iterations,
        base64.b64encode(salt).decode("ascii"),
        base64.b64encode(digest).decode("ascii"),
    )


def parse_password_hash(value: str) -> PasswordHash:
    """Split a `$7$` value; ValueError when it is not one Mosquitto 2.0 reads."""
    match = HASH_RE.match(value)
    if not match:
        raise ValueError("not a $7$<iterations>$<salt>$<hash> value")
    try:
        salt = base64.b64decode(match["salt"], validate=True)
        digest = base64.b64decode(match["hash"], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64: {exc}") from None
    if len(salt) != SALT_BYTES:
        raise ValueError(f"the salt is {len(salt)} bytes, Mosquitto 2.0 needs 12")
    if len(digest) != HASH_BYTES:
        raise ValueError(f"the hash is {len(digest)} bytes, not 64")
    return PasswordHash(int(match["iterations"]), salt, digest)


def verify_password(password: str, value: str) -> bool:
    """Whether `password` matches the `$7$` value (constant-time comparison)."""
    try:
        parsed = parse_password_hash(value)
    except ValueError:
        return False
    return hmac.compare_digest(
        _digest(password, parsed.salt, parsed.iterations), parsed.digest
    )
