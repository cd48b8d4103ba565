"""/metrics in the Prometheus text exposition format (version 0.0.4).

Counters from the ``counters`` table survive restarts (they only grow); ``*_since_start`` figures are
the daemon's in-memory totals and restart at 0, which Prometheus' rate() handles. Gauges that count
rows (records by status, results by label, rejected inputs) are what the database holds now, so they
go down when eviction deletes rows.
"""

from __future__ import annotations

from typing import Any, Iterable

from edged import __version__
from edged.web.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, Any], float | int | None]


def _label_value(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, name: str, kind: str, help_text: str, samples: Iterable[Sample] | float | int | None) -> None:
        if samples is None:
            return
        if not isinstance(samples, (list, tuple)) and not hasattr(samples, "__next__"):
            samples = [({}, samples)]
        samples = [(labels, value) for labels, value in samples if value is not None]
        self.lines.append(f"# HELP {name} {help_text.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{label_text}}} {float(value)!r}" if label_text else f"{name} {float(value)!r}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(status: dict[str, Any], runtime: Runtime, extra: dict[str, Any]) -> str:
    """``status``: collect_status(); ``extra``: label_corrections, last_delivery."""
    e = Exposition()
    counters = status["counters"]
    model = runtime.model() or {}
    e.add("edged_info", "gauge", "edged's version, model and backend (always 1)",
          [({"version": __version__, "model": model.get("name") or "",
             "backend": model.get("backend") or ""}, 1)])
    e.add("edged_uptime_seconds", "gauge", "seconds since the daemon started", round(runtime.uptime_s, 1))
    e.add("edged_worker_up", "gauge", "1 while the worker thread is alive",
          [({"worker": name}, int(alive)) for name, alive in runtime.workers().items()])

    r = status["records"]
    e.add("edged_records", "gauge", "records in the database by status",
          [({"status": k}, v) for k, v in r["by_status"].items()])
    e.add("edged_records_by_kind", "gauge", "records in the database by kind",
          [({"kind": k}, v) for k, v in r["by_kind"].items()])

    a = status["analysis"]
    e.add("edged_results", "gauge", "analysis results in the database by the model's label",
          [({"label": k}, v) for k, v in sorted(a["by_label"].items())])
    e.add("edged_results_needs_review", "gauge", "results below the confidence threshold", a["needs_review"])
    e.add("edged_templates", "gauge", "log templates mined", a["templates"])
    e.add("edged_digests", "gauge", "digests in the database", a["digests"])
    e.add("edged_model_calls_total", "counter", "calls to the model", a["model_calls"])
    e.add("edged_cache_hits_total", "counter", "results reused instead of calling the model",
          [({"cache": c}, counters.get(f"analysis.cache_hits.{c}", 0)) for c in ("template", "exact")])
    e.add("edged_label_corrections", "gauge", "labels corrected by people", extra.get("label_corrections"))

    e.add("edged_rejected_inputs", "gauge", "inputs kept as rejected, by reason",
          [({"reason": k}, v) for k, v in sorted(status["rejected"]["by_reason"].items())])

    up = status["upstream"]
    e.add("edged_outbox_unsent", "gauge", "results waiting for the upstream broker", up["unsent"])
    e.add("edged_outbox_sent", "gauge", "results delivered upstream and still kept", up["sent"])
    e.add("edged_outbox_oldest_unsent_seconds", "gauge", "age of the oldest result not yet delivered",
          up["oldest_unsent_s"])
    e.add("edged_publish_sent_total", "counter", "results acknowledged by the upstream broker", up["published"])
    e.add("edged_publish_resent_total", "counter", "results published again after a reconnect", up["resent"])
    e.add("edged_publish_connects_total", "counter", "connections to the upstream broker", up["connects"])
    e.add("edged_outbox_expired_total", "counter", "delivered results deleted after [upstream] sent_ttl_s",
          up["expired"])
    e.add("edged_last_delivery_timestamp_seconds", "gauge", "when the upstream broker last acknowledged a result",
          extra.get("last_delivery"))

    st = status["storage"]
    e.add("edged_db_bytes", "gauge", "database file size with its write-ahead log", status["db"]["bytes"])
    e.add("edged_db_used_bytes", "gauge", "database pages in use plus the write-ahead log", st["used_bytes"])
    e.add("edged_db_max_bytes", "gauge", "database size cap ([store] max_bytes)", st.get("max_bytes") or None)
    e.add("edged_evicted_total", "counter", "rows deleted to stay under the size cap",
          [({"what": k}, v) for k, v in st["evicted"].items()])
    e.add("edged_refused_total", "counter", "times input was refused", [({"reason": k}, v) for k, v in st["refused"].items()])
    e.add("edged_sources_paused", "gauge", "1 while the sources are held for this reason",
          [({"reason": k}, int(k in st["paused_reasons"])) for k in ("backlog", "storage_full")])

    writer = runtime.writer
    if writer is not None:
        e.add("edged_ingested_records_since_start_total", "counter", "new records committed since start",
              writer.records_inserted)
        e.add("edged_duplicate_records_since_start_total", "counter", "records already stored, skipped",
              writer.duplicates)
        e.add("edged_store_commits_since_start_total", "counter", "transactions committed by the writer",
              writer.commits)
        e.add("edged_store_queued_rows", "gauge", "rows waiting for the writer", writer.queued_rows)
    analyzer = runtime.analyzer
    if analyzer is not None:
        e.add("edged_analyzed_records_since_start_total", "counter", "records analyzed since start",
              analyzer.analyzed)
        e.add("edged_analyzer_busy_seconds", "gauge", "seconds the current batch has been running (0 = idle)",
              runtime.analyzer_busy_s() or 0)
    brokers = runtime.brokers()
    e.add("edged_broker_connected", "gauge", "1 while connected to the broker (configured links only)",
          [({"link": k}, int(v["connected"])) for k, v in brokers.items() if v["configured"]])
    if brokers["ingest"]["configured"]:
        e.add("edged_mqtt_messages_received_since_start_total", "counter", "MQTT messages received since start",
              brokers["ingest"]["received"])
    e.add("edged_events_total", "counter", "every counter edged keeps in its database, by name",
          [({"event": k}, v) for k, v in sorted(counters.items())])
    return e.text()
