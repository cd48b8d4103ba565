"""The order the analyzer takes work in: incident reports, then lines that look like alerts, then the rest.

A source gives a record its base priority (INCIDENT or ROUTINE). Whether a log line looks like an
alert is decided by the store, in SQL, as the row is inserted (``alert_priority_sql``): the check
then runs in SQLite's C code with Python's GIL released, instead of costing the ingest thread a
regex per line. A false positive only moves a line forward in the queue.
"""

from __future__ import annotations

INCIDENT = 10
ALERT = 5
ROUTINE = 0

# Upper-case fragments of the words machines and their software use for trouble.
ALERT_MARKERS = (
    "ERR", "FATAL", "CRIT", "ALARM", "ALERT", "EMERG", "FAIL", "FAULT", "PANIC", "EXCEPTION",
    "E-STOP", "ESTOP", "ABORT", "SEVERE", "OVERTEMP", "OVERLOAD",
)
SCAN_CHARS = 300  # levels and error words sit at the start of a line


def alert_priority_sql(text: str, base: str) -> str:
    """SQL for a row's priority from its text and base priority expressions (e.g. parameters)."""
    head = f"upper(substr({text}, 1, {SCAN_CHARS}))"
    test = " OR ".join(f"instr({head}, '{m}') > 0" for m in ALERT_MARKERS)
    return f"max({base}, CASE WHEN {test} THEN {ALERT} ELSE {ROUTINE} END)"

