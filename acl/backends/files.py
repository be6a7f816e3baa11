"""The files backend: Mosquitto's password_file and acl_file, then a reload.

Both files are rendered from the desired state, checked in memory, written to a
temporary file in the same directory, fsynced, re-read and checked again, the
previous version kept as `<file>.bak`, and moved into place with os.replace. Only
then is the broker reloaded (SIGHUP or the configured command): Mosquitto 2.1 quits
on an invalid file at reload.

The portal owns both files: whatever else is in them is reported by a sync and
replaced on the next write.

Mapping and its limits:
- password_file: `user:$7$...` for every enabled user with a password; disabled
  users are left out of both files.
- acl_file: per user the union of their roles' rules, `topic read|write|readwrite
  <filter>`, deny as `topic deny <filter>`. The acl_file has no priorities:
  Mosquitto takes the first matching line of a user's block, so deny lines come
  first (then by priority, highest first), and a deny always wins within a user.
- Rules naming %u or %c become `pattern` lines, which Mosquitto applies to every
  client (not just the users holding the role); they are written while at least one
  enabled user holds such a role, and are checked after the user's own lines.
- A user's client id cannot be enforced here (the files have no place for it), so
  one is refused for users of a files-managed broker (MqttUser.clean, and a switch
  to this backend while users have one); a sync reports any found all the same.
  %c in a pattern is whatever id the client sent: with this backend any client
  can pick any client id, so %c patterns are spoofable (use %u, or Dynamic
  Security with client ids, to tie topics to an identity).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError

from acl.backends.base import (
    ApplyError,
    Change,
    DesiredState,
    Drift,
    RuleSpec,
    SyncOutcome,
    UserSpec,
)
from acl.choices import Access
from acl.hashing import parse_password_hash
from acl.lifecycle import LifecycleUnavailable, run_lifecycle
from mqttadmin.lib.topics import validate_topic_filter

ACL_HEADER = (
    "# Written by MQTT Admin: changes made here are replaced on its next write.\n"
    "# acl_file has no priorities: deny lines come first in each block, then the\n"
    "# rest by priority. pattern lines (%u, %c) apply to every client; %c is the\n"
    "# client id the client chose, which nothing here checks.\n"
)
ACL_ACCESS = {"read", "write", "readwrite", "deny"}
PASSWORD_MODE = 0o640
ACL_MODE = 0o644
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


class FileValidationError(ApplyError):
    """A rendered file does not parse the way Mosquitto reads it."""


# --- Rendering ----------------------------------------------------------------


def _ordered(rules: list[RuleSpec]) -> list[RuleSpec]:
    """Deny first, then by priority (highest first), without repeats."""
    seen: set[tuple[str, str]] = set()
    result = []
    for rule in sorted(rules, key=lambda r: (r.access != Access.DENY, -r.priority)):
        key = (rule.access, rule.topic)
        if key not in seen:
            seen.add(key)
            result.append(rule)
    return result


def _active_users(state: DesiredState) -> list[UserSpec]:
    return [u for u in state.users if u.enabled]


def render_password_file(state: DesiredState) -> str:
    """One `user:$7$...` line per enabled user with a password (no comments: the
    password file has none)."""
    return "".join(
        f"{user.username}:{user.password_hash}\n"
        for user in sorted(_active_users(state), key=lambda u: u.username)
        if user.password_hash
    )


def acl_blocks(state: DesiredState) -> tuple[list[str], dict[str, list[str]]]:
    """(pattern lines, {username: topic lines}) as the acl_file will hold them."""
    patterns: list[RuleSpec] = []
    blocks: dict[str, list[str]] = {}
    for user in sorted(_active_users(state), key=lambda u: u.username):
        rules: list[RuleSpec] = []
        for name in user.roles:
            role = state.role(name)
            if role is None:
                continue
            for rule in role.rules:
                (patterns if rule.is_pattern else rules).append(rule)
        lines = [f"topic {rule.access} {rule.topic}" for rule in _ordered(rules)]
        if lines:
            blocks[user.username] = lines
    pattern_lines = [
        f"pattern {rule.access} {rule.topic}" for rule in _ordered(patterns)
    ]
    return pattern_lines, blocks


def render_acl_file(state: DesiredState) -> str:
    patterns, blocks = acl_blocks(state)
    parts = [ACL_HEADER]
    if patterns:
        parts.append("\n" + "".join(f"{line}\n" for line in patterns))
    for username, lines in blocks.items():
        parts.append(f"\nuser {username}\n" + "".join(f"{line}\n" for line in lines))
    return "".join(parts)


# --- Validation (re-parsing what was written) ------------------------------------


def parse_password_file(text: str, where: str = "password_file") -> dict[str, str]:
    """{username: $7$ value}; FileValidationError naming the line otherwise."""
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        username, sep, value = line.partition(":")
        if not sep or not username or any(ch.isspace() for ch in username):
            raise FileValidationError(f"{where}:{number}: not a user:hash line")
        try:
            parse_password_hash(value)
        except ValueError as exc:
            raise FileValidationError(f"{where}:{number}: {username}: {exc}") from None
        if username in users:
            raise FileValidationError(f"{where}:{number}: {username} appears twice")
        users[username] = value
    return users


def parse_acl_file(
    text: str, where: str = "acl_file"
) -> tuple[list[str], dict[str, list[str]]]:
    """(pattern lines, {user: topic lines}) the way Mosquitto reads the file."""
    patterns: list[str] = []
    blocks: dict[str, list[str]] = {}
    user: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _sep, rest = line.strip().partition(" ")
        if keyword == "user":
            user = rest.strip()
            if not user:
                raise FileValidationError(f"{where}:{number}: user without a name")
            blocks.setdefault(user, [])
            continue
        if keyword not in ("topic", "pattern"):
            raise FileValidationError(f"{where}:{number}: unknown keyword {keyword!r}")
        access, _sep, topic = rest.strip().partition(" ")
        if not topic:
            access, topic = "readwrite", access
        topic = topic.lstrip(" ")
        if access not in ACL_ACCESS:
            raise FileValidationError(f"{where}:{number}: bad access {access!r}")
        try:
            validate_topic_filter(topic)
        except ValidationError as exc:
            raise FileValidationError(
                f"{where}:{number}: {' '.join(exc.messages)}"
            ) from None
        normalised = f"{keyword} {access} {topic}"
        if keyword == "pattern":
            patterns.append(normalised)
        elif user is None:
            blocks.setdefault("", []).append(normalised)  # anonymous clients
        else:
            blocks[user].append(normalised)
    return patterns, {name: lines for name, lines in blocks.items() if lines}


# --- Writing ------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: Path, content: str, validate: Any, new_mode: int) -> bool:
    """Write `content` to `path` as described above; False when it was unchanged.

    `validate(text)` re-parses what was written before it replaces anything.
    """
    try:
        if path.read_text(encoding="utf-8") == content:
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ApplyError(f"cannot read {path}: {exc.strerror}") from None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise ApplyError(f"cannot write in {path.parent}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        validate(tmp.read_text(encoding="utf-8"))
        if path.exists():
            # The broker may run as another user: keep the file's owner and mode.
            current = path.stat()
            os.chmod(tmp, stat.S_IMODE(current.st_mode))
            with suppress(PermissionError):
                os.chown(tmp, current.st_uid, current.st_gid)
            shutil.copy2(path, path.with_name(path.name + ".bak"))
        else:
            os.chmod(tmp, new_mode)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ApplyError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return True


@contextmanager
def _files_lock(path: Path) -> Iterator[None]:
    """One writer at a time: a thread lock, and flock for other processes."""
    key = str(path)
    with _thread_locks_guard:
        lock = _thread_locks.setdefault(key, threading.Lock())
    with lock:
        lock_path = path.with_name(f".{path.name}.lock")
        try:
            handle = open(lock_path, "a")  # noqa: SIM115 (held for the block)
        except OSError as exc:
            raise ApplyError(f"cannot lock {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


class FilesBackend:
    """Writes password_file and acl_file, validates them, reloads the broker."""

    def __init__(self, managed: Any) -> None:
        self.managed = managed
        self.password_path = Path(managed.password_file)
        self.acl_path = Path(managed.acl_file)

    def _write_and_reload(self, state: DesiredState, *, force_reload: bool) -> None:
        password_text = render_password_file(state)
        acl_text = render_acl_file(state)
        # Both are checked before either is written: never half an update.
        parse_password_file(password_text)
        parse_acl_file(acl_text)
        with _files_lock(self.password_path):
            changed = write_atomically(
                self.password_path, password_text, parse_password_file, PASSWORD_MODE
            )
            changed = (
                write_atomically(self.acl_path, acl_text, parse_acl_file, ACL_MODE)
                or changed
            )
        if changed or force_reload:
            self._reload()

    def _reload(self) -> None:
        try:
            outcome = run_lifecycle(self.managed.broker, self.managed, "reload")
        except LifecycleUnavailable as exc:
            raise ApplyError(f"files written, but {exc}") from None
        if not outcome.ok:
            detail = outcome.detail + (f": {outcome.output}" if outcome.output else "")
            raise ApplyError(f"files written, but reloading failed: {detail}")

    def apply_change(self, state: DesiredState, change: Change) -> list[str]:
        self._write_and_reload(state, force_reload=False)
        return []

    def sync(self, state: DesiredState, *, prune: bool = False) -> SyncOutcome:
        drift = self.drift(state)
        # The portal owns the files: unknown entries go with this write.
        pruned = [f"user {name}" for name in drift.unknown_users]
        self._write_and_reload(state, force_reload=True)
        # Saved before the rule, or written around it: say it is not enforced.
        errors = [
            f"user {user.username}: client_id {user.client_id!r} is not enforced by "
            "the files backend (any client id can log in as this user)"
            for user in state.users
            if user.client_id and user.enabled
        ]
        return SyncOutcome(drift=drift, pruned=pruned, errors=errors)

    def drift(self, state: DesiredState) -> Drift:
        """Compare the files on disk with what the portal writes."""
        drift = Drift()
        try:
            on_disk = self.password_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            on_disk = ""
        except OSError as exc:
            raise ApplyError(f"cannot read {self.password_path}: {exc}") from None
        try:
            have_users = parse_password_file(on_disk, str(self.password_path))
        except FileValidationError as exc:
            drift.differences.append(
                {"kind": "file", "name": str(self.password_path), "error": str(exc)}
            )
            have_users = {}
        want_users = parse_password_file(render_password_file(state))
        drift.unknown_users = sorted(set(have_users) - set(want_users))
        drift.missing_users = sorted(set(want_users) - set(have_users))
        for name in sorted(set(have_users) & set(want_users)):
            if have_users[name] != want_users[name]:
                drift.differences.append(
                    {"kind": "user", "name": name, "field": "password"}
                )
        try:
            acl_text = self.acl_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            acl_text = ""
        except OSError as exc:
            raise ApplyError(f"cannot read {self.acl_path}: {exc}") from None
        try:
            have_patterns, have_blocks = parse_acl_file(acl_text, str(self.acl_path))
        except FileValidationError as exc:
            drift.differences.append(
                {"kind": "file", "name": str(self.acl_path), "error": str(exc)}
            )
            return drift
        want_patterns, want_blocks = parse_acl_file(render_acl_file(state))
        if have_patterns != want_patterns:
            drift.differences.append(
                {
                    "kind": "acl",
                    "name": "(patterns)",
                    "broker": have_patterns,
                    "portal": want_patterns,
                }
            )
        for name in sorted(set(have_blocks) | set(want_blocks)):
            have, want = have_blocks.get(name, []), want_blocks.get(name, [])
            if have != want:
                drift.differences.append(
                    {
                        "kind": "acl",
                        "name": name or "(anonymous)",
                        "broker": have,
                        "portal": want,
                    }
                )
        return drift

    def export(self, state: DesiredState) -> dict[str, Any]:
        return {
            "backend": "files",
            "password_file": {
                "path": str(self.password_path),
                "content": render_password_file(state),
            },
            "acl_file": {"path": str(self.acl_path), "content": render_acl_file(state)},
        }
