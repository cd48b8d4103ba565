"""Fields read from a record's structure before any model is asked: the log header, then patterns.

Where each field comes from (``fields_source``):

- ``header``: the parsed header of a log line (``Claimed.header``): ``event_time`` from its time
  (normalised by edged.analysis.timestamps), ``machine`` from its host, ``component`` and ``level``.
- ``record``: ``machine`` from the file name or MQTT topic rule when the header has no host.
- ``pattern``: the documented patterns of edged.analysis.field_patterns in the message (``value`` +
  ``unit``, ``error_code``, ``level``), and ``event_time`` from a full-date timestamp in the text.
- ``model``: what the model filled, only for fields the above left empty, and only when the value
  occurs in the text (edged.analysis.grounding).

``event_time`` and ``level`` are never asked of the model: a time or severity word that is in the
text is found by the header or the patterns, and one that is not would be invented. A header time
that does not parse leaves ``event_time`` null; its raw text stays in the header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edged.analysis.field_patterns import FieldPatterns, canonical_unit
from edged.analysis.timestamps import find_time, normalize_time, zone

HEADER, RECORD, PATTERN, MODEL = "header", "record", "pattern", "model"
STRUCTURE_ONLY = ("event_time", "level")  # never asked of the model
HEADER_KEYS = {"event_time": "time", "machine": "host", "component": "component", "level": "level"}


@dataclass
class Structured:
    fields: dict[str, Any] = field(default_factory=dict)  # the fields structure filled (non-null only)
    sources: dict[str, str] = field(default_factory=dict)


def as_type(text: str, kind: str) -> Any:
    """A pattern's text as the field's JSON type; None when it is not one."""
    if kind == "string":
        return text
    try:
        number = float(text)
    except ValueError:
        return None
    if kind == "integer":
        return int(number) if number.is_integer() else None
    return int(number) if number.is_integer() and "." not in text else number


class FieldReader:
    """Reads the configured fields ([analysis] extract_fields) from structure."""

    def __init__(self, extract_fields: dict[str, str], patterns: dict[str, list[str]] | None = None,
                 timezone: str = "local") -> None:
        self.extract_fields = dict(extract_fields)
        self.patterns = FieldPatterns(patterns)
        self.tz = zone(timezone)

    def read(self, text: str, *, header: dict[str, str] | None = None, message: str | None = None,
             machine: str | None = None, received_at: float = 0.0) -> Structured:
        out = Structured()
        wanted = self.extract_fields
        body = message if message is not None else text

        def put(name: str, value: Any, source: str) -> None:
            if name in wanted and name not in out.fields and value not in (None, ""):
                out.fields[name] = value
                out.sources[name] = source

        header = header or {}
        for name, key in HEADER_KEYS.items():
            raw = header.get(key)
            if not raw:
                continue
            if name == "event_time":
                put(name, normalize_time(raw, self.tz, received_at), HEADER)
            else:
                put(name, raw, HEADER)
        if "machine" in wanted and machine:
            put("machine", machine, RECORD)
        if "event_time" in wanted and "event_time" not in out.fields and not header.get("time"):
            found = find_time(body, self.tz, received_at)
            if found is not None:
                put("event_time", found[1], PATTERN)
        for name, kind in wanted.items():
            if name in out.fields or name not in self.patterns.compiled:
                continue
            match = self.patterns.find(name, body)
            if match is None:
                continue
            companions = {k: v for k, v in match.values.items() if k != name}
            value = as_type(match.values[name], kind)
            if value is None:
                continue
            put(name, value, PATTERN)
            for other, raw in companions.items():
                if other == "unit":
                    raw = canonical_unit(raw)
                put(other, as_type(raw, wanted.get(other, "string")), PATTERN)
        return out

    def for_model(self, filled: dict[str, Any]) -> list[str]:
        """The fields left for the model: configured, not filled by structure, not structure-only."""
        return [n for n in self.extract_fields if n not in filled and n not in STRUCTURE_ONLY]
