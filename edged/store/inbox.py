"""Work on the inbox: claiming records with a lease, completing them with their results, failing them.

This module owns the ``results`` table: a result is written only here (``complete``, and
``update_result`` for a result refined upstream). Writing functions take the write connection and
run inside the writer's transaction (``writer.call``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import sqlite_utils

CLAIM_COLUMNS = ("id", "record_id", "source", "machine", "kind", "text", "flags", "attempts", "received_at", "priority", "origin")


@dataclass(frozen=True)
class Claimed:
    id: int
    record_id: str
    source: str
    machine: str | None
    kind: str
    text: str
    flags: str
    attempts: int  # including this claim
    received_at: float
    priority: int
    header: dict[str, str] | None = None  # parsed header fields (format, time, level, host, component, pid), raw text
    message: str | None = None  # the line after its header; None when no header was parsed (use text)
    origin: str | None = None  # where it came from (records.origin); a JSON payload's header keys are under "header"


class RecordFields(Protocol):
    """The fields of a stored record that travel with its result (``Claimed`` and ``StoredRecord`` have them)."""

    @property
    def record_id(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def machine(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def flags(self) -> str: ...
    @property
    def received_at(self) -> float: ...


STORED_RECORD_COLUMNS = ("record_id", "source", "machine", "kind", "text", "flags", "received_at")


@dataclass(frozen=True)
class StoredRecord:
    """A record as read back from the store (``load_record``)."""

    record_id: str
    source: str
    machine: str | None
    kind: str
    text: str
    flags: str
    received_at: float

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "StoredRecord":
        """From a mapping with at least the record's columns (extra keys are ignored)."""
        return cls(**{name: values.get(name) for name in STORED_RECORD_COLUMNS})


@dataclass
class ResultRow:
    record_id: str
    template_id: int | None
    label: str | None
    severity: int | None
    confidence: float | None
    fields: dict[str, Any] | None
    summary: str | None
    needs_review: bool
    path: str  # model | template_cache | exact_cache
    model: str | None
    model_sha256: str | None
    backend: str | None
    prompt_version: str
    model_calls: int
    latency_ms: float | None
    analyzed_at: float = field(default_factory=time.time)
    classified_by: str | None = None  # triage | dump | level | lexicon | slm | upstream: which path gave the label (None: no label)
    triage_version: int | None = None  # the triage model version that gave it
    header: dict[str, str] | None = None  # the log line's parsed header fields (Claimed.header)
    fields_source: dict[str, str] | None = None  # field -> header | record | pattern | model (non-null fields)
    review_reason: str | None = None  # why needs_review is set beyond low confidence (e.g. a summary that failed its check)

    def as_tuple(self) -> tuple:
        return (
            self.record_id,
            self.template_id,
            self.label,
            self.severity,
            self.confidence,
            None if self.fields is None else json.dumps(self.fields, ensure_ascii=False),
            self.summary,
            int(self.needs_review),
            self.path,
            self.model,
            self.model_sha256,
            self.backend,
            self.prompt_version,
            self.model_calls,
            self.latency_ms,
            self.analyzed_at,
            self.classified_by,
            self.triage_version,
            None if self.header is None else json.dumps(self.header, ensure_ascii=False),
            None if self.fields_source is None else json.dumps(self.fields_source),
            self.review_reason,
        )


INSERT_RESULT = (
    "INSERT OR REPLACE INTO results (record_id, template_id, label, severity, confidence, fields, summary,"
    " needs_review, path, model, model_sha256, backend, prompt_version, model_calls, latency_ms, analyzed_at,"
    " classified_by, triage_version, header, fields_source, review_reason)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def claim_batch(db: sqlite_utils.Database, *, owner: str, limit: int, lease_s: float, max_attempts: int) -> list[Claimed]:
    """Lease up to ``limit`` records: incident reports first, then alert-looking lines, then the rest.

    A record whose lease ran out ``max_attempts`` times (the daemon died on it each time) is parked
    instead of being handed out again: crash-only, never retried forever.
    """
    now = time.time()
    db.execute(
        "UPDATE records SET status = 'parked', lease_owner = NULL, lease_until = NULL,"
        " error = coalesce(error, 'analysis did not finish') || ' (lease expired ' || attempts || ' times)'"
        " WHERE status = 'leased' AND lease_until < ? AND attempts >= ?",
        (now, max_attempts),
    )
    rows = db.execute(
        "UPDATE records SET status = 'leased', lease_owner = ?, lease_until = ?, attempts = attempts + 1"
        " WHERE id IN (SELECT id FROM records WHERE status IN ('pending', 'leased')"
        "   AND (lease_until IS NULL OR lease_until < ?) ORDER BY priority DESC, id LIMIT ?)"
        f" RETURNING {', '.join(CLAIM_COLUMNS)}",
        (owner, now + lease_s, now, limit),
    ).fetchall()
    claimed = [Claimed(*row[:-1], origin=row[-1]) for row in rows]
    claimed.sort(key=lambda c: (-c.priority, c.id))
    return claimed


def complete(db: sqlite_utils.Database, results: list[ResultRow]) -> None:
    if not results:
        return
    db.conn.executemany(INSERT_RESULT, [r.as_tuple() for r in results])
    db.conn.executemany(
        "UPDATE records SET status = 'done', lease_owner = NULL, lease_until = NULL, error = NULL"
        " WHERE record_id = ?",
        [(r.record_id,) for r in results],
    )


RETRY_BASE_S = 5  # a failed record waits 5 s, 10 s, 20 s ... (at most RETRY_MAX_S) before its next try
RETRY_MAX_S = 300


def fail(db: sqlite_utils.Database, failures: list[tuple[str, str]], max_attempts: int) -> int:
    """Return failed records to the queue after a back-off, or park them after ``max_attempts``.

    A pending record's lease_until is the earliest time it may be claimed again. Returns how many parked.
    """
    if not failures:
        return 0
    now = time.time()
    db.conn.executemany(
        "UPDATE records SET status = CASE WHEN attempts >= ? THEN 'parked' ELSE 'pending' END,"
        " error = ?, lease_owner = NULL,"
        " lease_until = CASE WHEN attempts >= ? THEN NULL"
        "   ELSE ? + min(?, ? * (1 << min(attempts - 1, 16))) END"
        " WHERE record_id = ?",
        [
            (max_attempts, error[:2000], max_attempts, now, RETRY_MAX_S, RETRY_BASE_S, record_id)
            for record_id, error in failures
        ],
    )
    marks = ",".join("?" * len(failures))
    return db.execute(
        f"SELECT count(*) FROM records WHERE status = 'parked' AND record_id IN ({marks})",
        [record_id for record_id, _ in failures],
    ).fetchone()[0]


def release(db: sqlite_utils.Database, owner: str) -> int:
    """Give back the leases of an abandoned batch (a clean stop), without counting an attempt."""
    return db.execute(
        "UPDATE records SET status = 'pending', lease_owner = NULL, lease_until = NULL,"
        " attempts = max(attempts - 1, 0) WHERE status = 'leased' AND lease_owner = ?",
        (owner,),
    ).rowcount


RESULT_COLUMNS = (
    "record_id", "template_id", "label", "severity", "confidence", "fields", "summary", "needs_review", "path",
    "model", "model_sha256", "backend", "prompt_version", "model_calls", "latency_ms", "analyzed_at",
    "classified_by", "triage_version", "header", "fields_source", "review_reason",
)


def load_record(db: sqlite_utils.Database, record_id: str) -> StoredRecord | None:
    row = db.execute(f"SELECT {', '.join(STORED_RECORD_COLUMNS)} FROM records WHERE record_id = ?", (record_id,)).fetchone()
    return None if row is None else StoredRecord(*row)


def load_result(db: sqlite_utils.Database, record_id: str) -> ResultRow | None:
    row = db.execute(f"SELECT {', '.join(RESULT_COLUMNS)} FROM results WHERE record_id = ?", (record_id,)).fetchone()
    if row is None:
        return None
    values = dict(zip(RESULT_COLUMNS, row))
    for name in ("fields", "header", "fields_source"):
        values[name] = json.loads(values[name]) if values[name] is not None else None
    values["needs_review"] = bool(values["needs_review"])
    return ResultRow(**values)


def refine_cached_answers(db: sqlite_utils.Database, record_id: str, label: str, severity: int | None) -> int:
    """A teacher's label for ``record_id`` replaces the cached answers computed for it (its template's and
    its text's, in analysis_cache), so the template's later lines get the teacher's label, not the unsure
    one. Returns how many cache entries changed."""
    set_severity = ", '$.answers.classify.severity', ?" if severity is not None else ""
    params: list[Any] = [label] + ([severity] if severity is not None else []) + [record_id]
    return db.execute(
        "UPDATE analysis_cache SET value = json_set(value, '$.answers.classify.label', ?" + set_severity
        + ", '$.classified_by', 'upstream', '$.triage_version', NULL, '$.review', json('false'))"
        " WHERE json_extract(value, '$.from') = ? AND json_extract(value, '$.answers.classify') IS NOT NULL",
        params,
    ).rowcount


def update_result(db: sqlite_utils.Database, result: ResultRow) -> None:
    """Replace what a stored result says (a result refined upstream); the record's status is unchanged."""
    db.execute(
        "UPDATE results SET label = ?, severity = ?, fields = ?, summary = ?, needs_review = ?, path = ?,"
        " model = ?, analyzed_at = ?, classified_by = ?, triage_version = ? WHERE record_id = ?",
        (
            result.label, result.severity,
            None if result.fields is None else json.dumps(result.fields, ensure_ascii=False),
            result.summary, int(result.needs_review), result.path, result.model, result.analyzed_at,
            result.classified_by, result.triage_version, result.record_id,
        ),
    )
