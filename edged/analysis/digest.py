"""Periodic digests: a short summary of what each source logged since its last digest.

The model sees the window's templates with their counts and labels, not the raw lines: a busy
machine's hour of logs is a few dozen templates, which fits a small model's context.

A digest is checked against what the model was shown, as an incident report's summary is
(edged.analysis.summary_check): it ends at its first repeated 4-word sequence, and one that names a
number, code or part identifier the input does not is generated once more; if it still does, it is
cut before the first such claim (or the input's first line stands in for it) and kept with a
``review_reason``, which is stored and published with it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import sqlite_utils

from edged.analysis.summary_check import REPEAT_NGRAM, RETRY_NOTE, check_summary, settle_failed
from edged.analysis.tasks import SUMMARIZE, InvalidAnswer, TaskSpec, parse_answer, request_for
from edged.backends.base import Backend, BackendError
from edged.publish.outbox import OutboxBuilder
from edged.store.outbox import insert_rows
from edged.store.records import ADD_COUNTER

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
    review_reason: str | None = None  # why the summary needs review (it named what its input does not)
    events: list[str] = field(default_factory=list)  # cut, regenerated, failed_check


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
            summary, reason, events = checked_summary(backend, spec, text)
        except (BackendError, InvalidAnswer) as exc:
            log.warning("digest of %s failed: %s; trying again next time", source, exc)
            continue
        if reason:
            log.warning("digest of %s kept for review: %s", source, reason)
        out.append(Digest(source, start, now, count, summary, backend.model_name, reason, events))
    return out


def checked_summary(backend: Backend, spec: TaskSpec, text: str) -> tuple[str, str | None, list[str]]:
    """The digest of ``text`` (the window's templates), checked against it: (summary, review reason or
    None, events). Raises BackendError or InvalidAnswer when a call fails."""
    request = dataclasses.replace(request_for(spec, text, kind="digest"), stop_repeat_ngram=REPEAT_NGRAM)
    events: list[str] = []
    summary, missing = "", []
    for retry in (False, True):
        completion = backend.complete(dataclasses.replace(request, user=request.user + RETRY_NOTE) if retry else request)
        answer = parse_answer(spec, completion)
        summary, cut, missing = check_summary(answer.get("summary") or "", text)
        if cut or completion.repetition_cut:
            events.append("cut")
        if not missing:
            return summary, None, events
        events.append("failed_check" if retry else "regenerated")
    first_line = text.split("\n", 1)[0]  # the most severe, then commonest, kind of line
    max_chars = spec.schema["properties"]["summary"].get("maxLength", 240)
    summary, reason = settle_failed(summary, missing, first_line, max_chars)
    return summary, reason, events


def store_digests(db: sqlite_utils.Database, digests: list[Digest], outbox: "OutboxBuilder | None" = None) -> None:
    if outbox is not None:
        insert_rows(
            db,
            [outbox.for_digest(d.source, d.window_start, d.window_end, d.records, d.summary, d.model, d.review_reason)
             for d in digests],
        )
    # What the check did to them, beside the reports' summaries (analysis.summaries): edged status shows both.
    events: dict[str, int] = {}
    for d in digests:
        for event in d.events:
            events[f"analysis.digest_checks.{event}"] = events.get(f"analysis.digest_checks.{event}", 0) + 1
    db.conn.executemany(ADD_COUNTER, list(events.items()))
    db.conn.executemany(
        "INSERT INTO digests (source, window_start, window_end, records, summary, model, created_at, review_reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(d.source, d.window_start, d.window_end, d.records, d.summary, d.model, time.time(), d.review_reason)
         for d in digests],
    )
