"""What ``edged status`` reports. The JSON keys are a stable interface for scripts and monitoring:
``records.total``, ``records.by_status`` (pending, leased, done, parked), ``records.by_kind``,
``records.by_source``, ``rejected.total``, ``rejected.by_reason``, ``files``, ``counters``,
``db.path``, ``db.bytes``, ``schema_version``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlite_utils

from edged.store.database import database_bytes
from edged.store.migrations import current_version
from edged.store.records import KINDS, STATUSES


def _grouped(db: sqlite_utils.Database, sql: str) -> dict[str, int]:
    return {key: count for key, count in db.execute(sql).fetchall()}


def collect_status(db: sqlite_utils.Database, path: Path) -> dict[str, Any]:
    by_status = dict.fromkeys(STATUSES, 0) | _grouped(db, "SELECT status, count(*) FROM records GROUP BY status")
    by_kind = dict.fromkeys(KINDS, 0) | _grouped(db, "SELECT kind, count(*) FROM records GROUP BY kind")
    by_reason = _grouped(db, "SELECT reason, count(*) FROM rejected GROUP BY reason")
    files = [
        dict(zip(("source", "path", "offset", "state", "reason", "updated_at"), row))
        for row in db.execute(
            "SELECT source, path, offset, state, reason, updated_at FROM file_positions"
            " WHERE state IN ('active', 'draining', 'skipped') ORDER BY source, first_seen"
        ).fetchall()
    ]
    return {
        "records": {
            "total": sum(by_status.values()),
            "by_status": by_status,
            "by_kind": by_kind,
            "by_source": _grouped(db, "SELECT source, count(*) FROM records GROUP BY source"),
        },
        "rejected": {"total": sum(by_reason.values()), "by_reason": by_reason},
        "files": files,
        "counters": _grouped(db, "SELECT name, value FROM counters ORDER BY name"),
        "db": {"path": str(path), "bytes": database_bytes(path)},
        "schema_version": current_version(db),
    }


def format_status(status: dict[str, Any]) -> str:
    """The human-readable form of collect_status()."""
    r = status["records"]
    lines = [
        f"database   {status['db']['path']} ({status['db']['bytes'] / 1e6:.1f} MB, schema v{status['schema_version']})",
        f"records    {r['total']} total: " + ", ".join(f"{k} {v}" for k, v in r["by_status"].items()),
        "kinds      " + ", ".join(f"{k} {v}" for k, v in r["by_kind"].items()),
        f"rejected   {status['rejected']['total']}"
        + "".join(f"\n             {n:>8}  {reason}" for reason, n in status["rejected"]["by_reason"].items()),
        "sources",
    ]
    lines += [f"  {n:>10}  {source}" for source, n in sorted(r["by_source"].items())] or ["  (none yet)"]
    lines.append("files")
    lines += [
        f"  {f['state']:<9} {f['path']} @ {f['offset']}" + (f" ({f['reason']})" if f["reason"] else "")
        for f in status["files"]
    ] or ["  (none yet)"]
    if status["counters"]:
        lines.append("counters")
        lines += [f"  {n:>10}  {name}" for name, n in status["counters"].items()]
    return "\n".join(lines)
