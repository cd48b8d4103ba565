"""The overview: is the box healthy, is work flowing, what failed recently. Refreshes by itself."""

from __future__ import annotations

import time
from typing import Any

from edged.web.html import Safe, ago, clock, duration, fmt, join, number, per_second, size, url
from edged.web.pages.layout import PageContext, label_badge, layout, record_link, severity_chip, stat
from edged.web.runtime import Runtime

STUCK_S = 300.0  # an analyzer batch running longer than this is worth a look


def attention(status: dict[str, Any], runtime: Runtime, store_error: str | None) -> list[tuple[str, str]]:
    """What a technician should look at, as (level, message); level is "bad" or "warn"."""
    items: list[tuple[str, str]] = []
    if store_error:
        items.append(("bad", f"the database does not answer: {store_error}"))
    write_error = runtime.storage_error()
    if write_error:
        items.append(("bad", f"the database cannot be written ({write_error}): reading logs and MQTT is paused"
                             " and resumes by itself when writing works again"))
    dead = [name for name, alive in runtime.workers().items() if not alive]
    if dead:
        items.append(("bad", f"stopped: {', '.join(dead)} (edged restarts itself under systemd)"))
    if not status:
        return items
    st = status["storage"]
    if "storage_full" in st["paused_reasons"]:
        items.append(("bad", "database full: reading logs and MQTT is paused until space is free"))
    if "backlog" in st["paused_reasons"]:
        items.append(("warn", "backlog high: reading logs and MQTT is paused until analysis catches up"))
    brokers = runtime.brokers()
    if brokers["ingest"]["configured"] and not brokers["ingest"]["connected"]:
        items.append(("warn", "not connected to the MQTT broker the machines publish to"))
    if brokers["upstream"]["configured"] and not brokers["upstream"]["connected"]:
        items.append(("warn", f"not connected upstream: {number(status['upstream']['unsent'])} results waiting"))
    parked = status["records"]["by_status"].get("parked", 0)
    if parked:
        items.append(("warn", f"{number(parked)} records could not be analyzed (see Parked)"))
    busy = runtime.analyzer_busy_s()
    if busy is not None and busy > STUCK_S:
        items.append(("warn", f"the analyzer has been on one batch for {duration(busy)}"))
    return items


def _health_banner(items: list[tuple[str, str]], runtime: Runtime) -> Safe:
    workers = runtime.workers()
    if not items:
        return fmt(
            '<section class="health ok" id="health"><span class="dot"></span><div><strong>Healthy</strong>'
            "<span>all {} workers running · up {}</span></div></section>",
            len(workers), duration(runtime.uptime_s),
        )
    level = "bad" if any(lvl == "bad" for lvl, _ in items) else "warn"
    title = "Failing" if level == "bad" else "Needs attention"
    return fmt(
        '<section class="health {}" id="health"><span class="dot"></span><div><strong>{}</strong><ul>{}</ul></div></section>',
        level, title, join(fmt('<li class="{}">{}</li>', lvl, msg) for lvl, msg in items),
    )


def _link_state(link: dict[str, Any], off_hint: str) -> Safe:
    if not link["configured"]:
        return fmt('<span class="state off" title="{}">off</span>', off_hint)
    if link["connected"]:
        return Safe('<span class="state ok">connected</span>')
    return Safe('<span class="state bad">disconnected</span>')


def _figures(rows: list[tuple[str, object]]) -> Safe:
    return fmt('<table class="kv figures">{}</table>', join(fmt("<tr><th>{}</th><td>{}</td></tr>", k, v) for k, v in rows))


def _card(title: str, body: Safe, cls: str = "") -> Safe:
    return fmt('<section class="card {}"><h2>{}</h2>{}</section>', cls, title, body)


def render(ctx: PageContext, status: dict[str, Any], runtime: Runtime, extra: dict[str, Any],
           store_error: str | None = None) -> Safe:
    items = attention(status, runtime, store_error)
    parts = [_health_banner(items, runtime)]
    if status:
        parts.append(Safe('<div class="grid overview">'))
        parts += [_backlog(status), _rates(runtime), _links(status, runtime, extra), _storage(status),
                  _model(status, runtime, extra), _inputs(status, runtime)]
        parts.append(Safe("</div>"))
        parts.append(_problems(extra.get("problems") or []))
    body = join(parts)
    return layout(ctx, "Overview", body, refresh_s=ctx.refresh_s)


def _backlog(status: dict[str, Any]) -> Safe:
    by = status["records"]["by_status"]
    up = status["upstream"]
    oldest = "" if up["oldest_unsent_s"] is None else f"oldest result to send: {duration(up['oldest_unsent_s'])} old"
    stats = join([
        stat("waiting", by.get("pending", 0)),
        stat("analyzing", by.get("leased", 0)),
        stat("done", by.get("done", 0)),
        fmt('<a class="stat-link" href="/parked">{}</a>', stat("parked", by.get("parked", 0), "warn" if by.get("parked") else "")),
        stat("to send upstream", up["unsent"]),
    ])
    return _card("Backlog", fmt('<div class="stats">{}</div><p class="note">{}</p>', stats, oldest))


def _rates(runtime: Runtime) -> Safe:
    rates = runtime.rates()
    return _card("Throughput", fmt(
        '<div class="stats">{}</div><p class="note">average over the last minute</p>',
        join([stat("ingested", per_second(rates.get("ingest"))), stat("analyzed", per_second(rates.get("analysis"))),
              stat("delivered", per_second(rates.get("publish")))]),
    ))


def _links(status: dict[str, Any], runtime: Runtime, extra: dict[str, Any]) -> Safe:
    b = runtime.brokers()
    rows = [
        ("Machines (MQTT in)", _link_state(b["ingest"], "set [mqtt] url to receive from a broker")),
        ("Upstream (results out)", _link_state(b["upstream"], "set [upstream] url to deliver results")),
        ("Last delivery", ago(extra.get("last_delivery"))),
        ("Delivered in all", number(status["upstream"]["published"])),
    ]
    return _card("Connections", _figures(rows))


def _storage(status: dict[str, Any]) -> Safe:
    st = status["storage"]
    used, cap = st["used_bytes"], st.get("max_bytes")
    if cap:
        pct = 100 * used / cap
        meter = fmt(
            '<meter min="0" max="{}" low="{}" high="{}" optimum="0" value="{}"></meter>'
            '<p class="big">{} <span>of {} ({}%)</span></p>',
            cap, int(cap * 0.8), int(cap * 0.95), used, size(used), size(cap), f"{pct:.0f}",
        )
    else:
        meter = fmt('<p class="big">{} <span>no size cap</span></p>', size(used))
    evicted = sum(st["evicted"].values())
    rows = [("File on disk", size(status["db"]["bytes"])), ("Evicted to stay under the cap", number(evicted))]
    if st["refused"]:
        rows.append(("Input refused", number(sum(st["refused"].values()))))
    if st["paused"]:
        rows.append(("Sources paused", ", ".join(st["paused_reasons"])))
    return _card("Database", meter + _figures(rows))


def _model(status: dict[str, Any], runtime: Runtime, extra: dict[str, Any]) -> Safe:
    a = status["analysis"]
    model = runtime.model()
    if model is None:
        head = Safe('<p class="big">analysis off <span>[analysis] enabled = false</span></p>')
    else:
        head = fmt('<p class="big mono">{} <span>via {}</span></p>', model["name"], model["backend"])
    placement = (model or {}).get("placement")
    reused = a["cache_hits"]
    total = reused + a["model_calls"]
    rows = [
        ("Model calls", number(a["model_calls"])),
        ("Reused results", f"{number(reused)}" + (f" ({100 * reused / total:.0f}%)" if total else "")),
        ("Templates", number(a["templates"])),
        ("Need review", fmt('<a href="{}">{}</a>', url("/results", review=1), number(a["needs_review"]))
         if a["needs_review"] else "0"),
        ("Labels corrected", number(extra.get("label_corrections", 0))),
    ]
    if placement:
        rows.insert(0, ("Layers", placement["summary"]))
    by = a["classified_by"]
    without = sum(by.get(k, 0) for k in ("triage", "dump", "level", "lexicon"))
    if without:
        rows.append(("Classified without the model",
                     f"{number(without)} ({100 * without / sum(by.values()):.0f}%)"))
    active = status["triage"]["active"]
    rows.append(("Triage classifier", "not trained yet" if active is None else
                 f"v{active['version']}, held-out micro-F1 {active['heldout_micro_f1']:.2f},"
                 f" {number(active['train_size'])} labels"))
    return _card("Model", head + _figures(rows))


def _inputs(status: dict[str, Any], runtime: Runtime) -> Safe:
    r = status["records"]
    rej = status["rejected"]
    rows = [("Log lines", number(r["by_kind"].get("log", 0))), ("Incident reports", number(r["by_kind"].get("incident", 0)))]
    files = runtime.source("files")
    if files is not None:
        rows.append(("Files followed", number(files.files_followed)))
    rows.append(("Rejected inputs", number(rej["total"])))
    rows += [(f"  {reason}", number(n)) for reason, n in sorted(rej["by_reason"].items(), key=lambda x: -x[1])[:4]]
    rows.append(("Running for", duration(runtime.uptime_s)))
    return _card("Inputs", _figures(rows))


def _problems(rows: list[dict[str, Any]]) -> Safe:
    if not rows:
        table = Safe('<p class="empty">No results with severity 3 or more.</p>')
    else:
        table = fmt(
            '<table class="results"><thead><tr><th>Received</th><th>Machine</th><th>Label</th><th>Sev</th>'
            "<th>What</th></tr></thead><tbody>{}</tbody></table>",
            join(
                fmt(
                    '<tr><td class="time" data-label="Received">{}<small>{}</small></td><td data-label="Machine">{}</td>'
                    '<td data-label="Label">{}</td><td data-label="Sev">{}</td><td class="text">{}</td></tr>',
                    clock(row["received_at"]), ago(row["received_at"], time.time()), row["machine"] or "—", label_badge(row["label"], row["corrected"]),
                    severity_chip(row["severity"]), record_link(row["record_id"], row["summary"] or row["text"]),
                )
                for row in rows
            ),
        )
    more = fmt('<a class="more" href="{}">All results with severity 3 or more →</a>', url("/results", severity=3))
    return fmt('<section class="card wide"><h2>Recent problems</h2>{}{}</section>', table, more)
