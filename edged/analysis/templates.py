"""Log templates: lines whose messages differ only in their variable parts share a template.

Only a line's message is mined (its header was split off by edged.logformats), and a template
belongs to one (level, component): an INFO line never shares a template with an ERROR line.

The miner is Drain's idea (He et al., ICWS 2017) kept small and explicit: messages are grouped by
level, component, token count and first word; within a group a message joins the template whose
constant words it matches best, if it matches at least ``sim_th`` of them; the positions where they
differ become ``<*>``. Tokens holding a digit are variable from the start (counts, ids, addresses,
times). A template's text only ever generalises; its id stays. The cache of answers is keyed by the
text (see edged.analysis.pipeline), so a generalised template is answered afresh.

The state (every template) is saved in the same transaction as the results that refer to its ids
(``state_if_changed`` gives the bytes to save), so after a crash a template id never means another
template.
"""

from __future__ import annotations

import json
import logging
import re
import time
import zlib
from dataclasses import dataclass

import sqlite_utils

log = logging.getLogger(__name__)

STATE_NAME = "templates"  # the miner_state row (the earlier drain3 state, "drain", is not read)
WILD = "<*>"
DEFAULT_SIM_TH = 0.5

# A token is cut at these characters; a piece holding a digit is a variable part (uid=0 -> uid=<*>).
_PIECES = re.compile(r"([\s,;:=()\[\]{}<>\"'|]+)")
_DIGIT = re.compile(r"\d")
_HEXLIKE = re.compile(r"^(?:0x)?[0-9a-fA-F]{8,}$")
_WITH_UNIT = re.compile(r"^[-+]?\d+(?:\.\d+)?([A-Za-z%]{1,3})$")  # 91C, 3000rpm, 2.5s: the unit stays


def _mask_piece(piece: str) -> str:
    if not (_DIGIT.search(piece) or _HEXLIKE.match(piece)):
        return piece
    unit = _WITH_UNIT.match(piece)
    return WILD + unit.group(1) if unit else WILD


def mask_token(token: str) -> str:
    if token == WILD or not (_DIGIT.search(token) or _HEXLIKE.match(token)):
        return token
    parts = _PIECES.split(token)
    return "".join(p if i % 2 else _mask_piece(p) for i, p in enumerate(parts))


def _params(raw: str, template_token: str) -> list[str]:
    """The values a line's token holds in its template token's ``<*>`` places (the whole token if unsure)."""
    if template_token == WILD:
        return [raw]
    pattern = "(.*?)".join(re.escape(p) for p in template_token.split(WILD))
    m = re.fullmatch(pattern, raw)
    return list(m.groups()) if m else [raw]


@dataclass
class Mined:
    template_id: int
    template: str
    params: list[str]
    changed: bool  # a new template, or an existing one generalised
    generalised: bool = False  # an existing template's text changed to take this line
    level: str | None = None
    component: str | None = None


class _Template:
    __slots__ = ("id", "tokens", "consts")

    def __init__(self, tid: int, tokens: list[str]) -> None:
        self.id = tid
        self.tokens = tokens
        self.consts = sum(1 for t in tokens if t != WILD)

    def score(self, tokens: list[str]) -> float:
        """Share of this template's constant tokens the message has in the same places."""
        if not self.consts:
            return 1.0
        same = sum(1 for a, b in zip(self.tokens, tokens) if a != WILD and a == b)
        return same / self.consts


class TemplateStore:
    def __init__(self, state: bytes | None = None, *, sim_th: float = DEFAULT_SIM_TH, next_id: int = 1) -> None:
        self.sim_th = sim_th
        self._groups: dict[tuple, list[_Template]] = {}
        self._keys: dict[int, tuple[str | None, str | None]] = {}
        self._next_id = next_id
        self._dirty = False
        if state:
            self._restore(state)

    @classmethod
    def load(cls, db: sqlite_utils.Database, *, sim_th: float = DEFAULT_SIM_TH) -> "TemplateStore":
        row = db.execute("SELECT state FROM miner_state WHERE name = ?", (STATE_NAME,)).fetchone()
        # Ids continue after every id already in use, also those of an earlier miner's templates.
        top = db.execute("SELECT max(template_id) FROM templates").fetchone()[0] or 0
        store = cls(row[0] if row else None, sim_th=sim_th, next_id=top + 1)
        if row:
            log.info("restored %d log templates", store.count)
        return store

    @property
    def count(self) -> int:
        return len(self._keys)

    def mine(self, message: str, level: str | None = None, component: str | None = None) -> Mined:
        raw = message.split()
        tokens = [mask_token(t) for t in raw]
        first = tokens[0] if tokens and WILD not in tokens[0] else WILD
        group_key = (level, component, len(tokens), first)
        group = self._groups.setdefault(group_key, [])
        best, best_score = None, -1.0
        for t in group:
            s = t.score(tokens)
            if s > best_score or (s == best_score and best is not None and t.consts > best.consts):
                best, best_score = t, s
        changed = generalised = False
        if best is None or best_score < self.sim_th:
            best = _Template(self._next_id, tokens)
            self._next_id += 1
            group.append(best)
            self._keys[best.id] = (level, component)
            changed = True
        else:
            merged = [a if a == b else WILD for a, b in zip(best.tokens, tokens)]
            if merged != best.tokens:
                best.tokens = merged
                best.consts = sum(1 for t in merged if t != WILD)
                changed = generalised = True
        self._dirty |= changed
        params = [p for r, t in zip(raw, best.tokens) if WILD in t for p in _params(r, t)]
        return Mined(best.id, " ".join(best.tokens), params, changed, generalised, level, component)

    def state_if_changed(self) -> bytes | None:
        """The serialised state when templates changed since the last call, else None."""
        if not self._dirty:
            return None
        self._dirty = False
        clusters = [
            [t.id, *self._keys[t.id], t.tokens] for group in self._groups.values() for t in group
        ]
        body = {"version": 1, "next_id": self._next_id, "sim_th": self.sim_th, "templates": clusters}
        return zlib.compress(json.dumps(body, separators=(",", ":")).encode("utf-8", "surrogatepass"))

    def _restore(self, state: bytes) -> None:
        body = json.loads(zlib.decompress(state).decode("utf-8", "surrogatepass"))
        for tid, level, component, tokens in body["templates"]:
            first = tokens[0] if tokens and WILD not in tokens[0] else WILD
            self._groups.setdefault((level, component, len(tokens), first), []).append(_Template(tid, tokens))
            self._keys[tid] = (level, component)
        self._next_id = max(self._next_id, body["next_id"])

    @staticmethod
    def save(db: sqlite_utils.Database, state: bytes) -> None:
        db.execute(
            "INSERT OR REPLACE INTO miner_state (name, state, saved_at) VALUES (?, ?, ?)",
            (STATE_NAME, state, time.time()),
        )
