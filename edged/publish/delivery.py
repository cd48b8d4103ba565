"""The outbox queries of the publisher: what to send next, what was delivered, what has expired.

Reads run on the publisher's own reader connection; ``mark_sent`` and ``expire_sent`` are run by
the store writer (``writer.call``), never by the publisher's threads.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, NamedTuple

import sqlite_utils

from edged.store.records import ADD_COUNTER

# Sent rows deleted per writer transaction: a week of results must not hold the writer for long.
EXPIRE_BATCH = 5000


class Delivered(NamedTuple):
    """One row the broker acknowledged: its outbox id, when it was (first) published, how many times."""

    id: int
    published_at: float
    attempts: int


def read_unsent(reader: sqlite_utils.Database, after_id: int, limit: int) -> list[tuple[int, str, str]]:
    """(id, topic, payload) of the next unsent rows after ``after_id``, in id order."""
    return reader.execute(
        "SELECT id, topic, payload FROM outbox WHERE sent_at IS NULL AND id > ? ORDER BY id LIMIT ?",
        (after_id, limit),
    ).fetchall()


def mark_sent(db: sqlite_utils.Database, delivered: Iterable[Delivered], counters: dict[str, int]) -> int:
    """In the writer's transaction: set sent_at on acknowledged rows and add the publisher's counters.
    Returns how many rows were newly marked (a row already marked, or deleted meanwhile, is skipped)."""
    now = time.time()
    cur = db.conn.executemany(
        "UPDATE outbox SET sent_at = ?, attempts = attempts + ?, last_attempt_at = ?"
        " WHERE id = ? AND sent_at IS NULL",
        [(now, d.attempts, d.published_at, d.id) for d in delivered],
    )
    marked = max(cur.rowcount, 0)
    counters = dict(counters)
    if marked:
        counters["publish.sent"] = counters.get("publish.sent", 0) + marked
    rows = [(name, value) for name, value in counters.items() if value]
    if rows:
        db.conn.executemany(ADD_COUNTER, rows)
    return marked


def expire_sent(db: sqlite_utils.Database, ttl_s: float, limit: int = EXPIRE_BATCH) -> int:
    """In the writer's transaction: delete up to ``limit`` rows delivered more than ``ttl_s`` ago."""
    cur = db.conn.execute(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
        " WHERE sent_at IS NOT NULL AND sent_at < ? ORDER BY sent_at LIMIT ?)",
        (time.time() - ttl_s, limit),
    )
    deleted = max(cur.rowcount, 0)
    if deleted:
        db.conn.execute(ADD_COUNTER, ("outbox.expired", deleted))
    return deleted


def upstream_status(db: sqlite_utils.Database) -> dict[str, Any]:
    """The ``upstream`` section of ``edged status``: the outbox and the publisher's counters."""
    if "outbox" not in db.table_names():  # a database from before the outbox (schema < 3)
        unsent = sent = 0
        oldest = None
    else:
        unsent = db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
        sent = db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL").fetchone()[0]
        row = db.execute("SELECT min(created_at) FROM outbox WHERE sent_at IS NULL").fetchone()
        oldest = row[0] if row else None
    counters = dict(
        db.execute(
            "SELECT name, value FROM counters WHERE name LIKE 'publish.%' OR name = 'outbox.expired'"
        ).fetchall()
    )
    return {
        "unsent": unsent,
        "sent": sent,
        "oldest_unsent_s": None if oldest is None else round(max(time.time() - oldest, 0.0), 1),
        "published": counters.get("publish.sent", 0),
        "resent": counters.get("publish.resent", 0),
        "connects": counters.get("publish.connects", 0),
        "expired": counters.get("outbox.expired", 0),
    }
