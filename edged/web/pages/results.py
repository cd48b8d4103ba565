"""Recent results with filters (label, severity, machine, time) and text search; parked records."""

from __future__ import annotations

import time
from typing import Any

from edged.web.html import Safe, ago, clock, fmt, join, url, when
from edged.web.pages.layout import PageContext, label_badge, layout, record_link, severity_chip
from edged.web.queries import ResultFilter

SINCE_CHOICES = (("", "any time"), ("15m", "last 15 min"), ("1h", "last hour"), ("24h", "last 24 h"), ("7d", "last 7 days"))


def _option(value: str, text: str, selected: str | None) -> Safe:
    return fmt('<option value="{}"{}>{}</option>', value, Safe(" selected") if value == (selected or "") else "", text)


def filter_form(params: dict[str, str], labels: list[str]) -> Safe:
    label_options = join([_option("", "any label", params.get("label"))] + [_option(l, l, params.get("label")) for l in labels])
    sev_options = join(
        [_option("", "any severity", params.get("severity"))]
        + [_option(str(n), f"{n} or more", params.get("severity")) for n in range(1, 6)]
    )
    since = params.get("since", "")
    choices = list(SINCE_CHOICES) + ([(since, since)] if since and since not in dict(SINCE_CHOICES) else [])
    since_options = join(_option(v, t, since) for v, t in choices)
    review = Safe(" checked") if params.get("review") else ""
    return fmt(
        """<form class="filters" method="get" action="/results" data-autosubmit>
<label class="grow"><span>Search</span><input type="search" name="q" value="{q}" placeholder="text or summary"></label>
<label><span>Label</span><select name="label">{labels}</select></label>
<label><span>Severity</span><select name="severity">{sev}</select></label>
<label><span>Machine</span><input type="text" name="machine" value="{machine}" placeholder="any machine" size="12"></label>
<label><span>Received</span><select name="since">{since}</select></label>
<label class="check"><input type="checkbox" name="review" value="1"{review}> <span>needs review</span></label>
<div class="buttons"><button type="submit">Filter</button><a class="button secondary" href="/results">Clear</a></div>
</form>""",
        q=params.get("q", ""), labels=label_options, sev=sev_options, machine=params.get("machine", ""),
        since=since_options, review=review,
    )


def results_table(rows: list[dict[str, Any]], now: float | None = None) -> Safe:
    now = time.time() if now is None else now
    body = join(
        fmt(
            '<tr class="{}"><td class="time" data-label="Received" title="{}">{}<small>{}</small></td>'
            '<td data-label="Machine">{}</td><td data-label="Label">{}</td><td data-label="Sev">{}</td>'
            '<td class="text">{}{}</td><td class="num" data-label="Confidence">{}</td></tr>',
            "review" if row["needs_review"] else "", when(row["received_at"]), clock(row["received_at"], now),
            ago(row["received_at"], now),
            fmt('<a href="{}">{}</a>', url("/results", machine=row["machine"]), row["machine"]) if row["machine"] else "—",
            label_badge(row["label"], row["corrected"]), severity_chip(row["severity"]),
            record_link(row["record_id"], row["text"] + ("…" if row["text_chars"] > len(row["text"]) else "")),
            fmt('<div class="summary">{}</div>', row["summary"]) if row["summary"] else "",
            "—" if row["confidence"] is None else f"{row['confidence']:.2f}",
        )
        for row in rows
    )
    return fmt(
        '<table class="results"><thead><tr><th>Received</th><th>Machine</th><th>Label</th><th>Sev</th><th>Text</th>'
        '<th class="num">Conf.</th></tr></thead><tbody>{}</tbody></table>',
        body,
    )


def render(ctx: PageContext, params: dict[str, str], f: ResultFilter | None, rows: list[dict[str, Any]],
           labels: list[str], error: str | None = None) -> Safe:
    parts = [fmt("<h1>Results</h1>"), filter_form(params, labels)]
    if error:
        parts.append(fmt('<p class="error" role="alert">{}</p>', error))
    elif not rows:
        parts.append(Safe('<p class="empty">No results match these filters.</p>'))
    else:
        parts.append(fmt('<section class="card wide flush">{}</section>', results_table(rows)))
        if f is not None and len(rows) == f.limit:
            older = dict(params, before=str(rows[-1]["id"]))
            parts.append(fmt('<p class="pager"><a class="button secondary" href="{}">Older results →</a></p>',
                             url("/results", **older)))
    return layout(ctx, "Results", join(parts))


def render_parked(ctx: PageContext, rows: list[dict[str, Any]]) -> Safe:
    if not rows:
        content = Safe('<p class="empty">No parked records: everything that came in could be analyzed.</p>')
    else:
        content = fmt(
            '<section class="card wide flush"><table class="results"><thead><tr><th>Received</th><th>Machine</th>'
            "<th>Tries</th><th>Error</th><th>Text</th></tr></thead><tbody>{}</tbody></table></section>",
            join(
                fmt(
                    '<tr><td class="time" data-label="Received" title="{}">{}<small>{}</small></td><td data-label="Machine">{}</td>'
                    '<td class="num" data-label="Tries">{}</td><td class="error-text">{}</td><td class="text">{}</td></tr>',
                    when(r["received_at"]), clock(r["received_at"]), ago(r["received_at"]), r["machine"] or "—", r["attempts"],
                    r["error"] or "—", record_link(r["record_id"], r["text"]),
                )
                for r in rows
            ),
        )
    intro = Safe(
        '<p class="lead">Records the model failed on too many times ([analysis] max_attempts). They are kept with'
        " their error and not retried.</p>"
    )
    return layout(ctx, "Parked records", fmt("<h1>Parked records</h1>{}{}", intro, content))
