"""Private files: the portal's var/ directory, its SQLite database and the secrets
it generates there (secret key, encryption keys, initial admin password, ...).

Secrets are never readable by other local users, not even for the moment between
creating and chmod-ing a file: they are written to a new temporary file opened
with O_CREAT|O_EXCL and mode 0600 in the same directory, then moved into place.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# SQLite's companions of a database file (write-ahead log, shared memory, journal).
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def private_directory(path: Path) -> Path:
    """Create `path` (and parents) if missing; make it 0700 either way."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def _temporary_beside(path: Path) -> tuple[int, Path]:
    while True:
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(
                candidate,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                PRIVATE_FILE_MODE,
            )
        except FileExistsError:
            continue
        return fd, candidate


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, mode 0600 (replacing what is there)."""
    fd, temporary = _temporary_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def create_private(path: Path, text: str) -> bool:
    """Create `path` holding `text`, mode 0600, unless it exists already.

    True when this call created it. Two processes starting at once both may try:
    the file is linked into place, which fails if the other got there first, so
    nobody overwrites a secret the other is already using.
    """
    if path.exists():
        return False
    fd, temporary = _temporary_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError:
            # A file system without hard links: a rename is still atomic.
            if path.exists():
                return False
            os.replace(temporary, path)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def private_sqlite(path: Path) -> None:
    """Make the SQLite database at `path` (and its -wal/-shm) 0600, creating an
    empty database file first: SQLite gives the -wal and -shm files it creates
    later the mode of the database file."""
    with contextlib.suppress(FileExistsError):
        os.close(
            os.open(
                path,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                PRIVATE_FILE_MODE,
            )
        )
    for suffix in SQLITE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", PRIVATE_FILE_MODE)
