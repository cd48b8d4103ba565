"""Read-only SQL for the page and the API, on read-only connections from a small pool.

Every value from a request is a bound parameter; LIKE patterns are escaped. Lists go newest first by
``results.id`` with a ``LIMIT``, and page further with ``before`` (an id), so a page reads only
the rows it shows unless a rare filter has to look further back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import queue
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import sqlite_utils

from edged.store.database import connect
from edged.store.outbox import result_id_for

LIST_TEXT_CHARS = 500  # of each record's text in lists; the record page and /api/records have all of it
MAX_LIMIT = 500
DEFAULT_LIMIT = 50

# The label shown for a result: the newest correction by a person, else the model's.
CORRECTED_LABEL = (
    "(SELECT lc.new_label FROM label_corrections lc WHERE lc.record_id = r.record_id ORDER BY lc.id DESC LIMIT 1)"
)


class ReaderPool:
    """Read-only connections, reused across request threads (each used by one thread at a time)."""

    def __init__(self, path: Path | str, size: int = 4) -> None:
        self.path = Path(path)
        self._idle: queue.LifoQueue[sqlite_utils.Database] = queue.LifoQueue()
        self.size = size

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite_utils.Database]:
        try:
            db = self._idle.get_nowait()
        except queue.Empty:
            db = connect(self.path, readonly=True)
        try:
            yield db
        except BaseException:
            db.conn.close()  # a connection that failed mid-query is not trusted again
            raise
        if db.conn.in_transaction:
            db.conn.rollback()
        if self._idle.qsize() < self.size:
            self._idle.put(db)
        else:
            db.conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().conn.close()
            except queue.Empty:
                return


# -- filters -------------------------------------------------------------------------------------
_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(m|min|h|d)$")
_AGO_SECONDS = {"m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: float | None = None) -> float | None:
    """``15m``, ``1h``, ``24h``, ``7d`` (that long ago), a Unix time, or an ISO 8601 date/time
    (local time of the box unless it has an offset). Empty: no limit. Raises ValueError."""
    value = value.strip()
    if not value:
        return None
    now = time.time() if now is None else now
    refused = ValueError(f"since: {value!r} is not 15m, 1h, 24h, 7d, a Unix time or an ISO date")
    if match := _AGO.match(value):
        since = now - float(match.group(1)) * _AGO_SECONDS[match.group(2)]
    else:
        try:
            since = float(value)
        except ValueError:
            try:
                since = dt.datetime.fromisoformat(value).timestamp()
            except (ValueError, OverflowError, OSError):
                raise refused from None
    if not math.isfinite(since):  # 1e999, inf, nan: no time, and JSON has no way to write them
        raise refused
    return since


@dataclass
class ResultFilter:
    label: str | None = None
    severity: int | None = None  # at least this
    machine: str | None = None
    q: str | None = None  # text search in the record's text and the summary
    since: float | None = None  # received at or after (Unix time)
    before: int | None = None  # results.id below this (the next page)
    review: bool = False  # only results flagged for review (confidence below the threshold)
    limit: int = DEFAULT_LIMIT

    @classmethod
    def from_params(cls, params: dict[str, str], now: float | None = None) -> "ResultFilter":
        """From query parameters; raises ValueError with a message for the user."""
        def text(name: str, longest: int = 200) -> str | None:
            value = (params.get(name) or "").strip()
            if len(value) > longest:
                raise ValueError(f"{name}: longer than {longest} characters")
            return value or None

        def integer(name: str, low: int, high: int) -> int | None:
            value = text(name, 20)
            if value is None:
                return None
            if not value.isdigit() or not low <= int(value) <= high:
                raise ValueError(f"{name}: must be a whole number from {low} to {high}")
            return int(value)

        return cls(
            label=text("label"),
            severity=integer("severity", 0, 5),
            machine=text("machine"),
            q=text("q"),
            since=parse_since(params.get("since") or "", now),
            before=integer("before", 1, 2**62),
            limit=integer("limit", 1, MAX_LIMIT) or DEFAULT_LIMIT,
            review=(params.get("review") or "").strip().lower() in ("1", "true", "yes", "on"),
        )


def like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# -- results -------------------------------------------------------------------------------------
_RESULT_SELECT = f"""
SELECT r.id, r.record_id, rec.machine, rec.kind, rec.source, substr(rec.text, 1, {LIST_TEXT_CHARS}) AS text,
       length(rec.text) AS text_chars, rec.received_at, {CORRECTED_LABEL} AS corrected_label,
       r.label AS model_label, r.severity, r.confidence, r.summary, r.needs_review, r.analyzed_at, r.path
FROM results r JOIN records rec ON rec.record_id = r.record_id
"""


def search_results(db: sqlite_utils.Database, f: ResultFilter) -> list[dict[str, Any]]:
    where, params = [], []
    if f.label:
        where.append(f"coalesce({CORRECTED_LABEL}, r.label) = ?")
        params.append(f.label)
    if f.severity is not None:
        where.append("r.severity >= ?")
        params.append(f.severity)
    if f.machine:
        where.append("rec.machine = ?")
        params.append(f.machine)
    if f.since is not None:
        where.append("rec.received_at >= ?")
        params.append(f.since)
    if f.review:
        where.append("r.needs_review")
    if f.before is not None:
        where.append("r.id < ?")
        params.append(f.before)
    if f.q:
        where.append("(rec.text LIKE ? ESCAPE '\\' OR r.summary LIKE ? ESCAPE '\\')")
        params += [like_pattern(f.q)] * 2
    sql = _RESULT_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.id DESC LIMIT ?"
    params.append(f.limit)
    return [_result_row(row) for row in _dicts(db, sql, params)]


def _result_row(row: dict[str, Any]) -> dict[str, Any]:
    corrected = row.pop("corrected_label")
    row["label"] = corrected if corrected is not None else row["model_label"]
    row["corrected"] = corrected is not None
    row["needs_review"] = bool(row["needs_review"])
    return row


def recent_problems(db: sqlite_utils.Database, min_severity: int = 3, limit: int = 8) -> list[dict[str, Any]]:
    return search_results(db, ResultFilter(severity=min_severity, limit=limit))


# -- one record ------------------------------------------------------------------------------------
def record_detail(db: sqlite_utils.Database, record_id: str) -> dict[str, Any] | None:
    rows = _dicts(
        db,
        "SELECT record_id, source, machine, kind, text, flags, origin, received_at, status, priority, attempts,"
        " lease_until, error FROM records WHERE record_id = ?",
        [record_id],
    )
    if not rows:
        return None
    record = rows[0]
    record["flags"] = record["flags"].split() if record["flags"] else []
    results = _dicts(
        db,
        "SELECT r.template_id, t.template, r.label AS model_label, r.severity, r.confidence, r.fields, r.summary,"
        " r.needs_review, r.path, r.model, r.model_sha256, r.backend, r.prompt_version, r.model_calls,"
        " r.latency_ms, r.analyzed_at, r.classified_by, r.triage_version, r.fields_source"
        " FROM results r LEFT JOIN templates t ON t.template_id = r.template_id"
        " WHERE r.record_id = ?",
        [record_id],
    )
    result = results[0] if results else None
    corrections = _dicts(
        db,
        "SELECT old_label, new_label, corrected_by, corrected_at, note FROM label_corrections"
        " WHERE record_id = ? ORDER BY id DESC",
        [record_id],
    )
    if result is not None:
        result["fields"] = json.loads(result["fields"]) if result["fields"] else {}
        result["fields_source"] = json.loads(result["fields_source"]) if result["fields_source"] else {}
        result["needs_review"] = bool(result["needs_review"])
        result["label"] = corrections[0]["new_label"] if corrections else result["model_label"]
    record["result"] = result
    record["corrections"] = corrections
    record["outbox"] = []
    if result is not None:
        # Found by result_id, which the result determines: outbox.record_id has no index.
        base = result_id_for(record_id, result["model_sha256"], result["prompt_version"])
        record["outbox"] = _dicts(
            db,
            "SELECT result_id, kind, topic, created_at, sent_at, attempts, last_attempt_at FROM outbox"
            " WHERE result_id IN (?, ?) ORDER BY id",
            [base, base + ":refined"],
        )
    return record


def current_label(db: sqlite_utils.Database, record_id: str) -> tuple[bool, str | None]:
    """(whether the record exists, the label shown for it now) — for a correction's old_label."""
    if db.execute("SELECT 1 FROM records WHERE record_id = ?", [record_id]).fetchone() is None:
        return False, None
    row = db.execute(
        "SELECT coalesce((SELECT new_label FROM label_corrections WHERE record_id = ? ORDER BY id DESC LIMIT 1),"
        " (SELECT label FROM results WHERE record_id = ?))",
        [record_id, record_id],
    ).fetchone()
    return True, row[0]


# -- parked records, overview extras ----------------------------------------------------------------
def parked_records(db: sqlite_utils.Database, limit: int = 200) -> list[dict[str, Any]]:
    return _dicts(
        db,
        f"SELECT record_id, source, machine, kind, substr(text, 1, {LIST_TEXT_CHARS}) AS text, received_at,"
        " attempts, error FROM records WHERE status = 'parked' ORDER BY id DESC LIMIT ?",
        [limit],
    )


def last_delivery(db: sqlite_utils.Database) -> float | None:
    """When the upstream broker last acknowledged a result (the outbox's sent_at index)."""
    return db.execute("SELECT max(sent_at) FROM outbox WHERE sent_at IS NOT NULL").fetchone()[0]


def corrections_count(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT count(*) FROM label_corrections").fetchone()[0]


def store_answers(db: sqlite_utils.Database) -> None:
    """Raises if the database cannot be read (for /healthz)."""
    db.execute("SELECT max(version) FROM migrations").fetchone()


def _dicts(db: sqlite_utils.Database, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = db.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]
