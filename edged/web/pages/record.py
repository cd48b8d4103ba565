"""One record: its raw text, flags, template, the model's outputs, timings, delivery, label corrections."""

from __future__ import annotations

import json
from typing import Any

from edged.web.html import Safe, ago, duration, fmt, join, number, record_url, when
from edged.web.pages.layout import PageContext, csrf_field, kv_table, label_badge, layout, severity_chip

PENDING_REFRESH_S = 3  # a record still waiting for analysis is shown again this often


def render(ctx: PageContext, rec: dict[str, Any], labels: list[str], *, notice: str | None = None,
           error: str | None = None) -> Safe:
    waiting = rec["status"] in ("pending", "leased")
    what = "Incident report" if rec["kind"] == "incident" else "Log line"
    title = f"{what} from {rec['machine']}" if rec["machine"] else what
    parts = [fmt('<p class="crumbs"><a href="/results">Results</a> › record</p><h1 class="wrap">{}</h1>'
                 '<p class="subtitle">received {} · <span class="mono wrap">{}</span></p>',
                 title, when(rec["received_at"]), rec["record_id"])]
    if notice:
        parts.append(fmt('<p class="notice" role="status">{}</p>', notice))
    if error:
        parts.append(fmt('<p class="error" role="alert">{}</p>', error))
    if waiting:
        parts.append(fmt('<p class="notice pending" role="status">Waiting for analysis ({}). This page updates by itself.</p>',
                         "being analyzed now" if rec["status"] == "leased" else "queued"))
    parts.append(fmt('<section class="card wide"><h2>Text</h2><pre class="raw" id="record-text">{}</pre></section>',
                     rec["text"]))
    result = rec["result"]
    if result is not None and (result["summary"] or _shown_fields(result)):
        parts.append(_outputs_card(result))
    parts.append(Safe('<div class="grid two">'))
    parts.append(_result_card(rec))
    parts.append(_record_card(rec))
    parts.append(Safe("</div>"))
    parts.append(_delivery_card(rec["outbox"]))
    if result is not None:
        parts.append(_correction_card(ctx, rec, labels))
    return layout(ctx, "Record", join(parts), refresh_s=PENDING_REFRESH_S if waiting else 0)


def _record_card(rec: dict[str, Any]) -> Safe:
    status_cls = {"done": "ok", "parked": "bad"}.get(rec["status"], "warn")
    rows = [
        ("Status", fmt('<span class="state {}">{}</span>', status_cls, rec["status"])),
        ("Kind", rec["kind"]),
        ("Machine", rec["machine"] or "—"),
        ("Source", rec["source"]),
        ("Origin", rec["origin"] or "—"),
        ("Received", fmt("{} <span class=\"muted\">({})</span>", when(rec["received_at"]), ago(rec["received_at"]))),
        ("Flags", join((fmt('<span class="flag">{}</span>', f) for f in rec["flags"]), " ") if rec["flags"] else "none"),
        ("Attempts", number(rec["attempts"])),
    ]
    if rec["error"]:
        rows.append(("Error", fmt('<span class="error-text">{}</span>', rec["error"])))
    return fmt('<section class="card"><h2>Record</h2>{}</section>', kv_table(rows))


def _result_card(rec: dict[str, Any]) -> Safe:
    r = rec["result"]
    if r is None:
        return Safe('<section class="card"><h2>Analysis</h2><p class="empty">Not analyzed yet.</p></section>')
    corrected = bool(rec["corrections"])
    rows = [
        ("Label", label_badge(r["label"], corrected)
         + (fmt(' <span class="muted">model said {}</span>', r["model_label"]) if corrected else "")),
        ("Severity", severity_chip(r["severity"])),
        ("Confidence", ("—" if r["confidence"] is None else f"{r['confidence']:.2f}")
         + (" · needs review" if r["needs_review"] else "")),
        ("Template", fmt('<code class="wrap">{}</code>', r["template"]) if r["template"] else "—"),
        ("How", {"model": "model call", "template_cache": "reused from its template",
                 "exact_cache": "reused (same text seen before)"}.get(r["path"], r["path"])),
        ("Classified by", {"triage": f"triage classifier v{r['triage_version']} (no model call)",
                           "level": "the line's own level ([analysis] levels)",
                           "lexicon": "its words ([analysis] lexicon)",
                           "dump": "a line of a register or flag dump ([analysis] dump_lines)",
                           "slm": "language model", "upstream": "a bigger model upstream"}.get(
            r["classified_by"], "—")),
        ("Model", fmt('<span class="mono">{}</span> via {}', r["model"] or "—", r["backend"] or "—")),
        ("Model calls", number(r["model_calls"])),
        ("Analysis time", "—" if r["latency_ms"] is None else f"{r['latency_ms']:,.0f} ms"),
        ("Analyzed", when(r["analyzed_at"])),
        ("Waited", _waited(r["analyzed_at"], rec["received_at"])),
        ("Prompt version", r["prompt_version"] or "—"),
    ]
    return fmt('<section class="card" id="analysis"><h2>Analysis</h2>{}</section>', kv_table(rows))


def _outputs_card(r: dict[str, Any]) -> Safe:
    parts = []
    if r["summary"]:
        parts.append(fmt('<p class="summary-text">{}</p>', r["summary"]))
    fields = _shown_fields(r)
    if fields:
        sources = r.get("fields_source") or {}
        parts.append(fmt('<div id="fields">{}</div>', kv_table([
            (k, join([v if isinstance(v, str) else json.dumps(v), _source_tag(sources.get(k))], " "))
            for k, v in fields.items()
        ])))
    return fmt('<section class="card wide"><h2>Summary and fields</h2>{}</section>', join(parts))


# Where a field's value came from (results.fields_source), as a technician reads it.
FIELD_SOURCES = {
    "header": "read from the line's header",
    "record": "from the file name or MQTT topic",
    "pattern": "found by a documented pattern in the text",
    "model": "given by the language model (and found in the text)",
}


def _source_tag(source: str | None) -> Safe:
    if not source:
        return Safe("")
    return fmt('<span class="field-source {}" title="{}">{}</span>', f"from-{source}" if source in FIELD_SOURCES
               else "from-other", FIELD_SOURCES.get(source, source), source)


def _waited(analyzed_at: float | None, received_at: float) -> str:
    """From arrival to result: the backlog's delay plus the analysis."""
    if analyzed_at is None:
        return "—"
    seconds = max(analyzed_at - received_at, 0.0)
    return f"{seconds:.1f} s" if seconds < 60 else duration(seconds)


def _shown_fields(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (r["fields"] or {}).items() if v not in (None, "")}


def _delivery_card(outbox: list[dict[str, Any]]) -> Safe:
    if not outbox:
        body = Safe('<p class="empty">No upstream message (not analyzed yet, or delivered and since expired).</p>')
    else:
        body = fmt(
            '<table class="plain"><thead><tr><th>Result id</th><th>Topic</th><th>State</th><th>Tries</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            join(
                fmt(
                    '<tr><td class="mono">{}</td><td class="mono wrap">{}</td><td>{}</td><td class="num">{}</td></tr>',
                    o["result_id"], o["topic"],
                    fmt('<span class="state ok">delivered</span> {}', when(o["sent_at"])) if o["sent_at"]
                    else fmt('<span class="state warn">waiting</span> since {}', when(o["created_at"])),
                    o["attempts"],
                )
                for o in outbox
            ),
        )
    return fmt('<section class="card wide"><h2>Upstream delivery</h2>{}</section>', body)


def _correction_card(ctx: PageContext, rec: dict[str, Any], labels: list[str]) -> Safe:
    history = ""
    if rec["corrections"]:
        history = fmt(
            '<ul class="history">{}</ul>',
            join(
                fmt("<li>{} → {} by {} · {}{}</li>", c["old_label"] or "—", c["new_label"], c["corrected_by"],
                    when(c["corrected_at"]), fmt(" — <q>{}</q>", c["note"]) if c["note"] else "")
                for c in rec["corrections"]
            ),
        )
    if not ctx.logged_in:
        form = fmt('<p><a class="button" href="/login?next={}">Log in to correct the label</a></p>',
                   record_url(rec["record_id"]))
    else:
        current = rec["result"]["label"]
        options = join(
            fmt('<option value="{}"{}>{}</option>', l, Safe(" selected") if l == current else "", l) for l in labels
        )
        form = fmt(
            """<form method="post" action="{action}" class="stack" id="correct-form">{csrf}
<label><span>Correct label</span><select name="label">{options}</select></label>
<label><span>Your name</span><input type="text" name="by" maxlength="80" autocomplete="name"></label>
<label><span>Note</span><input type="text" name="note" maxlength="1000" placeholder="why (optional)"></label>
<div class="buttons"><button type="submit">Save correction</button></div>
</form>""",
            action=record_url(rec["record_id"]) + "/label", csrf=csrf_field(ctx), options=options,
        )
    return fmt('<section class="card wide"><h2>Label correction</h2><p class="lead">Corrections are kept for later'
               " learning; the model's own label stays on record.</p>{}{}</section>", form, history)
