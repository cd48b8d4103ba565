"""The rows sources hand to the store writer. Plain tuples: the file source builds ~10^5 a second."""

from __future__ import annotations

from typing import NamedTuple

from edged.priority import alert_priority_sql

# Flags on a record, stored space-separated in records.flags.
FLAG_TRUNCATED = "truncated"  # longer than the configured maximum; the rest was dropped
FLAG_INVALID_UTF8 = "invalid_utf8"  # bytes that are not UTF-8 were replaced with U+FFFD
FLAG_NO_NEWLINE = "no_newline"  # a last line flushed after the partial-line timeout
FLAG_BOUNDED = "bounded"  # a field was cut or cleaned of NUL to fit edged.store.limits

KINDS = ("log", "incident")
STATUSES = ("pending", "leased", "done", "parked")


class NewRecord(NamedTuple):
    """One inbox row. Field order is the column order of INSERT_RECORD."""

    record_id: str
    source: str
    machine: str | None
    kind: str
    text: str
    flags: str
    origin: str | None  # where exactly it came from, e.g. "path:offset" or the MQTT topic
    received_at: float
    priority: int = 0


class FilePosition(NamedTuple):
    """How far a file instance has been stored; written in the same transaction as its lines."""

    file_key: str
    source: str  # the log stream, e.g. "file:/var/log/cnc/app.log" (its name before any rotation)
    path: str  # where the file instance is now
    dev: int
    ino: int
    fp_len: int
    fp_hash: str
    offset: int
    state: str  # active | draining | done | skipped
    reason: str | None
    first_seen: float
    updated_at: float
    mark: str | None = None  # checksum of the bytes just before ``offset`` (edged.sources.files.identity)


class Rejected(NamedTuple):
    """An input that could not become a record, kept with its reason."""

    input_id: str  # stable, so a redelivered bad message is stored once
    source: str
    reason: str
    detail: str | None
    size: int
    sample: bytes | None
    received_at: float


RECORD_COLUMNS = len(NewRecord._fields)


def _record_values(row: int) -> str:
    """One row's VALUES tuple with numbered parameters; priority is raised for alert-looking text."""
    n = [f"?{row * RECORD_COLUMNS + i + 1}" for i in range(RECORD_COLUMNS)]
    text, base = n[NewRecord._fields.index("text")], n[NewRecord._fields.index("priority")]
    return "(" + ", ".join(n[:-1] + [alert_priority_sql(text, base)]) + ")"


INSERT_RECORD = (
    "INSERT OR IGNORE INTO records"
    " (record_id, source, machine, kind, text, flags, origin, received_at, priority)"
    " VALUES " + _record_values(0)
)
# INSERT_RECORD for many rows in one statement: per-statement overhead (and, in Python's sqlite3,
# a release and re-take of the GIL) is paid once per RECORDS_PER_INSERT rows instead of per row.
# 100 rows x 9 columns = 900 parameters, under the 999 that SQLite before 3.32 allows.
RECORDS_PER_INSERT = 100
INSERT_RECORDS_MANY = (
    "INSERT OR IGNORE INTO records"
    " (record_id, source, machine, kind, text, flags, origin, received_at, priority)"
    " VALUES " + ", ".join(_record_values(i) for i in range(RECORDS_PER_INSERT))
)
UPSERT_POSITION = (
    "INSERT OR REPLACE INTO file_positions"
    " (file_key, source, path, dev, ino, fp_len, fp_hash, offset, state, reason, first_seen, updated_at, mark)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_REJECTED = (
    "INSERT OR IGNORE INTO rejected (input_id, source, reason, detail, size, sample, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
ADD_COUNTER = (
    "INSERT INTO counters (name, value) VALUES (?, ?)"
    " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value"
)

SAMPLE_BYTES = 1024  # how much of a rejected input is kept
