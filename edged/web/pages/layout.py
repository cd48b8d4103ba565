"""The frame of every page (header, navigation, footer) and the small pieces pages share."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from edged.web.html import Safe, fmt, join, number, record_url, when

# Labels with a colour of their own; any other configured label gets a neutral one.
LABEL_CLASSES = {"normal": "normal", "warning": "warning", "fault": "fault", "safety": "safety", "security": "security"}


@dataclass
class PageContext:
    node: str
    version: str
    logged_in: bool
    csrf: str | None
    refresh_s: float = 0
    current: str = ""  # the path, for the active navigation entry


NAV = (("/", "Overview"), ("/results", "Results"), ("/parked", "Parked"), ("/submit", "Report incident"))


def layout(ctx: PageContext, title: str, body: Safe, *, refresh_s: float = 0) -> Safe:
    nav = join(
        fmt('<a href="{}"{}>{}</a>', path, Safe(' aria-current="page"') if _active(ctx.current, path) else "", name)
        for path, name in NAV
    )
    if ctx.logged_in:
        who = fmt(
            '<form method="post" action="/logout" class="inline">{}<button class="link" type="submit">Log out</button></form>',
            csrf_field(ctx),
        )
    else:
        who = fmt('<a href="/login?next={}">Log in</a>', ctx.current or "/")
    refresh = int(refresh_s) if refresh_s and refresh_s > 0 else 0
    noscript = fmt('<noscript><meta http-equiv="refresh" content="{}"></noscript>', refresh) if refresh else ""
    return fmt(
        """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · edged {node}</title>
<link rel="stylesheet" href="/static/style.css?v={version}">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<script src="/static/app.js?v={version}" defer></script>
{noscript}
</head>
<body data-refresh="{refresh}">
<header class="top">
<a class="brand" href="/"><span class="logo">edged</span><span class="node">{node}</span></a>
<nav>{nav}</nav>
<div class="who">{who}</div>
</header>
<main id="live">
{body}
</main>
<footer><span>edged {version}</span><span id="updated" data-ts="">page from {now}</span><span id="conn" hidden>connection to the box lost: showing old figures</span></footer>
</body>
</html>
""",
        title=title, node=ctx.node, version=ctx.version, noscript=noscript, refresh=refresh, nav=nav, who=who,
        body=body, now=when(time.time()),
    )


def _active(current: str, path: str) -> bool:
    return current == path if path == "/" else current.startswith(path)


def csrf_field(ctx: PageContext) -> Safe:
    return fmt('<input type="hidden" name="csrf" value="{}">', ctx.csrf or "")


def label_badge(label: str | None, corrected: bool = False) -> Safe:
    if label is None:
        return Safe('<span class="badge">—</span>')
    cls = LABEL_CLASSES.get(label, "other")
    mark = Safe(' <span class="corrected" title="corrected by a person">✎</span>') if corrected else ""
    return fmt('<span class="badge lbl-{}">{}{}</span>', cls, label, mark)


def severity_chip(severity: int | None) -> Safe:
    if severity is None:
        return Safe('<span class="sev">—</span>')
    level = max(0, min(int(severity), 5))
    return fmt('<span class="sev sev-{}" title="severity {} of 5">{}</span>', level, level, level)


def record_link(record_id: str, text: str | None = None) -> Safe:
    return fmt('<a href="{}">{}</a>', record_url(record_id), text if text is not None else record_id)


def kv_table(rows: list[tuple[str, Any]]) -> Safe:
    return fmt(
        '<table class="kv">{}</table>',
        join(fmt("<tr><th>{}</th><td>{}</td></tr>", k, v) for k, v in rows),
    )


def stat(label: str, value: Any, cls: str = "") -> Safe:
    shown = number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    return fmt('<div class="stat {}"><span class="value">{}</span><span class="label">{}</span></div>', cls, shown, label)


def message_page(ctx: PageContext, title: str, message: str, *, detail: Safe | str = "") -> Safe:
    body = fmt('<section class="card narrow"><h1>{}</h1><p>{}</p>{}</section>', title, message, detail)
    return layout(ctx, title, body)
