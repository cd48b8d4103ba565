"""Opening the SQLite database: pragmas that make it durable and concurrent, then migrations."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Collection, Iterable

import sqlite_utils

from edged.store.migrations import apply_migrations
from edged.store.transaction import write_transaction

__all__ = ["connect", "database_bytes", "open_database", "write_transaction"]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


def connect(path: Path | str, *, readonly: bool = False) -> sqlite_utils.Database:
    """A connection in autocommit mode: every transaction is opened explicitly (``db.atomic()``)."""
    if readonly:
        uri = f"file:{Path(path).resolve()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if not readonly:
        # WAL lets the status page and CLI read while the writer commits; NORMAL is durable
        # against process crashes (kill -9) and only risks the last commits on power loss.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return sqlite_utils.Database(conn)


class DatabaseDamaged(Exception):
    """The database file is corrupt or truncated; the message names it and says what to do."""

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = Path(path)
        self.detail = detail
        super().__init__(
            f"the database {self.path} is damaged ({detail}).\n"
            f"    Stop edged, then run `edged db recover` ({RECOVER_HINT}),"
            f" or move {self.path.name} (with its -wal and -shm files) aside to start with an empty one."
        )


RECOVER_HINT = "it copies what can still be read into a new file and keeps the damaged one beside it"
# SQLite's primary result codes for a damaged file (sqlite3.h): SQLITE_CORRUPT, SQLITE_NOTADB.
_DAMAGED_CODES = (11, 26)
_DAMAGED_WORDS = ("malformed", "not a database", "corrupt")


def sqlite_error_in(exc: sqlite3.Error, codes: Collection[int], words: Iterable[str]) -> bool:
    """Whether an sqlite3 error has one of SQLite's primary result ``codes`` (Python 3.11+ gives the
    code; 3.10 only the message, so ``words`` are looked for in it)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in codes
    return any(word in str(exc).lower() for word in words)


def is_damage(exc: BaseException) -> bool:
    """Whether an sqlite3 error says the file itself is damaged (not locked, not full, not missing)."""
    return isinstance(exc, sqlite3.DatabaseError) and sqlite_error_in(exc, _DAMAGED_CODES, _DAMAGED_WORDS)


def quick_check(db: sqlite_utils.Database, limit: int = 10) -> list[str]:
    """SQLite's PRAGMA quick_check (the b-trees and their pages, not the indexes' contents): the
    problems it finds, an empty list for a sound file. Reads every page once."""
    rows = [row[0] for row in db.execute(f"PRAGMA quick_check({int(limit)})").fetchall()]
    return [] if rows == ["ok"] else rows


def open_database(path: Path | str, *, check: bool = False) -> sqlite_utils.Database:
    """Open (creating if needed) the state database and bring its schema up to date.

    With ``check`` (the daemon, at start) an existing file is checked first (``quick_check``): a
    damaged one raises ``DatabaseDamaged`` instead of failing later, somewhere, with a raw error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists() and path.stat().st_size > 0
    db = None
    try:
        db = connect(path)
        if check and existed:
            problems = quick_check(db)
            if problems:
                raise DatabaseDamaged(path, "; ".join(problems[:3]))
        applied = apply_migrations(db)
    except sqlite3.DatabaseError as exc:
        if db is not None:
            db.close()
        if is_damage(exc):
            raise DatabaseDamaged(path, str(exc)) from None
        raise
    except DatabaseDamaged:
        if db is not None:
            db.close()
        raise
    if applied:
        log.info("database %s migrated to version %d", path, applied[-1])
    return db


def database_bytes(path: Path | str) -> int:
    """Bytes the database occupies on disk, write-ahead log included."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            total += p.stat().st_size
    return total
