"""What a record says about its own label before any model looks at it: its level and its words.

- The level its source wrote (a parsed header's ``level``; else, in the text itself, a JSON
  object's ``level``/``severity``/journald ``PRIORITY``, or a syslog ``<PRI>`` prefix) maps to a
  label and a severity through ``[analysis] levels``. Common spellings are read as the table's names:
  WARNING -> WARN, ERR -> ERROR, CRITICAL -> CRIT, SEVERE -> ERROR (java.util.logging), syslog and
  journald numbers 0-7, pino/bunyan numbers 10-60, and Android's single letters (E, W, I, D, V, F,
  A) -- those only ever from a level field, never from free text.
- ``[analysis] lexicon`` words (whole words, any case, a plural s allowed) mark a label, e.g. an
  e-stop marks safety and a password security, whatever the level says.
- A line of a register or flag dump (``edged.analysis.dump_lines``: ``instruction address:
  0x00004ed8``, ``machine check enable......0``) describes a crash that another line reports; with
  ``[analysis] dump_lines`` on (the default) and ``normal`` in the taxonomy, it is ``normal``,
  severity 0, whatever its level says. A line with a lexicon word is never a dump line.

``proposals`` lists the labels the level and the words give; ``edged.analysis.routing`` decides
what agreement or conflict among them means, and that a dump line is normal before either.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from edged.analysis.dump_lines import DUMP_LABEL, is_dump_line
from edged.config.settings import AnalysisSettings, parse_level_rule

SYSLOG = ("EMERG", "ALERT", "CRIT", "ERROR", "WARN", "NOTICE", "INFO", "DEBUG")  # RFC 5424 severities 0-7
PINO = {10: "DEBUG", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL"}
ALIASES = {
    "WARNING": "WARN", "ERR": "ERROR", "CRITICAL": "CRIT", "EMERGENCY": "EMERG", "PANIC": "EMERG",
    "SEVERE": "ERROR", "INFORMATION": "INFO", "INFORMATIONAL": "INFO", "NOTE": "NOTICE", "TRACE": "DEBUG",
    "VERBOSE": "DEBUG", "FINE": "DEBUG", "FINER": "DEBUG", "FINEST": "DEBUG", "CONFIG": "INFO",
    # Android logcat's priority letters (only ever read from a level field)
    "E": "ERROR", "W": "WARN", "I": "INFO", "D": "DEBUG", "V": "DEBUG", "F": "FATAL", "A": "FATAL",
}
JSON_LEVEL_KEYS = ("level", "severity", "PRIORITY", "priority", "lvl", "loglevel")
_PRI = re.compile(r"<(\d{1,3})>")
MAX_JSON_CHARS = 65_536  # a bigger text is not parsed for its level


def level_in_text(text: str) -> str | int | None:
    """The level a structured line carries in itself: a JSON object's level field or a syslog <PRI>."""
    head = text.lstrip()
    if head.startswith("{") and len(head) <= MAX_JSON_CHARS:
        try:
            doc = json.loads(head)
        except ValueError:
            return None
        if isinstance(doc, dict):
            for key in JSON_LEVEL_KEYS:
                value = doc.get(key)
                if isinstance(value, (str, int)) and not isinstance(value, bool):
                    return value
        return None
    match = _PRI.match(head)
    if match and int(match.group(1)) <= 191:
        return int(match.group(1)) % 8
    return None


def canonical_level(raw: str | int | None) -> str | None:
    """A level as the table's name for it (None: not a level)."""
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, int):
        if 0 <= raw <= 7:
            return SYSLOG[raw]
        return PINO.get(raw)
    name = raw.strip().upper()
    return ALIASES.get(name, name) or None


@dataclass(frozen=True)
class Seen:
    """The evidence of one record."""

    level: str | None = None  # the level as written
    level_label: str | None = None
    level_severity: int | None = None
    words: dict[str, str] = field(default_factory=dict)  # label -> the first lexicon word found for it
    dump: bool = False  # a line of a register or flag dump ([analysis] dump_lines on)

    @property
    def proposals(self) -> list[str]:
        """The distinct labels the evidence gives, the level's first."""
        out = [self.level_label] if self.level_label else []
        return out + [label for label in self.words if label not in out]


class Evidence:
    """The level table and the lexicon of one taxonomy. Entries naming a label outside ``taxonomy``
    are left out (settings refuse such entries unless they are the built-in defaults)."""

    def __init__(self, settings: AnalysisSettings, taxonomy: list[str] | None = None) -> None:
        self.taxonomy = list(taxonomy if taxonomy is not None else settings.labels)
        labels = set(self.taxonomy)
        self.levels: dict[str, tuple[str, int]] = {}
        for level, rule in settings.levels.items():
            label, severity = parse_level_rule(rule)
            if label in labels:
                self.levels[level.upper()] = (label, severity)
        self.dump_lines = settings.dump_lines and DUMP_LABEL in labels
        self._words: list[tuple[str, re.Pattern[str]]] = []
        for label, words in settings.lexicon.items():
            if label in labels and words:
                alternatives = "|".join(re.escape(w.strip()).replace(r"\ ", r"[\s_-]+") for w in words)
                self._words.append((label, re.compile(rf"(?<![\w-])(?:{alternatives})(?:e?s)?(?![\w-])", re.I)))

    def of(self, text: str, level: str | int | None = None) -> Seen:
        """The evidence of a record: ``level`` as its header gave it (else looked for in ``text``)."""
        raw = level if level is not None and str(level).strip() else level_in_text(text)
        label = severity = None
        if raw is not None:
            rule = self.levels.get(str(raw).strip().upper()) or self.levels.get(canonical_level(raw) or "")
            if rule is not None:
                label, severity = rule
        words = {}
        for word_label, pattern in self._words:
            match = pattern.search(text)
            if match:
                words[word_label] = match.group(0)
        dump = not words and self.dump_lines and is_dump_line(text)
        return Seen(None if raw is None else str(raw), label, severity, words, dump)

    def is_dump_line(self, text: str) -> bool:
        """Whether routing labels this message as a dump line (the same answer as ``of(text).dump``)."""
        return self.dump_lines and is_dump_line(text) and not any(p.search(text) for _, p in self._words)
