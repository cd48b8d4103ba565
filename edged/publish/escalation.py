"""Replies to escalated results: a result refined upstream replaces the stored one and goes out again.

With ``[upstream] escalation`` on, results flagged ``needs_review`` are also published to the
escalation topic (``OutboxBuilder.for_escalation``) with a ``correlation_id`` (the result's
result_id). A reply on the response topic is a JSON object::

    {"correlation_id": "res:...", "label": "fault", "severity": 3, "summary": "...", "fields": {...}, "model": "..."}

(``label`` required, the rest optional). In one writer transaction the results row of that record
is replaced (``needs_review = 0``, ``path = 'refined_upstream'``) and an outbox row for the refined
result (result_id ``res:...:refined``, ``refined: true``) is inserted, so the publisher sends it on
the normal results topic. Unknown correlation ids, results already refined and malformed replies
are logged and counted as ``escalation.rejected``; refined results as ``escalation.refined``.
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

log = logging.getLogger(__name__)

REFINED_PATH = "refined_upstream"


class Rejected(ValueError):
    """A reply that cannot be applied."""


def parse_reply(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise Rejected(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Rejected("not a JSON object")
    cid = doc.get("correlation_id")
    if not isinstance(cid, str) or not cid:
        raise Rejected("no correlation_id")
    label = doc.get("label")
    if not isinstance(label, str) or not label:
        raise Rejected("no label")
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
    return reply


def apply_reply(db: sqlite_utils.Database, builder: OutboxBuilder, reply: dict[str, Any]) -> str:
    """In the writer's transaction: replace the result and queue the refined message. Returns the
    refined result_id; raises Rejected (nothing written) when the reply cannot be applied."""
    cid = reply["correlation_id"]
    record_id = outbox_store.record_id_of(db, cid)
    if record_id is None:
        raise Rejected(f"unknown correlation_id {cid!r}")
    result, record = inbox.load_result(db, record_id), inbox.load_record(db, record_id)
    if result is None or record is None:
        raise Rejected(f"the result of {cid!r} is gone")
    if result.path == REFINED_PATH:
        raise Rejected(f"{cid!r} was already refined")
    changes = {key: reply[key] for key in ("severity", "summary", "fields", "model") if key in reply}
    result = dataclasses.replace(
        result, needs_review=False, path=REFINED_PATH, label=reply["label"], classified_by="upstream",
        triage_version=None, analyzed_at=time.time(), **changes,
    )
    inbox.update_result(db, result)
    refined = builder.for_result(result, record, refined=True)
    outbox_store.insert_rows(db, [refined])
    db.conn.execute(ADD_COUNTER, ("escalation.refined", 1))
    return refined.result_id


def _count_rejected(db: sqlite_utils.Database) -> None:
    db.conn.execute(ADD_COUNTER, ("escalation.rejected", 1))


class EscalationReplies:
    """Handles replies on the response topic (called on the publisher's network thread; the work is
    done by the store writer, so the network thread never waits on the database)."""

    def __init__(self, builder: OutboxBuilder, writer: StoreWriter, on_refined: Callable[[], None]) -> None:
        self.builder = builder
        self.writer = writer
        self.on_refined = on_refined
        self.refined = 0
        self.rejected = 0

    def handle(self, payload: bytes) -> None:
        try:
            reply = parse_reply(payload)
        except Rejected as exc:
            self._rejected(f"malformed escalation reply: {exc}")
            return
        try:
            future = self.writer.call(lambda db: self._apply(db, reply))
        except WriterStopped:
            log.warning("store writer stopped; escalation reply for %s dropped", reply["correlation_id"])
            return
        future.add_done_callback(self._done)

    def _apply(self, db: sqlite_utils.Database, reply: dict[str, Any]) -> str | None:
        try:
            return apply_reply(db, self.builder, reply)
        except Rejected as exc:
            _count_rejected(db)
            self.rejected += 1
            log.warning("escalation reply rejected: %s", exc)
            return None

    def _done(self, future: Future) -> None:
        exc = future.exception()
        if exc is not None:
            self.rejected += 1
            log.error("applying an escalation reply failed: %s", exc)
            return
        result_id = future.result()
        if result_id is not None:
            self.refined += 1
            log.info("result refined upstream: %s", result_id)
            self.on_refined()

    def _rejected(self, why: str) -> None:
        self.rejected += 1
        log.warning("%s", why)
        try:
            self.writer.call(_count_rejected)
        except WriterStopped:
            pass
