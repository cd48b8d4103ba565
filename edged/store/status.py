"""What ``edged status`` reports. The JSON keys are a stable interface for scripts and monitoring:
``records.total``, ``records.by_status`` (pending, leased, done, parked), ``records.by_kind``,
``records.by_source``, ``analysis.model_calls``, ``analysis.cache_hits``, ``analysis.templates``, ``analysis.template_refreshes``, ``analysis.template_carried``,
``analysis.results``, ``analysis.by_label``, ``analysis.needs_review``, ``rejected.total``, ``rejected.by_reason``, ``files``, ``counters``,
``db.path``, ``db.bytes``, ``schema_version``, ``storage.max_bytes``, ``storage.used_bytes``,
``storage.evicted`` (by kind), ``storage.refused`` (by reason), ``storage.paused``,
``storage.paused_reasons``, ``storage.backpressure_engaged`` (see edged.store.retention),
``upstream.unsent``, ``upstream.sent``, ``upstream.oldest_unsent_s`` (results in the outbox not yet /
already acknowledged by the upstream broker; age in seconds of the oldest unsent one, null if none),
``upstream.published``, ``upstream.resent``, ``upstream.connects``, ``upstream.expired`` (counters),
``analysis.classified_by`` (results by path: triage, dump, level, lexicon, slm, upstream), ``analysis.ungrounded`` (model values
rejected as not in the text, per field), ``analysis.summaries`` (cut, regenerated, failed_check) and ``analysis.digest_checks`` (the same for digests), ``triage.labels`` (training labels by
source), ``triage.versions``, ``triage.active`` (version, heldout_micro_f1, train_size, created_at, routing; null
before the first accepted training), ``escalation.escalated`` (results sent to the teacher),
``escalation.refined``, ``escalation.duplicates``, ``escalation.rejected`` and
``escalation.rejected_by_reason`` (replies dropped: not_json, malformed, label_outside_taxonomy,
severity_out_of_range, unknown_correlation_id, result_gone).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlite_utils

from edged.store.database import database_bytes
from edged.store.migrations import current_version
from edged.store.outbox import upstream_status
from edged.store.records import KINDS, STATUSES
from edged.store.retention import storage_status


def _grouped(db: sqlite_utils.Database, sql: str) -> dict[str, int]:
    return {key: count for key, count in db.execute(sql).fetchall()}


def _analysis(db: sqlite_utils.Database) -> dict[str, Any]:
    counters = _grouped(db, "SELECT name, value FROM counters WHERE name LIKE 'analysis.%'")
    return {
        "results": db.execute("SELECT count(*) FROM results").fetchone()[0],
        "by_label": _grouped(db, "SELECT label, count(*) FROM results WHERE label IS NOT NULL GROUP BY label"),
        "needs_review": db.execute("SELECT count(*) FROM results WHERE needs_review").fetchone()[0],
        "model_calls": counters.get("analysis.model_calls", 0),
        "cache_hits": counters.get("analysis.cache_hits.template", 0) + counters.get("analysis.cache_hits.exact", 0),
        "templates": db.execute("SELECT count(*) FROM templates").fetchone()[0],
        "template_refreshes": counters.get("analysis.template_refreshes", 0),
        "template_carried": counters.get("analysis.template_carried", 0),
        "digests": db.execute("SELECT count(*) FROM digests").fetchone()[0],
        "parked": _grouped(db, "SELECT coalesce(error, '?'), count(*) FROM records WHERE status = 'parked' GROUP BY 1"),
        "classified_by": _grouped(
            db, "SELECT classified_by, count(*) FROM results WHERE classified_by IS NOT NULL GROUP BY 1"
        ),
        # model values rejected because they were not in the record's text, per field
        "ungrounded": {k.split(".", 2)[2]: v for k, v in counters.items() if k.startswith("analysis.ungrounded.")},
        # summaries cut at a repetition, generated again, kept after failing their check
        "summaries": {k.split(".", 2)[2]: v for k, v in counters.items() if k.startswith("analysis.summaries.")},
        # the same for digests
        "digest_checks": {k.split(".", 2)[2]: v for k, v in counters.items() if k.startswith("analysis.digest_checks.")},
    }


def _triage(db: sqlite_utils.Database) -> dict[str, Any]:
    active = db.execute(
        "SELECT version, heldout_micro_f1, train_size, created_at, routing FROM triage_models WHERE active = 1"
    ).fetchone()
    if active:  # routing: the version's measured choice for unsure records (null: not measured)
        routing = json.loads(active[4]) if active[4] else None
        active = (*active[:4], {k: routing[k] for k in ("route_to_model", "threshold", "reason")} if routing else None)
    return {
        "labels": _grouped(db, "SELECT source, count(*) FROM training_labels GROUP BY source"),
        "versions": db.execute("SELECT count(*) FROM triage_models").fetchone()[0],
        "active": dict(zip(("version", "heldout_micro_f1", "train_size", "created_at", "routing"), active))
        if active else None,
    }


def _escalation(db: sqlite_utils.Database) -> dict[str, Any]:
    counters = _grouped(db, "SELECT name, value FROM counters WHERE name LIKE 'escalation.%'")
    prefix = "escalation.rejected."
    return {
        "escalated": counters.get("escalation.escalated", 0),
        "refined": counters.get("escalation.refined", 0),
        "duplicates": counters.get("escalation.duplicates", 0),
        "rejected": counters.get("escalation.rejected", 0),
        "rejected_by_reason": {k[len(prefix):]: v for k, v in counters.items() if k.startswith(prefix)},
    }


def collect_status(db: sqlite_utils.Database, path: Path, max_bytes: int | None = None) -> dict[str, Any]:
    """``max_bytes``: the configured size cap, shown beside the used size."""
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
        # state.* rows are gauges (the retention job's current state), shown under storage.
        "counters": _grouped(db, "SELECT name, value FROM counters WHERE name NOT LIKE 'state.%' ORDER BY name"),
        "analysis": _analysis(db),
        "triage": _triage(db),
        "db": {"path": str(path), "bytes": database_bytes(path)},
        "schema_version": current_version(db),
        "storage": storage_status(db, path, max_bytes),
        "upstream": upstream_status(db),
        "escalation": _escalation(db),
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
    a = status["analysis"]
    lines.append(
        f"analysis   {a['results']} results, {a['needs_review']} need review; {a['model_calls']} model calls,"
        f" {a['cache_hits']} cache hits, {a['templates']} templates ({a['template_carried']} kept their answer"
        f" and {a['template_refreshes']} were answered afresh after they generalised), {a['digests']} digests"
    )
    if a["by_label"]:
        lines.append("labels     " + ", ".join(f"{k} {v}" for k, v in sorted(a["by_label"].items())))
    if a["ungrounded"]:
        lines.append("ungrounded " + ", ".join(f"{k} {v}" for k, v in sorted(a["ungrounded"].items()))
                     + " (model values not in the text, dropped)")
    checks = [f"{what} " + ", ".join(f"{k} {v}" for k, v in sorted(a[key].items()))
              for what, key in (("summaries", "summaries"), ("digests", "digest_checks")) if a[key]]
    if checks:
        lines.append("checked    " + "; ".join(checks) + " (cut at a repetition, generated again, kept for review)")
    if a["classified_by"]:
        lines.append("classified " + ", ".join(f"by {k} {v}" for k, v in sorted(a["classified_by"].items())))
    t = status["triage"]
    active = t["active"]
    lines.append(
        f"triage     {sum(t['labels'].values())} labels"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(t['labels'].items()))})" if t["labels"] else "")
        + f"; {t['versions']} trained versions"
        + (f", version {active['version']} active (held-out micro-F1 {active['heldout_micro_f1']:.3f},"
           f" trained on {active['train_size']})" if active else ", none active")
    )
    if a["parked"]:
        lines.append("parked")
        lines += [f"  {n:>10}  {error[:100]}" for error, n in a["parked"].items()]
    st = status["storage"]
    cap = f"cap {st['max_bytes'] / 1e6:.1f} MB" if st["max_bytes"] else "no cap"
    lines.append(
        f"storage    {st['used_bytes'] / 1e6:.1f} MB in use, {cap}"
        + (f"; PAUSED ({', '.join(st['paused_reasons'])})" if st["paused"] else "")
    )
    if st["evicted"]:
        lines.append("evicted    " + ", ".join(f"{k} {v}" for k, v in st["evicted"].items()))
    if st["refused"]:
        lines.append("refused    " + ", ".join(f"{k} {v}" for k, v in st["refused"].items()))
    up = status["upstream"]
    age = "" if up["oldest_unsent_s"] is None else f", oldest unsent {up['oldest_unsent_s']:.0f} s old"
    lines.append(
        f"upstream   {up['unsent']} results waiting, {up['sent']} delivered and kept{age};"
        f" {up['published']} delivered in all, {up['resent']} sent again, {up['connects']} connects"
    )
    if status["counters"]:
        lines.append("counters")
        lines += [f"  {n:>10}  {name}" for name, n in status["counters"].items()]
    return "\n".join(lines)
