"""Opening the SQLite database: pragmas that make it durable and concurrent, then migrations."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

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


def open_database(path: Path | str) -> sqlite_utils.Database:
    """Open (creating if needed) the state database and bring its schema up to date."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = connect(path)
    applied = apply_migrations(db)
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
