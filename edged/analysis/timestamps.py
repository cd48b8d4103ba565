"""Log timestamps as written by machines, normalised to ISO-8601 with an offset.

``normalize_time(raw, tz, received_at)`` reads the timestamp text of a log line's header (or one
found in its message) and returns ``YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM``, or None when the text is
not a time it knows. It never guesses: a time it cannot read is None, never "now".

Formats read (the text may be wrapped in [brackets] and end in a comma):

- epoch seconds (9-10 digits, optional fraction) and epoch milliseconds (13 digits): UTC
- ISO-8601 and its relatives: ``2015-10-18 18:01:47,978``, ``2026-11-27T10:00:01.5Z``,
  ``2016/09/28 04:30:30``, ``2005.11.09 12:01:01``, with an optional zone (``Z``, ``+02:00``, ``+0200``)
- IBM BlueGene: ``2005-06-03-15.42.50.675872``
- two-digit years: ``17/06/09 20:10:40`` (yy/mm/dd) and ``081109 203615`` (yymmdd HHMMSS)
- ctime / Apache: ``Sun Dec 04 04:47:44 2005``, ``Dec 04 04:47:44 2005``
- syslog without a year: ``Jun 14 15:16:01``; Android logcat without a year: ``03-17 16:13:38.811``

Stamps without a zone are in ``tz`` (``[logs] timezone``). Stamps without a year get the latest
year that does not put them in the future: the year of ``received_at`` (in ``tz``), or the one
before when that would be more than a day after ``received_at`` (a December line read in January).
Two-digit years are 2000-2068 for 00-68 and 1969-1999 for 69-99 (the POSIX rule).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
FUTURE_TOLERANCE = timedelta(days=1)  # clocks of machines and box differ; a stamp this far ahead is last year's

_FRAC = r"(?:[.,](?P<frac>\d{1,9}))?"
_ZONE = r"\s*(?P<zone>Z|UTC|GMT|[+-]\d{2}:?\d{2})?"
_HMS = r"(?P<H>\d{1,2}):(?P<M>\d{2}):(?P<S>\d{2})" + _FRAC
_MON = r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
_DOW = r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\s+)?"

# Whole-text formats, tried in order. Groups: y (4 digits) or yy (2), m or mon, d, H, M, S, frac, zone.
FORMATS = [
    re.compile(r"(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?:T|\s+)" + _HMS + _ZONE),
    re.compile(r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})-(?P<H>\d{2})\.(?P<M>\d{2})\.(?P<S>\d{2})" + _FRAC),
    re.compile(r"(?P<yy>\d{2})/(?P<m>\d{2})/(?P<d>\d{2})\s+" + _HMS + _ZONE),
    re.compile(r"(?P<yy>\d{2})(?P<m>\d{2})(?P<d>\d{2})\s+(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})"),
    re.compile(_DOW + _MON + r"\s+(?P<d>\d{1,2})\s+" + _HMS + r"\s+(?P<y>\d{4})" + _ZONE, re.I),
    re.compile(_DOW + r"(?P<d>\d{1,2})\s+" + _MON + r"\s+(?P<y>\d{4})\s+" + _HMS + _ZONE, re.I),
    re.compile(_DOW + _MON + r"\s+(?P<d>\d{1,2})\s+(?P<y>\d{4})\s+" + _HMS + _ZONE, re.I),
    re.compile(_DOW + _MON + r"\s+(?P<d>\d{1,2})\s+" + _HMS + _ZONE, re.I),  # syslog: no year
    re.compile(r"(?P<m>\d{2})-(?P<d>\d{2})\s+" + _HMS),  # logcat: no year
]
EPOCH = re.compile(r"(?P<s>\d{9,10})(?:\.(?P<f>\d{1,9}))?|(?P<ms>\d{13})")

# Timestamps searched inside free text (a message, an incident report) when the header gave none:
# only forms with a full date, so a bare "10:00" or a part number is never read as a time.
EMBEDDED = re.compile(
    r"(?<![\w.:/-])(?:"
    r"\d{4}-\d{2}-\d{2}(?:[T\s]+\d{1,2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:\s*(?:Z|[+-]\d{2}:?\d{2}))?)"
    r"|\d{4}-\d{2}-\d{2}-\d{2}\.\d{2}\.\d{2}(?:\.\d{1,9})?"
    r"|\d{4}/\d{2}/\d{2}\s+\d{1,2}:\d{2}:\d{2}"
    r"|(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+)?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{1,2}\s+"
    r"\d{1,2}:\d{2}:\d{2}\s+\d{4}"
    r")(?![\w:])"
)


class UnknownTimezone(ValueError):
    pass


@lru_cache(maxsize=16)
def zone(name: str) -> tzinfo:
    """``local`` (the box's zone), ``UTC``, or an IANA name such as ``Europe/Berlin``."""
    if name == "local":
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else timezone.utc
    if name.upper() in ("UTC", "Z"):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimezone(f"unknown time zone {name!r}: use local, UTC or an IANA name such as Europe/Berlin") from None


def _zone_of(text: str | None, default: tzinfo) -> tzinfo:
    if not text:
        return default
    if text.upper() in ("Z", "UTC", "GMT"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _iso(dt: datetime) -> str:
    return dt.isoformat()


def normalize_time(raw: str | None, tz: tzinfo, received_at: float) -> str | None:
    """ISO-8601 of ``raw`` (see the module docstring), or None when it is not a time edged can read."""
    if not raw:
        return None
    text = raw.strip().strip("[]()").strip().rstrip(",;").strip()
    m = EPOCH.fullmatch(text)
    if m:
        if m.group("ms"):
            seconds = int(m.group("ms")) / 1000
        else:
            seconds = int(m.group("s")) + (int(m.group("f")[:6].ljust(6, "0")) / 1e6 if m.group("f") else 0)
        return _iso(datetime.fromtimestamp(seconds, timezone.utc))
    for fmt in FORMATS:
        m = fmt.fullmatch(text)
        if m:
            return _from_parts(m.groupdict(), tz, received_at)
    return None


def _from_parts(g: dict[str, str | None], tz: tzinfo, received_at: float) -> str | None:
    month = MONTHS[g["mon"][:3].lower()] if g.get("mon") else int(g["m"])
    day, hour, minute, second = int(g["d"]), int(g["H"]), int(g["M"]), int(g["S"])
    micro = int(g["frac"][:6].ljust(6, "0")) if g.get("frac") else 0
    zone_ = _zone_of(g.get("zone"), tz)
    if g.get("y"):
        years = [int(g["y"])]
    elif g.get("yy"):
        yy = int(g["yy"])
        years = [2000 + yy if yy < 69 else 1900 + yy]
    else:
        now = datetime.fromtimestamp(received_at, zone_)
        years = [now.year - k for k in range(0, 5)]  # five back: a Feb 29 finds its leap year
    for year in years:
        try:
            dt = datetime(year, month, day, hour, minute, second, micro, tzinfo=zone_)
        except ValueError:
            continue
        if g.get("y") or g.get("yy"):
            return _iso(dt)
        if dt.timestamp() <= received_at + FUTURE_TOLERANCE.total_seconds():
            return _iso(dt)
    return None


def find_time(text: str, tz: tzinfo, received_at: float) -> tuple[str, str] | None:
    """The first full-date timestamp inside ``text``: (its raw text, ISO-8601), or None."""
    for m in EMBEDDED.finditer(text):
        iso = normalize_time(m.group(0), tz, received_at)
        if iso is not None:
            return m.group(0), iso
    return None
