"""Choosing each stream's header format and splitting its lines.

A stream is one source: a log file (``file:PATH``) or an MQTT topic (``mqtt:TOPIC``). Its format is
either named in the config (a format name or a regex with named groups, per glob or topic filter) or
``auto``: the format that parses the most of the stream's first ``DETECT_LINES`` lines, preferring
the more specific formats (earlier in ``FORMATS``) among those that parse nearly as many. A line the
chosen format does not parse is mined whole, and counted (``Parsed.unparsed``). Detection's counts are
saved with the template state (``HeaderParser.state_if_changed``/``restore``), so a restart goes on
with the format it chose instead of detecting it again from the next lines.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field

from edged.logformats.formats import BY_NAME, FORMATS, LogFormat, compile_format

log = logging.getLogger(__name__)

AUTO = "auto"
DETECT_LINES = 32  # lines an auto stream looks at before its choice is final
NEARLY = 0.9  # a more specific format wins while it parses at least this share of the best count


def resolve_spec(spec: str, name: str = "custom") -> LogFormat | None:
    """``auto`` -> None; a format name -> that format; anything else is a regex. ValueError when bad."""
    if spec == AUTO:
        return None
    if spec in BY_NAME:
        return BY_NAME[spec]
    if "(?P<" not in spec:
        raise ValueError(f"{spec!r} is neither 'auto', a format name ({', '.join(BY_NAME)}) nor a regex with named groups")
    return compile_format(name, spec)


@dataclass
class Parsed:
    header: dict[str, str] | None  # the header fields and "format"; None when no format parsed the line
    message: str | None  # the line after its header; None when no header was parsed

    @property
    def unparsed(self) -> bool:
        return self.header is None


class StreamFormat:
    """One stream's format: fixed, or auto-detected from its first lines."""

    def __init__(self, name: str, fixed: LogFormat | None = None) -> None:
        self.name = name
        self.fixed = fixed
        self._hits = [0] * len(FORMATS)
        self._seen = 0
        self._choice: LogFormat | None = fixed
        self.changed = False  # detection counts moved since they were last saved

    @property
    def settled(self) -> bool:
        return self.fixed is not None or self._seen >= DETECT_LINES

    @property
    def choice(self) -> LogFormat | None:
        return self._choice

    def parse(self, line: str) -> Parsed:
        if not self.settled:
            self._observe(line)
        fmt = self._choice
        fields = fmt.parse(line) if fmt is not None else None
        if fields is None:
            return Parsed(None, None)
        message = fields.pop("message")
        fields["format"] = fmt.name
        return Parsed(fields, message)

    def _observe(self, line: str) -> None:
        for i, fmt in enumerate(FORMATS):
            if fmt.parse(line) is not None:
                self._hits[i] += 1
        self._seen += 1
        self.changed = True
        best = self._choose()
        if self._seen == DETECT_LINES:
            chosen = self._choice.name if self._choice else "none (lines are mined whole)"
            log.info("%s: header format %s (parses %d of its first %d lines)", self.name, chosen, best, self._seen)

    def _choose(self) -> int:
        best = max(self._hits)
        if best == 0:
            self._choice = None
        else:
            self._choice = next(f for f, h in zip(FORMATS, self._hits) if h >= NEARLY * best)
        return best

    def state(self) -> dict:
        """What detection has seen so far (by format name, so a later edged with more formats can read it)."""
        return {"seen": self._seen, "hits": {f.name: h for f, h in zip(FORMATS, self._hits) if h}}

    def restore(self, state: dict) -> None:
        """Continue detection where a saved ``state`` left it; a format named in the config wins."""
        if self.fixed is not None:
            return
        hits = state.get("hits") or {}
        self._hits = [int(hits.get(f.name, 0)) for f in FORMATS]
        self._seen = min(int(state.get("seen", 0)), DETECT_LINES)
        self._choose()
        if self.settled:
            chosen = self._choice.name if self._choice else "none (lines are mined whole)"
            log.info("%s: header format %s (as detected before the restart)", self.name, chosen)


def mqtt_filter_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter semantics: ``+`` one level, ``#`` the rest (standard library only)."""
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part != "+" and part != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


@dataclass
class HeaderParser:
    """Per-stream formats for every source. Rules are checked in order; the first that matches decides.

    ``file_rules``: (glob, spec) for log files; ``topic_rules``: (topic filter, spec) for MQTT topics;
    ``default``: the spec of streams no rule names (``auto``, a format name or a regex).
    """

    default: str = AUTO
    file_rules: list[tuple[str, str]] = field(default_factory=list)
    topic_rules: list[tuple[str, str]] = field(default_factory=list)
    _streams: dict[str, StreamFormat] = field(default_factory=dict)
    _saved: dict[str, dict] = field(default_factory=dict)  # detection states restored, by source

    def stream(self, source: str) -> StreamFormat:
        s = self._streams.get(source)
        if s is None:
            s = self._streams[source] = StreamFormat(source, resolve_spec(self._spec_for(source)))
            if source in self._saved:
                s.restore(self._saved[source])
        return s

    def restore(self, state: dict[str, dict]) -> None:
        """Auto-detection states saved by ``state_if_changed`` (applied as each stream is first seen)."""
        self._saved.update({k: v for k, v in state.items() if isinstance(v, dict)})

    def state_if_changed(self) -> dict[str, dict] | None:
        """Every auto-detected stream's detection state, when one moved since the last call; else None."""
        moved = [s for s in self._streams.values() if s.changed]
        if not moved:
            return None
        for s in moved:
            s.changed = False
            self._saved[s.name] = s.state()
        return dict(self._saved)

    def parse(self, source: str, line: str) -> Parsed:
        return self.stream(source).parse(line)

    def _spec_for(self, source: str) -> str:
        kind, _, name = source.partition(":")
        if kind == "file":
            for glob, spec in self.file_rules:
                if fnmatch.fnmatch(name, glob) or fnmatch.fnmatch(name.rsplit("/", 1)[-1], glob):
                    return spec
        elif kind == "mqtt":
            for topic_filter, spec in self.topic_rules:
                if mqtt_filter_matches(topic_filter, name):
                    return spec
        return self.default
