"""HTML building with escaping by default.

Every dynamic value goes through ``fmt`` (or ``esc``), which HTML-escapes it unless it is already
``Safe`` (markup this package built itself). Log text, machine names, labels and errors come from
machines on the plant network and are attacker-controlled: never concatenate them into markup.
"""

from __future__ import annotations

import html
import time
from typing import Iterable
from urllib.parse import quote, urlencode


class Safe(str):
    """Markup that is already escaped (built by ``fmt``/``join``); never wrap outside input in it."""

    __slots__ = ()

    # Concatenation keeps the result safe by escaping the other side, never by trusting it.
    def __add__(self, other: object) -> "Safe":
        return Safe(str.__add__(self, esc(other)))

    def __radd__(self, other: object) -> "Safe":
        return Safe(str.__add__(esc(other), self))


def esc(value: object) -> Safe:
    if isinstance(value, Safe):
        return value
    return Safe(html.escape("" if value is None else str(value), quote=True))


def fmt(template: str, *args: object, **kwargs: object) -> Safe:
    """``template`` is a trusted literal with ``{}`` fields; every argument is escaped."""
    return Safe(template.format(*(esc(a) for a in args), **{k: esc(v) for k, v in kwargs.items()}))


def join(parts: Iterable[object], sep: str = "") -> Safe:
    return Safe(sep.join(esc(p) for p in parts))


def url(path: str, **params: object) -> str:
    """A local URL with a query string (None and "" left out); escape it with fmt like any value."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return path + ("?" + query if query else "")


def record_url(record_id: str) -> str:
    return "/records/" + quote(record_id, safe="")


def when(ts: float | None) -> str:
    """Local time of the box, to the second."""
    if ts is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def clock(ts: float | None, now: float | None = None) -> str:
    """HH:MM:SS for today, else the date and time without seconds."""
    if ts is None:
        return "—"
    t, today = time.localtime(ts), time.localtime(now or time.time())
    if t[:3] == today[:3]:
        return time.strftime("%H:%M:%S", t)
    return time.strftime("%Y-%m-%d %H:%M", t)


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "never"
    return duration((now or time.time()) - ts) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def number(n: int | float | None) -> str:
    if n is None:
        return "—"
    return f"{n:,}".replace(",", "\u202f") if isinstance(n, int) else f"{n:,.1f}".replace(",", "\u202f")


def size(n: int | None) -> str:
    if n is None:
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def per_second(rate: float | None) -> str:
    if rate is None:
        return "—"
    if rate < 1:  # a trickle reads better per minute
        return f"{rate * 60:.1f}/min"
    return f"{rate:,.1f}/s"
