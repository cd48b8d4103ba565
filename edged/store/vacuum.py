"""``edged db vacuum``: give the space of deleted rows back to the file system.

Eviction (edged.store.retention) frees pages inside the file, which SQLite reuses, but the file keeps
its size. VACUUM rewrites it: SQLite builds a copy without the free pages and copies it back through
the write-ahead log, so it needs free disk of about the database's used size, up to twice that
(the copy, then the log). The copy is made beside the database (``SQLITE_TMPDIR``), not in /tmp,
which is RAM on many boxes. Run it with the daemon stopped: VACUUM holds the write lock for its whole
run, so it waits for the daemon's lock, and the daemon's writes then wait for it and fail.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import TextIO

from edged.store.database import connect, database_bytes
from edged.store.retention import measure

LOCK_WAIT_MS = 60_000


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def vacuum(path: Path, auto_vacuum: str | None = None, out: TextIO = sys.stdout) -> int:
    """VACUUM the database at ``path``; ``auto_vacuum`` ("none" or "incremental") also switches that mode."""
    os.environ["SQLITE_TMPDIR"] = str(path.resolve().parent)
    db = connect(path)
    try:
        db.execute(f"PRAGMA busy_timeout = {LOCK_WAIT_MS}")
        used = measure(db, path).used_bytes
        on_disk = database_bytes(path)
        free = shutil.disk_usage(path.resolve().parent).free
        print(f"database {path}: {_mb(on_disk)} on disk, {_mb(used)} in use", file=out)
        if free < used:
            print(
                f"edged db vacuum: not enough free disk: {_mb(free)} free, VACUUM needs about {_mb(used)}"
                f" (up to {_mb(2 * used)})",
                file=sys.stderr,
            )
            return 1
        if free < 2 * used:
            print(f"note: {_mb(free)} free; VACUUM may need up to {_mb(2 * used)}", file=out)
        print(
            "vacuuming; the daemon should be stopped, or this waits for its lock"
            f" (up to {LOCK_WAIT_MS // 1000} s) and holds its writes while it runs",
            file=out, flush=True,
        )
        if auto_vacuum is not None:
            # Takes effect with the VACUUM that follows (SQLite can only change it by rewriting the file).
            db.execute(f"PRAGMA auto_vacuum = {auto_vacuum.upper()}")
        try:
            db.execute("VACUUM")
        except sqlite3.OperationalError as exc:
            print(f"edged db vacuum: {exc} (is edged running? stop it first)", file=sys.stderr)
            return 1
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        mode = {0: "none", 1: "full", 2: "incremental"}[db.execute("PRAGMA auto_vacuum").fetchone()[0]]
    finally:
        db.close()
    after = database_bytes(path)
    freed = max(0, on_disk - after)
    print(f"before {_mb(on_disk)}, after {_mb(after)} on disk (freed {_mb(freed)}); auto_vacuum {mode}", file=out)
    return 0
