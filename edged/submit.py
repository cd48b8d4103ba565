"""Incident reports from people (``edged submit`` and the web page's form): one ``kind=incident`` record each.

Both check their input the same way (``clean_report``): a report of at most ``MAX_REPORT_CHARS``
characters and a machine name of at most ``MAX_MACHINE_CHARS``, neither with control characters.
"""

from __future__ import annotations

import json
import time

import sqlite_utils

from edged.ids import submitted_record_id
from edged.priority import INCIDENT
from edged.store.database import write_transaction
from edged.store.limits import MAX_GIVEN_ID_CHARS, MAX_MACHINE_CHARS, bound_record
from edged.store.records import NewRecord
from edged.store.writer import WriteBatch

INCIDENT_PRIORITY = INCIDENT  # incident reports are analyzed before log lines
MAX_REPORT_CHARS = 20_000  # what one person types; MQTT reports may be longer (store.limits)


class Invalid(ValueError):
    """Input the person must fix; the message says what."""


def clean_field(value: str | None, name: str, longest: int) -> str | None:
    """``value`` stripped (None when empty); Invalid when longer than ``longest`` or with control characters."""
    value = (value or "").strip()
    if len(value) > longest:
        raise Invalid(f"{name} is longer than {longest} characters")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        raise Invalid(f"{name} contains control characters")
    return value or None


def clean_report(text: str | None, machine: str | None) -> tuple[str, str | None]:
    """The checks every incident report passes, from the web form, the API or ``edged submit``."""
    text = clean_field(text, "the report", MAX_REPORT_CHARS)
    if not text:
        raise Invalid("the report is empty: describe what happened (an incident report needs some text)")
    return text, clean_field(machine, "the machine name", MAX_MACHINE_CHARS)


def incident_record(text: str, *, machine: str | None, via: str, given_id: str | None = None) -> NewRecord:
    text = text.strip()
    if not text:
        raise ValueError("an incident report needs some text")
    if len(text) > MAX_REPORT_CHARS:
        raise ValueError(f"the report is longer than {MAX_REPORT_CHARS} characters")
    if given_id is not None and (len(given_id) > MAX_GIVEN_ID_CHARS or not given_id.strip()):
        raise ValueError(f"the id must be 1 to {MAX_GIVEN_ID_CHARS} characters")
    if machine is not None and len(machine) > MAX_MACHINE_CHARS:
        raise ValueError(f"the machine name is longer than {MAX_MACHINE_CHARS} characters")
    record, _ = bound_record(NewRecord(
        record_id=submitted_record_id(given_id),
        source=f"submit:{via}",
        machine=machine,
        kind="incident",
        text=text,
        flags="",
        origin=json.dumps({"via": via}),
        received_at=time.time(),
        priority=INCIDENT_PRIORITY,
    ))
    return record


def store_incident(db: sqlite_utils.Database, record: NewRecord) -> bool:
    """Store it directly (the CLI runs beside the daemon; SQLite serialises the two writers).
    Returns False when a report with the same id was already stored."""
    with write_transaction(db):
        result = WriteBatch(records=[record], source_type="submit").apply(db)
    return result.inserted == 1
