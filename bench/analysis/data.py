"""The lines the analysis benchmark feeds edged: Loghub systems (read at run time from
../shared/data/loghub, never copied here) or synthetic lines, and the order edged claims them in."""

from __future__ import annotations

import csv
import sqlite3
from functools import lru_cache

from bench.common import LOGHUB_DIR, synthetic_lines
from edged.analysis.templates import TemplateStore
from edged.priority import ROUTINE, alert_priority_sql

LABELLED = ("BGL", "Thunderbird")  # systems whose raw lines start with an alert-label field
MODEL_SYSTEMS = ("HDFS", "OpenSSH", "Apache")  # (b) with the real model: few templates, three log styles


@lru_cache(maxsize=1)
def _priority_db() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", check_same_thread=False)


def claim_priority(text: str) -> int:
    """The priority the store gives a log line as it is inserted, computed by the same SQL
    (``edged.priority.alert_priority_sql``), so the bench orders lines exactly as the analyzer claims them."""
    return _priority_db().execute(f"SELECT {alert_priority_sql('?1', str(ROUTINE))}", (text,)).fetchone()[0]


def loghub_system(name: str) -> tuple[list[str], list[str]]:
    """A system's raw lines and each line's ground-truth event id (corrected templates where present)."""
    folder = LOGHUB_DIR / name
    structured = folder / f"{name}_2k.log_structured_corrected.csv"
    if not structured.exists():
        structured = folder / f"{name}_2k.log_structured.csv"
    with (folder / f"{name}_2k.log").open(encoding="utf-8", errors="replace", newline="") as f:
        raw = [ln.rstrip("\r\n").replace("\r", " ") for ln in f]
    with structured.open(encoding="utf-8", errors="replace", newline="") as f:
        events = [row["EventId"] for row in csv.DictReader(f)]
    if name in LABELLED:  # the dataset's alert label, not part of what the machine logged
        raw = [t.partition(" ")[2] for t in raw]
    pairs = [(t, e) for t, e in zip(raw, events) if t.strip()]
    return [t for t, _ in pairs], [e for _, e in pairs]


def loghub_systems() -> list[str]:
    return sorted(p.parent.name for p in LOGHUB_DIR.glob("*/*_2k.log")) if LOGHUB_DIR.is_dir() else []


def distinct_template_lines(n: int) -> tuple[list[tuple[str, str]], str]:
    """Up to n (machine, line) pairs in the analyzer's claim order (alert-looking first), each a new
    template for edged's miner when mined in that order, so every one of them reaches the model."""
    systems = loghub_systems()
    queues: dict[str, list[str]] = {}
    if systems:
        for s in systems:
            seen_events: set[str] = set()
            texts, events = loghub_system(s)
            queues[s] = [t for t, e in zip(texts, events) if not (e in seen_events or seen_events.add(e))]
        what = f"loghub: first line of ground-truth events, round-robin over {len(systems)} systems"
    else:
        queues["synthetic"] = [ln.decode().strip() for ln in synthetic_lines(2000)]
        what = "synthetic industrial lines (../shared/data/loghub not found)"
    candidates: list[tuple[str, str]] = []
    texts_seen: set[str] = set()
    for i in range(max(map(len, queues.values()))):
        for system, queue in queues.items():
            if i < len(queue) and queue[i] not in texts_seen and len(candidates) < 4 * n:
                texts_seen.add(queue[i])
                candidates.append((system, queue[i]))
    candidates.sort(key=lambda c: -claim_priority(c[1]))  # stable: the insertion order within a priority
    while True:  # drop lines that share a template with an earlier one, until a fresh miner agrees
        miner, ids, kept = TemplateStore(), set(), []
        for system, text in candidates:
            tid = miner.mine(text).template_id
            if tid not in ids:
                ids.add(tid)
                kept.append((system, text))
        if len(kept) == len(candidates):
            return kept[:n], what
        candidates = kept
