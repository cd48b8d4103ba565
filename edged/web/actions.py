"""The two changes the web page makes, both through the store writer (the daemon's only writer).

``Actions`` is the whole set the web may do to the running daemon: store an incident report (and
wake the analyzer for it) and record a label correction. Everything else the web reads through
the read-only view of ``edged.parts``.

An incident report becomes a ``kind=incident`` record like one from ``edged submit`` (``via="web"``);
it is never refused for storage (see edged.store.retention). A label correction is a row in
``label_corrections``: the model's label stays in ``results`` for later learning.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol

import sqlite_utils

from edged.store.records import ADD_COUNTER
from edged.store.writer import StoreWriter, WriteBatch
from edged.submit import Invalid, clean_field, clean_report, incident_record
from edged.triage.labels import add_correction
from edged.web.queries import current_label

__all__ = ["Actions", "Invalid", "NotFound", "correct_label", "submit_incident"]

MAX_NAME_CHARS = 80
MAX_NOTE_CHARS = 1000
WRITE_TIMEOUT_S = 15.0


class NotFound(LookupError):
    pass


def submit_incident(writer: StoreWriter, text: str | None, machine: str | None,
                    wake: Callable[[], None] | None = None) -> str:
    """Store an incident report; returns its record_id once committed."""
    text, machine = clean_report(text, machine)
    record = incident_record(text, machine=machine, via="web")
    batch = WriteBatch(records=[record], source_type="submit", counters={"web.incidents": 1})
    writer.submit(batch, timeout=WRITE_TIMEOUT_S).result(timeout=WRITE_TIMEOUT_S)
    if wake is not None:
        wake()
    return record.record_id


def correct_label(writer: StoreWriter, record_id: str, new_label: str | None, labels: list[str],
                  corrected_by: str | None, note: str | None) -> str | None:
    """Record a person's label for a record; returns the label it replaces (None if it had none)."""
    new_label = (new_label or "").strip()
    if new_label not in labels:
        raise Invalid(f"label must be one of: {', '.join(labels)}")
    corrected_by = clean_field(corrected_by, "the name", MAX_NAME_CHARS) or "web"
    note = clean_field(note, "the note", MAX_NOTE_CHARS)

    def store(db: sqlite_utils.Database) -> tuple[bool, str | None]:
        # Read in the writer's transaction: no race with another correction. An unknown record is
        # returned, not raised: an exception would make the writer retry its whole batch one by one.
        exists, old = current_label(db, record_id)
        if not exists:
            return False, None
        db.conn.execute(
            "INSERT INTO label_corrections (record_id, old_label, new_label, corrected_by, corrected_at, note)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (record_id, old, new_label, corrected_by, time.time(), note),
        )
        # The same label, with the record's text, is a training label (edged.triage).
        add_correction(db, record_id, new_label)
        db.conn.execute(ADD_COUNTER, ("web.label_corrections", 1))
        return True, old

    exists, old = writer.call(store).result(timeout=WRITE_TIMEOUT_S)
    if not exists:
        raise NotFound(record_id)
    return old


class _Parts(Protocol):
    """The parts ``Actions`` changes through: the store writer and the analyzer it wakes."""

    @property
    def writer(self) -> Any: ...
    @property
    def analyzer(self) -> Any: ...


class Actions:
    """What the web page and the JSON API may change in the running daemon, and nothing more."""

    def __init__(self, parts: _Parts, labels: list[str]) -> None:
        self._parts = parts
        self.labels = labels

    def _writer(self) -> StoreWriter:
        writer = self._parts.writer
        if writer is None:
            raise TimeoutError("the store writer is not running")
        return writer

    def wake_analyzer(self) -> None:
        """A report was stored: the analyzer looks now instead of at its next idle poll."""
        analyzer = self._parts.analyzer
        if analyzer is not None:
            analyzer.wake()

    def submit_incident(self, text: str | None, machine: str | None) -> str:
        return submit_incident(self._writer(), text, machine, self.wake_analyzer)

    def correct_label(self, record_id: str, new_label: str | None, corrected_by: str | None,
                      note: str | None) -> str | None:
        return correct_label(self._writer(), record_id, new_label, self.labels, corrected_by, note)
