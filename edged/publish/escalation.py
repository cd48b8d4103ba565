"""Replies to escalated results: a result refined upstream replaces the stored one and goes out again.

With ``[upstream] escalation`` on, results flagged ``needs_review`` are also published to the
escalation topic (``OutboxBuilder.for_escalation``) with a ``correlation_id`` (the result's
result_id). A reply on the response topic is a JSON object::

    {"correlation_id": "res:...", "label": "fault", "severity": 3, "summary": "...", "fields": {...}, "model": "..."}

(``label`` required, the rest optional). In one writer transaction the results row of that record
is replaced (``needs_review = 0``, ``path = 'refined_upstream'``), an outbox row for the refined
result (result_id ``res:...:refined``, ``refined: true``) is inserted, so the publisher sends it on
the normal results topic, and the record's text with the reply's label becomes a training label
(``source = 'teacher'``, edged.triage.labels): the triage classifier learns from the teacher, and
the box escalates less as it does.

A reply is dropped, never stored as a label, and counted as ``escalation.rejected`` plus
``escalation.rejected.<reason>`` when it is not JSON (``not_json``), lacks or mistypes a field
(``malformed``), carries a label outside ``[analysis] labels`` (``label_outside_taxonomy``) or a
severity outside 0-5 (``severity_out_of_range``), or names a correlation id this box never escalated
(``unknown_correlation_id``) or whose result is gone (``result_gone``). A second reply for a result
already refined (a QoS 1 redelivery, or a teacher answering twice) changes nothing and is counted as
``escalation.duplicates``; refined results as ``escalation.refined``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from concurrent.futures import Future
from typing import Any, Callable

import sqlite_utils

from edged.publish.outbox import OutboxBuilder
from edged.store import inbox
from edged.store import outbox as outbox_store
from edged.store.records import ADD_COUNTER
from edged.store.writer import StoreWriter, WriterStopped
from edged.triage.labels import add_teacher_label

log = logging.getLogger(__name__)

REFINED_PATH = "refined_upstream"


MAX_SEVERITY = 5


class Rejected(ValueError):
    """A reply that cannot be applied; ``reason`` is the counter suffix (escalation.rejected.<reason>)."""

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class Duplicate(Rejected):
    """A reply for a result already refined: nothing to do (counted, not an error)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "duplicate")


def parse_reply(payload: bytes, taxonomy: list[str] | None = None) -> dict[str, Any]:
    """The reply as a dict with its known keys; raises Rejected. With ``taxonomy``, a label outside it
    is refused (a label the box cannot learn from, nor show)."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Rejected(f"not JSON: {exc}", "not_json") from None
    if not isinstance(doc, dict):
        raise Rejected("not a JSON object")
    cid = doc.get("correlation_id")
    if not isinstance(cid, str) or not cid:
        raise Rejected("no correlation_id")
    label = doc.get("label")
    if not isinstance(label, str) or not label:
        raise Rejected("no label")
    if taxonomy is not None and label not in taxonomy:
        raise Rejected(f"label {label[:80]!r} is not in [analysis] labels", "label_outside_taxonomy")
    reply: dict[str, Any] = {"correlation_id": cid, "label": label}
    checks: dict[str, Callable[[Any], bool]] = {
        "severity": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "summary": lambda v: isinstance(v, str),
        "fields": lambda v: isinstance(v, dict),
        "model": lambda v: isinstance(v, str) and bool(v),
    }
    for key, ok in checks.items():
        if doc.get(key) is not None:
            if not ok(doc[key]):
                raise Rejected(f"{key} has the wrong type")
            reply[key] = doc[key]
    if "severity" in reply and not 0 <= reply["severity"] <= MAX_SEVERITY:
        raise Rejected(f"severity {reply['severity']} is outside 0-{MAX_SEVERITY}", "severity_out_of_range")
    return reply


def apply_reply(db: sqlite_utils.Database, builder: OutboxBuilder, reply: dict[str, Any]) -> str:
    """In the writer's transaction: replace the result and queue the refined message. Returns the
    refined result_id; raises Rejected (nothing written) when the reply cannot be applied."""
    cid = reply["correlation_id"]
    record_id = outbox_store.record_id_of(db, cid)
    # Only a result this box escalated may be refined.
    if record_id is None or not outbox_store.was_escalated(db, cid):
        raise Rejected(f"unknown correlation_id {cid[:120]!r}", "unknown_correlation_id")
    result, record = inbox.load_result(db, record_id), inbox.load_record(db, record_id)
    if result is None or record is None:
        raise Rejected(f"the result of {cid!r} is gone", "result_gone")
    if result.path == REFINED_PATH:
        raise Duplicate(f"{cid!r} was already refined")
    changes = {key: reply[key] for key in ("severity", "summary", "fields", "model") if key in reply}
    result = dataclasses.replace(
        result, needs_review=False, path=REFINED_PATH, label=reply["label"], classified_by="upstream",
        triage_version=None, analyzed_at=time.time(), **changes,
    )
    inbox.update_result(db, result)
    inbox.refine_cached_answers(db, record_id, result.label, result.severity)
    refined = builder.for_result(result, record, refined=True)
    outbox_store.insert_rows(db, [refined])
    add_teacher_label(db, record.text, reply["label"], record_id, result.analyzed_at)
    db.conn.execute(ADD_COUNTER, ("escalation.refined", 1))
    return refined.result_id


def count_rejected(db: sqlite_utils.Database, reason: str) -> None:
    """In the writer's transaction: one dropped reply (or one duplicate)."""
    if reason == "duplicate":
        db.conn.execute(ADD_COUNTER, ("escalation.duplicates", 1))
        return
    db.conn.executemany(ADD_COUNTER, [("escalation.rejected", 1), (f"escalation.rejected.{reason}", 1)])


class EscalationReplies:
    """Handles replies on the response topic (called on a network thread; the work is done by the
    store writer, so the network thread never waits on the database)."""

    def __init__(
        self, builder: OutboxBuilder, writer: StoreWriter, on_refined: Callable[[], None],
        taxonomy: list[str] | None = None,
    ) -> None:
        self.builder = builder
        self.writer = writer
        self.on_refined = on_refined
        self.taxonomy = list(taxonomy) if taxonomy is not None else None
        self.refined = 0
        self.rejected = 0
        self.duplicates = 0

    def handle(self, payload: bytes, on_committed: Callable[[], None] | None = None) -> bool:
        """Check and apply one reply in one writer transaction; ``on_committed()`` runs after it
        committed, whatever became of the reply (the caller acknowledges the message then). False when
        the writer has stopped: the message stays unacknowledged and the broker delivers it again."""
        try:
            future = self.writer.call(lambda db: self._apply(db, payload))
        except WriterStopped:
            log.warning("store writer stopped; escalation reply left to the broker")
            return False
        future.add_done_callback(lambda f: self._done(f, on_committed))
        return True

    def _apply(self, db: sqlite_utils.Database, payload: bytes) -> str | None:
        try:
            reply = parse_reply(payload, self.taxonomy)
            return apply_reply(db, self.builder, reply)
        except Rejected as exc:
            count_rejected(db, exc.reason)
            if exc.reason == "duplicate":
                self.duplicates += 1
                log.info("escalation reply ignored: %s", exc)
            else:
                self.rejected += 1
                log.warning("escalation reply rejected (%s): %s", exc.reason, exc)
            return None

    def _done(self, future: Future, on_committed: Callable[[], None] | None) -> None:
        exc = future.exception()
        if exc is not None:
            # Not acknowledged: the broker delivers the reply again on the next connection.
            log.error("applying an escalation reply failed: %s", exc)
            return
        if on_committed is not None:
            on_committed()
        result_id = future.result()
        if result_id is not None:
            self.refined += 1
            log.info("result refined upstream: %s", result_id)
            self.on_refined()
