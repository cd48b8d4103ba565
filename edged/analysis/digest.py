"""Periodic digests: a short summary of what each source logged since its last digest.

The model sees the window's templates with their counts and labels, not the raw lines: a busy
machine's hour of logs is a few dozen templates, which fits a small model's context.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import sqlite_utils

from edged.analysis.tasks import SUMMARIZE, InvalidAnswer, TaskSpec, parse_answer, request_for
from edged.backends.base import Backend, BackendError
from edged.publish.outbox import OutboxBuilder
from edged.store.outbox import insert_rows

log = logging.getLogger(__name__)

TOP_TEMPLATES = 15


@dataclass
class Digest:
    source: str
    window_start: float
    window_end: float
    records: int
    summary: str
    model: str


def due_sources(reader: sqlite_utils.Database, now: float, interval_s: float) -> list[tuple[str, float]]:
    """Sources whose last digest (or first analyzed line) is at least ``interval_s`` old, with the window start."""
    last = dict(reader.execute("SELECT source, max(window_end) FROM digests GROUP BY source").fetchall())
    rows = reader.execute(
        "SELECT r.source, min(r.received_at) FROM records r JOIN results s ON s.record_id = r.record_id"
        " WHERE r.kind = 'log' AND r.status = 'done' GROUP BY r.source"
    ).fetchall()
    due = []
    for source, first in rows:
        start = last.get(source, first - 1e-6)
        if now - start >= interval_s:
            due.append((source, start))
    return due


def digest_input(reader: sqlite_utils.Database, source: str, start: float, end: float) -> tuple[str, int]:
    rows = reader.execute(
        "SELECT coalesce(t.template, r.text), s.label, max(s.severity), count(*) AS n"
        " FROM records r JOIN results s ON s.record_id = r.record_id"
        " LEFT JOIN templates t ON t.template_id = s.template_id"
        " WHERE r.source = ? AND r.kind = 'log' AND r.received_at > ? AND r.received_at <= ?"
        " GROUP BY 1, 2 ORDER BY max(s.severity) DESC, n DESC",
        (source, start, end),
    ).fetchall()
    total = sum(n for *_, n in rows)
    lines = [f"{n}x {label or '?'} (severity {sev}): {text[:160]}" for text, label, sev, n in rows[:TOP_TEMPLATES]]
    if len(rows) > TOP_TEMPLATES:
        lines.append(f"... and {len(rows) - TOP_TEMPLATES} more kinds of lines")
    return "\n".join(lines), total


def make_digests(
    reader: sqlite_utils.Database, backend: Backend, spec: TaskSpec, interval_s: float, now: float | None = None
) -> list[Digest]:
    assert spec.name == SUMMARIZE
    now = time.time() if now is None else now
    out = []
    for source, start in due_sources(reader, now, interval_s):
        text, count = digest_input(reader, source, start, now)
        if not count:
            continue
        try:
            answer = parse_answer(spec, backend.complete(request_for(spec, text, kind="digest")))
        except (BackendError, InvalidAnswer) as exc:
            log.warning("digest of %s failed: %s; trying again next time", source, exc)
            continue
        out.append(Digest(source, start, now, count, answer["summary"], backend.model_name))
    return out


def store_digests(db: sqlite_utils.Database, digests: list[Digest], outbox: "OutboxBuilder | None" = None) -> None:
    if outbox is not None:
        insert_rows(
            db,
            [outbox.for_digest(d.source, d.window_start, d.window_end, d.records, d.summary, d.model) for d in digests],
        )
    db.conn.executemany(
        "INSERT INTO digests (source, window_start, window_end, records, summary, model, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(d.source, d.window_start, d.window_end, d.records, d.summary, d.model, time.time()) for d in digests],
    )
