"""The write transaction every writer of the store uses (the store writer, migrations, the CLI)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import sqlite_utils


@contextlib.contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front (waiting up to the busy timeout),
    so a transaction that reads before it writes cannot fail half-way on a lock upgrade."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")
