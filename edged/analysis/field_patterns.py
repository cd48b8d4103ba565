"""The documented patterns that read fields from a record's text without a model.

Each field has a list of regular expressions, tried in order; the first match in the text wins.
A pattern's value is its named group of the field's name (``value``, ``unit``, ``code``...), else
its whole match. ``[analysis.patterns]`` replaces the list of a field (an empty list switches the
field's patterns off); fields without patterns are left to the header and the model.

Default shapes:

- ``value`` + ``unit``: a number directly followed by a unit, with or without a space: temperatures
  (``91C``, ``91.5 °C``, ``-5 degF``), speeds (``3000rpm``, ``3000 RPM``), pressures (``4.2 bar``,
  ``60 psi``, ``350 kPa``), percentages (``18%``), electrical (``12 A``, ``450 mA``, ``230 V``,
  ``4 kW``, ``50 Hz``), durations (``32.1 s``, ``120 ms``, ``5 min``, ``2 h``, ``10 seconds``),
  volumes and flows (``2 L``, ``12 L/min``), torque (``40 Nm``). A number glued to an identifier
  (``EX-12``, ``R23``) is not a value.
- ``error_code``: ``E-1234``, ``E1234``, ``ERR-42``, ``ALM 203``, ``ALARM 7``, ``F0021``, ``FLT-3``;
  ``code=0x1F``, ``error code 12``, ``errno 5``, ``exit code 2``, ``rc=-1``; ``SQLSTATE[08006]``.
- ``level``: a severity word in capitals: ``EMERG ALERT CRIT CRITICAL FATAL SEVERE ERROR ERR WARN
  WARNING NOTICE INFO DEBUG TRACE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = r"(?<![\w.\-/:])(?P<value>[-+]?\d+(?:\.\d+)?)"
_UNITS = (
    r"°\s?[CF]|deg\s?[CF]|[CF]"
    r"|rpm|RPM|r/min"
    r"|mbar|bar|psi|kPa|MPa|Pa"
    r"|%"
    r"|mA|A|kV|mV|V|kW|W|kHz|Hz"
    r"|ms|seconds?|secs?|s|minutes?|mins?|min|hours?|hrs?|h"
    r"|L/min|l/min|mL|ml|L|l"
    r"|Nm"
)
# A unit the model names must be one of these (the same set the value+unit pattern reads).
UNIT = re.compile(_UNITS)

DEFAULT_PATTERNS: dict[str, list[str]] = {
    "value": [_NUMBER + r"\s?(?P<unit>" + _UNITS + r")(?![A-Za-z0-9°:])"],
    "error_code": [
        r"(?<![\w-])(?:E|ERR|ALM|ALARM|AL|F|FLT|FAULT)-?\s?\d{2,6}(?![\w.])"
        r"|(?<![\w-])(?:ALM|ALARM|FAULT|ERR)\s\d{1,6}(?![\w.])",
        r"(?i)\b(?:error[ _]?code|err(?:or)?[ _]?no|errno|exit[ _]code|code|rc)\s*[=:#]?\s*(?P<code>0x[0-9A-Fa-f]+|-?\d+)\b",
        r"\bSQLSTATE\s*[\[=:]?\s*(?P<code>[0-9A-Z]{5})\b",
    ],
    "level": [r"\b(?:EMERG|ALERT|CRITICAL|CRIT|FATAL|SEVERE|ERROR|ERR|WARNING|WARN|NOTICE|INFO|DEBUG|TRACE)\b"],
}
# Fields a pattern match fills together: the unit comes with the value.
COMPANIONS = {"value": ("unit",)}


@dataclass(frozen=True)
class Match:
    values: dict[str, str]  # field -> text as it appears
    span: tuple[int, int]


class FieldPatterns:
    """Compiled patterns per field. Build once (config load checks that every regex compiles)."""

    def __init__(self, patterns: dict[str, list[str]] | None = None) -> None:
        merged = dict(DEFAULT_PATTERNS)
        merged.update(patterns or {})
        self.compiled = {name: [re.compile(p) for p in regexes] for name, regexes in merged.items()}

    def find(self, field: str, text: str) -> Match | None:
        for rx in self.compiled.get(field, ()):
            m = rx.search(text)
            if m is None:
                continue
            groups = {k: v for k, v in m.groupdict().items() if v is not None}
            values = {field: groups.get(field, groups.get("code", m.group(0)))}
            for companion in COMPANIONS.get(field, ()):
                if companion in groups:
                    values[companion] = groups[companion]
            return Match(values, m.span())
        return None


def canonical_unit(unit: str) -> str:
    """``°C``, ``deg C`` and ``C`` are all ``C``; ``RPM`` is ``rpm``; other units stay as written
    (so the unit still occurs in the text)."""
    u = unit.replace(" ", "")
    if u.startswith("°") or u.lower().startswith("deg"):
        return u[-1].upper()
    return "rpm" if u.lower() == "rpm" else u
