"""Size and character limits on the fields of a record, applied before it enters the store.

Every producer of inbox rows (the file source, the MQTT source, submissions) passes its rows
through ``bound_record``, so no field can carry a megabyte or a NUL into the database, the page or
the outbox. Text is bounded by each source's own byte limit (flagged ``truncated`` there); here it
only loses NUL characters, which SQLite's text functions and many consumers stop at.
"""

from __future__ import annotations

import re

from edged.store.records import NewRecord, Rejected

MAX_MACHINE_CHARS = 128  # a machine name is a label on the page and a topic level upstream
MAX_SOURCE_CHARS = 512  # "mqtt:" + topic, "file:" + path
MAX_ORIGIN_CHARS = 2048
MAX_REJECT_DETAIL_CHARS = 500
MAX_GIVEN_ID_CHARS = 200  # a sender's own id; longer ones are refused, never cut (a cut id could merge two)

NUL = "\0"
REPLACEMENT = "\ufffd"
# Control characters have no place in a name: they would garble the page, the topic, the terminal.
_NAME_CONTROLS = re.compile("[\x00-\x1f\x7f]")


def _cut(value: str, longest: int) -> str:
    return value if len(value) <= longest else value[:longest]


def bound_name(value: str | None, longest: int = MAX_MACHINE_CHARS) -> tuple[str | None, bool]:
    """A short single-line name (machine): controls removed, cut to ``longest``; whether it changed."""
    if value is None:
        return None, False
    cleaned = _cut(_NAME_CONTROLS.sub("", value), longest).strip()
    return (cleaned or None), cleaned != value


def bound_record(rec: NewRecord) -> tuple[NewRecord, bool]:
    """``rec`` within the limits, and whether anything had to change (callers count it)."""
    machine, changed = bound_name(rec.machine)
    text = rec.text
    if NUL in text:
        text = text.replace(NUL, REPLACEMENT)
        changed = True
    source = rec.source
    if len(source) > MAX_SOURCE_CHARS or NUL in source:
        source = _cut(source.replace(NUL, REPLACEMENT), MAX_SOURCE_CHARS)
        changed = True
    origin = rec.origin
    if origin is not None and (len(origin) > MAX_ORIGIN_CHARS or NUL in origin):
        origin = _cut(origin.replace(NUL, REPLACEMENT), MAX_ORIGIN_CHARS)
        changed = True
    if not changed:
        return rec, False
    return rec._replace(machine=machine, text=text, source=source, origin=origin), True


def bound_rejected(rej: Rejected) -> Rejected:
    """A rejection's own text fields within the limits (its sample is already a bounded byte string)."""
    source = _cut(rej.source.replace(NUL, REPLACEMENT), MAX_SOURCE_CHARS)
    detail = rej.detail
    if detail is not None:
        detail = _cut(detail.replace(NUL, REPLACEMENT), MAX_REJECT_DETAIL_CHARS)
    if source == rej.source and detail == rej.detail:
        return rej
    return rej._replace(source=source, detail=detail)
