"""The answers the teacher gave, by correlation id, in a small SQLite file of its own.

An escalation arrives at least once (QoS 1, persistent session): after a crash, or when the broker
redelivers one whose acknowledgement it never got, the same escalation comes again. Its stored reply
is sent again word for word, without asking the model, so a box never sees two different answers to
one question. Answers older than ``[teacher] keep_answers_s`` are forgotten.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    correlation_id TEXT PRIMARY KEY,
    respond_to TEXT NOT NULL,
    reply TEXT NOT NULL,
    answered_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_age ON answers (answered_at);
"""


class AnswerStore:
    """One thread at a time (the teacher's answering thread)."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)

    def get(self, correlation_id: str) -> tuple[str, str] | None:
        """(respond_to, reply) of an escalation answered before, or None."""
        row = self.conn.execute(
            "SELECT respond_to, reply FROM answers WHERE correlation_id = ?", (correlation_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def put(self, correlation_id: str, respond_to: str, reply: str) -> None:
        # Committed before the reply is published: a crash after it sends the same reply again.
        self.conn.execute(
            "INSERT OR IGNORE INTO answers (correlation_id, respond_to, reply, answered_at) VALUES (?, ?, ?, ?)",
            (correlation_id, respond_to, reply, time.time()),
        )

    def forget_older_than(self, seconds: float) -> int:
        return self.conn.execute("DELETE FROM answers WHERE answered_at < ?", (time.time() - seconds,)).rowcount

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self.conn.close()
