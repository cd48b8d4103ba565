"""The outbox table: messages waiting for the upstream broker, and the ones it acknowledged.

This module is the table's only owner: rows are inserted here (by the analyzer, in the same
transaction as the results they carry, and by escalation replies), read here by the publisher,
marked sent here when the broker's PUBACK arrives, and expired or counted here. The message body
itself is built by ``edged.publish.outbox.OutboxBuilder``; the store only keeps and moves it.

Writes (``insert_rows``, ``mark_sent``, ``expire_sent``) run inside the store writer's transaction
(``writer.call``); reads (``read_unsent``, ``record_id_of``, ``upstream_status``) take any connection.
``result_id`` is stable: analyzing the same record again (after a crash) gives the same id, and
``INSERT OR IGNORE`` keeps the row from being duplicated.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Iterable, NamedTuple

import sqlite_utils

from edged.store.records import ADD_COUNTER

# Sent rows deleted per writer transaction: a week of results must not hold the writer for long.
EXPIRE_BATCH = 5000


class OutboxRow(NamedTuple):
    """One message to publish, as it is stored."""

    result_id: str
    record_id: str | None
    kind: str  # log | incident | digest | escalation
    source: str | None
    topic: str
    payload: str  # a JSON object; ``published_at`` is added when it is sent
    created_at: float


class Unsent(NamedTuple):
    """A stored row not yet acknowledged: what the publisher sends."""

    id: int
    topic: str
    payload: str


class Delivered(NamedTuple):
    """One row the broker acknowledged: its outbox id, when it was (first) published, how many times."""

    id: int
    published_at: float
    attempts: int


INSERT_OUTBOX = (
    "INSERT OR IGNORE INTO outbox (result_id, record_id, kind, source, topic, payload, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def result_id_for(record_id: str, model_sha256: str | None, prompt_version: str, refined: bool = False) -> str:
    """The id of a record's result message: the same record, model and prompt always give the same id."""
    h = hashlib.blake2b(f"{record_id}\0{model_sha256 or ''}\0{prompt_version}".encode(), digest_size=12).hexdigest()
    return f"res:{h}" + (":refined" if refined else "")


def insert_rows(db: sqlite_utils.Database, rows: list[OutboxRow]) -> None:
    """In the writer's transaction: queue messages; a result_id already queued is left as it is."""
    if rows:
        db.conn.executemany(INSERT_OUTBOX, rows)


def read_unsent(reader: sqlite_utils.Database, after_id: int, limit: int) -> list[Unsent]:
    """The next unsent rows after ``after_id``, in id order."""
    return [
        Unsent(*row)
        for row in reader.execute(
            "SELECT id, topic, payload FROM outbox WHERE sent_at IS NULL AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
    ]


def record_id_of(db: sqlite_utils.Database, result_id: str) -> str | None:
    """The record a result message (not an escalation) was about; None if there is no such message."""
    row = db.execute(
        "SELECT record_id FROM outbox WHERE result_id = ? AND kind != 'escalation'", (result_id,)
    ).fetchone()
    return None if row is None else row[0]


def was_escalated(db: sqlite_utils.Database, result_id: str) -> bool:
    """Whether this box sent the result ``result_id`` for review (its escalation row is ``esc:...``)."""
    if not result_id.startswith("res:"):
        return False
    escalation_id = "esc:" + result_id.split(":", 1)[1]
    return db.execute(
        "SELECT 1 FROM outbox WHERE result_id = ? AND kind = 'escalation'", (escalation_id,)
    ).fetchone() is not None


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


def count_unsent(db: sqlite_utils.Database) -> int:
    """Rows not acknowledged yet (the partial ``outbox_unsent`` index answers it)."""
    return db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]


def upstream_status(db: sqlite_utils.Database) -> dict[str, Any]:
    """The ``upstream`` section of ``edged status``: the outbox and the publisher's counters."""
    if "outbox" not in db.table_names():  # `edged status` on a database from before the outbox (schema < 3)
        unsent = sent = 0
        oldest = None
    else:
        unsent = count_unsent(db)
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
