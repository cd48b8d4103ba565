"""The eviction order: what leaves the database first when it is over its size cap.

Each function runs inside the store writer's transaction and deletes at most ``limit`` records (and
their results and outbox rows), oldest first; ``evict_chunk`` takes the first step of the order that
still has something to delete and counts it in ``counters`` in the same transaction:

1. Results delivered upstream (their outbox row has a PUBACK, ``sent_at`` set), with their records:
   the outbox rows, counted as ``evicted.sent_messages`` (digests' included), and the done records
   with their results, counted as ``evicted.sent_log_results`` / ``evicted.sent_incidents``. Done
   records that no longer have any outbox row (their message was sent and then deleted after
   ``[upstream] sent_ttl_s``) count here too, and go first: they are the oldest. Digests themselves
   are kept (they are few, and the next digest's window starts where the last one ended).
2. Log-line results not delivered yet, with their records and outbox rows, counted as
   ``evicted.unsent_log_results``.
3. Nothing else: incident reports not delivered yet, records not analyzed yet, parked records,
   templates. The caller (edged.store.retention) refuses new input instead.
"""

from __future__ import annotations

import sqlite_utils

from edged.store.outbox import result_id_for
from edged.store.records import ADD_COUNTER

ORPHAN_SCAN = 1000  # how many of the oldest done records are looked at for ones without an outbox row
CHUNK = 500  # records per step: their ids go into IN lists, which SQLite before 3.32 caps at 999 values


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _delete_records(db: sqlite_utils.Database, record_ids: list[str]) -> dict[str, int]:
    """Delete done records and their results; returns how many of each kind went."""
    if not record_ids:
        return {}
    marks = _marks(len(record_ids))
    kinds = dict(
        db.execute(
            f"SELECT kind, count(*) FROM records WHERE status = 'done' AND record_id IN ({marks}) GROUP BY kind",
            record_ids,
        ).fetchall()
    )
    # results.record_id references records: the results go first.
    db.execute(
        f"DELETE FROM results WHERE record_id IN (SELECT record_id FROM records WHERE status = 'done'"
        f" AND record_id IN ({marks}))",
        record_ids,
    )
    db.execute(f"DELETE FROM records WHERE status = 'done' AND record_id IN ({marks})", record_ids)
    return kinds


def _orphans(db: sqlite_utils.Database, limit: int) -> list[str]:
    """Done records among the oldest ``ORPHAN_SCAN`` that have no outbox row left (sent, then expired)."""
    rows = db.execute(
        "SELECT r.record_id, s.record_id, s.model_sha256, s.prompt_version FROM records r"
        " LEFT JOIN results s ON s.record_id = r.record_id"
        " WHERE r.status = 'done' ORDER BY r.id LIMIT ?",
        (ORPHAN_SCAN,),
    ).fetchall()
    if not rows:
        return []
    # An outbox row is found by its result_id, which the result determines (outbox.record_id has
    # no index; result_id has).
    ids = {}
    for record_id, has_result, sha, prompt_version in rows:
        if has_result is not None:
            base = result_id_for(record_id, sha, prompt_version)
            ids[base] = ids[base + ":refined"] = record_id
    have = set()
    keys = list(ids)
    for i in range(0, len(keys), 500):
        part = keys[i : i + 500]
        found = db.execute(f"SELECT result_id FROM outbox WHERE result_id IN ({_marks(len(part))})", part)
        have.update(ids[rid] for (rid,) in found)
    return [row[0] for row in rows if row[0] not in have][:limit]


def evict_sent(db: sqlite_utils.Database, limit: int, orphans: bool = True) -> tuple[dict[str, int], bool]:
    """Tier 1: delivered results (and their records), oldest first.

    Returns the counter increments, and whether records without an outbox row were found (when
    not, the caller may skip looking for them, with ``orphans=False``, for the rest of its pass).
    """
    counts: dict[str, int] = {}
    expired = _orphans(db, limit) if orphans else []
    kinds = _delete_records(db, expired)
    if not expired:
        rows = db.execute(
            "SELECT id, record_id FROM outbox WHERE sent_at IS NOT NULL ORDER BY sent_at LIMIT ?", (limit,)
        ).fetchall()
        if rows:
            db.execute(f"DELETE FROM outbox WHERE id IN ({_marks(len(rows))})", [i for i, _ in rows])
            counts["evicted.sent_messages"] = len(rows)
            kinds = _delete_records(db, sorted({r for _, r in rows if r is not None}))
    if kinds.get("log"):
        counts["evicted.sent_log_results"] = kinds["log"]
    if kinds.get("incident"):
        counts["evicted.sent_incidents"] = kinds["incident"]
    return counts, bool(expired)


def evict_unsent_logs(db: sqlite_utils.Database, limit: int) -> dict[str, int]:
    """Tier 2: log-line results not delivered yet, with their records and outbox rows, oldest first."""
    rows = db.execute(
        "SELECT o.id, o.record_id FROM outbox o JOIN records r ON r.record_id = o.record_id"
        " WHERE o.sent_at IS NULL AND o.kind = 'log' AND r.kind = 'log' AND r.status = 'done'"
        " ORDER BY o.id LIMIT ?",
        (limit,),
    ).fetchall()
    if not rows:
        return {}
    db.execute(f"DELETE FROM outbox WHERE id IN ({_marks(len(rows))})", [i for i, _ in rows])
    kinds = _delete_records(db, sorted({r for _, r in rows}))
    return {"evicted.unsent_log_results": kinds.get("log", 0)}


def evict_chunk(db: sqlite_utils.Database, limit: int, orphans: bool = True) -> tuple[dict[str, int], bool]:
    """One step of the eviction order, counted in the same transaction.

    Returns the counter increments (empty: nothing left to evict) and whether it found records
    without an outbox row (see ``evict_sent``).
    """
    counts, found = evict_sent(db, limit, orphans)
    if not counts:
        counts = evict_unsent_logs(db, limit)
    if counts:
        db.conn.executemany(ADD_COUNTER, list(counts.items()))
    return counts, found


def pages_in_use_bytes(db: sqlite_utils.Database) -> int:
    """Bytes of pages in use; inside a transaction it includes that transaction's changes."""
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    page_count = db.execute("PRAGMA page_count").fetchone()[0]
    return (page_count - db.execute("PRAGMA freelist_count").fetchone()[0]) * page_size


def evict(
    db: sqlite_utils.Database, *, max_records: int, until_bytes: int, orphans: bool = True
) -> tuple[dict[str, int], bool]:
    """Steps of the eviction order in one transaction, until the pages in use are at most
    ``until_bytes`` or steps of ``max_records`` records in all have run. Returns the counts (empty:
    nothing left to evict) and ``orphans`` for the next call (see ``evict_sent``)."""
    total: dict[str, int] = {}
    left = max_records
    while left > 0:
        step = min(CHUNK, left)
        counts, orphans = evict_chunk(db, step, orphans)
        if not counts:
            break
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
        left -= step
        if pages_in_use_bytes(db) <= until_bytes:
            break
    return total, orphans
