"""Log templates: lines whose messages differ only in their variable parts share a template.

Only a line's message is mined (its header was split off by edged.logformats), and a template
belongs to one (level, component): an INFO line never shares a template with an ERROR line.

The miner is Drain's idea (He et al., ICWS 2017) kept small and explicit: messages are grouped by
level, component, token count and first word; within a group a message joins the template whose
constant words it matches best, if it matches at least ``sim_th`` of them; the positions where they
differ become ``<*>``. Tokens holding a digit are variable from the start (counts, ids, addresses,
times), except the family word of a numbered name (``eth<*>``: ``eth0`` and ``wlan0`` are different
words, as any two plain words are). A template's text only ever generalises; its id stays. It
generalises only where its words proved to be parameters: a digit-bearing token took a word's place,
a masked token widened, or enough siblings differed there; ``Mined.previous`` names the texts it
had, so the pipeline moves their cached answer to the new text (see edged.analysis.pipeline) and
deletes the entries of the texts no template has any more (``Mined.retired``).

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
DEFAULT_SIBLINGS = 4

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


_DATE_WORDS = frozenset(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec Mon Tue Wed Thu Fri Sat Sun".split()
)

# A word and a short number, alone or in brackets or before a colon, is a member of a numbered family
# (eth0, sda1, cpu12, "(wlan0)", "ttyS1:"): the number is a parameter, the family word is not, so
# "via interface alt0" and "via interface scip0" are two templates, as two different words would be.
# A longer number (node228, an id) is what tells such names apart, and the token stays variable whole.
_NUMBERED_NAME = re.compile(r"^([(\[{\"']*)([A-Za-z]+)(\d{1,2})([)\]}\"',:;.]*)$")
_FAMILY = re.compile(r"([A-Za-z]+)" + re.escape(WILD))  # the family word of a masked numbered name


def mask_token(token: str) -> str:
    if token in _DATE_WORDS:  # a date inside a message (the header's was split off)
        return WILD
    if token == WILD or not (_DIGIT.search(token) or _HEXLIKE.match(token)):
        return token
    named = _NUMBERED_NAME.match(token)
    if named and not _HEXLIKE.match(named.group(2) + named.group(3)):
        return named.group(1) + named.group(2) + WILD + named.group(4)
    parts = _PIECES.split(token)
    return "".join(p if i % 2 else _mask_piece(p) for i, p in enumerate(parts))


def _params(raw: str, template_token: str) -> list[str]:
    """The values a line's token holds in its template token's ``<*>`` places (the whole token if unsure).

    A numbered name's value is the whole name (``eth1`` of ``eth<*>``), which is what a field holds."""
    if template_token == WILD:
        return [raw]
    pieces = template_token.split(WILD)
    family = _FAMILY.fullmatch(template_token.strip("([{\"')]},:;."))
    if family and len(pieces) == 2:
        word = family.group(1)
        pattern = re.escape(pieces[0][: -len(word)]) + "(" + re.escape(word) + ".*?)" + re.escape(pieces[1])
    else:
        pattern = "(.*?)".join(re.escape(p) for p in pieces)
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
    # When generalised: the texts it had before (a merge: its siblings', earliest first). Their words
    # that became variable were shown to be parameters (a digit-bearing token took their place, or
    # enough siblings differed there), so an answer computed for one may serve the new text.
    previous: tuple[str, ...] = ()
    # Of ``previous``, the texts no template has any more: their cached answers will never be asked for.
    retired: tuple[str, ...] = ()


class _Template:
    __slots__ = ("id", "tokens")

    def __init__(self, tid: int, tokens: list[str]) -> None:
        self.id = tid
        self.tokens = tokens


def _fits(template: list[str], tokens: list[str]) -> int:
    """How many constant words a message shares with a template, or -1 when a constant word differs.

    Where either side holds a variable part (``<*>``, or a masked piece such as ``uid=<*>``) the two
    may differ; two different plain words may not: they may mean different events ("begin"/"end").
    """
    same = 0
    for a, b in zip(template, tokens):
        if a == b:
            same += WILD not in a
        elif a != WILD and b != WILD and not _fits_token(a, b):
            return -1
    return same


def _fits_token(a: str, b: str) -> bool:
    """Whether two different tokens can be the same place of one template: one must be an instance of
    the other (``uid=root`` of ``uid=<*>``, ``LOCAL(<*>),`` of ``<*>,``); ``retVal=<*>`` and
    ``phoneId=<*>``, or two plain words, are not. A numbered name and a plain word may (``test9`` in
    the place of ``webmaster``: names vary there, as any digit-bearing token shows); two numbered
    names of different families (``alt<*>``, ``scip<*>``) may not, as two plain words may not."""
    if _covers(a, b) or _covers(b, a):
        return True
    for named, other in ((a, b), (b, a)):
        if WILD not in other and _FAMILY.search(named) and not _FAMILY.search(other):
            return _covers(_FAMILY.sub(WILD, named), other)
    return False


def _covers(pattern: str, token: str) -> bool:
    """Whether ``token`` is an instance of masked ``pattern`` (``<*>`` standing for anything)."""
    if WILD not in pattern:
        return False
    return re.fullmatch("(.*?)".join(re.escape(p) for p in pattern.split(WILD)), token, re.DOTALL) is not None


def _word_differences(a: list[str], b: list[str], most: int) -> tuple[int, ...] | None:
    """Positions where two templates hold different plain words (None when more than ``most``)."""
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y and x != WILD and y != WILD and not _fits_token(x, y):
            out.append(i)
            if len(out) > most:
                return None
    return tuple(out)


class TemplateStore:
    """``siblings``: templates differing only in the same one or two words that make a word a variable
    part. Below that, lines that differ in a word are kept apart ("startAnimation begin" / "end"); at
    it, the siblings become one template ("Invalid user <*> from <*>") and keep the earliest id (the
    others are recorded as merged into it)."""

    MAX_WORD_DIFFERENCES = 2

    def __init__(self, state: bytes | None = None, *, siblings: int = DEFAULT_SIBLINGS, next_id: int = 1) -> None:
        self.siblings = siblings
        self._groups: dict[tuple, list[_Template]] = {}
        self._keys: dict[int, tuple[str | None, str | None]] = {}
        self.merged_into: dict[int, int] = {}
        self._by_id: dict[int, _Template] = {}
        self._next_id = next_id
        self._dirty = False
        if state:
            self._restore(state)

    @classmethod
    def load(cls, db: sqlite_utils.Database) -> "TemplateStore":
        row = db.execute("SELECT state FROM miner_state WHERE name = ?", (STATE_NAME,)).fetchone()
        # Ids continue after every id already in use, also those of an earlier miner's templates.
        top = db.execute("SELECT max(template_id) FROM templates").fetchone()[0] or 0
        store = cls(row[0] if row else None, next_id=top + 1)
        if row:
            log.info("restored %d log templates", store.count)
        return store

    @property
    def count(self) -> int:
        return sum(len(group) for group in self._groups.values())

    def template(self, template_id: int) -> str:
        """The current text of a template (of the one it was merged into)."""
        return " ".join(self._by_id[self.resolve(template_id)].tokens)

    def resolve(self, template_id: int) -> int:
        """The template a (possibly merged) template id is part of now."""
        while template_id in self.merged_into:
            template_id = self.merged_into[template_id]
        return template_id

    def mine(self, message: str, level: str | None = None, component: str | None = None) -> Mined:
        raw = message.split()
        tokens = [mask_token(t) for t in raw]
        first = tokens[0] if tokens and WILD not in tokens[0] else WILD
        group = self._groups.setdefault((level, component, len(tokens), first), [])
        best, best_same = None, -1
        for t in group:
            same = _fits(t.tokens, tokens)
            if same > best_same:
                best, best_same = t, same
        changed = generalised = False
        previous: tuple[str, ...] = ()
        if best is None:
            best = _Template(self._next_id, tokens)
            self._next_id += 1
            group.append(best)
            self._keys[best.id] = (level, component)
            self._by_id[best.id] = best
            changed = True
            before = {t.id: " ".join(t.tokens) for t in group}
            merged = self._merge_siblings(group, best)
            if merged is not best:
                best, generalised = merged, True
                members = sorted(t for t, into in self.merged_into.items() if into == best.id and t in before)
                previous = tuple(before[t] for t in [best.id, *members])  # the survivor's answer first
        else:
            merged_tokens = [a if a == b else WILD for a, b in zip(best.tokens, tokens)]
            if merged_tokens != best.tokens:
                previous = (" ".join(best.tokens),)
                best.tokens = merged_tokens
                changed = generalised = True
        self._dirty |= changed
        params = [p for r, t in zip(raw, best.tokens) if WILD in t for p in _params(r, t)]
        held = {" ".join(t.tokens) for t in group} if previous else set()
        retired = tuple(text for text in previous if text not in held)
        return Mined(best.id, " ".join(best.tokens), params, changed, generalised, level, component, previous, retired)

    def _merge_siblings(self, group: list[_Template], new: _Template) -> _Template:
        by_positions: dict[tuple[int, ...], list[_Template]] = {}
        for t in group:
            if t is not new:
                diff = _word_differences(t.tokens, new.tokens, self.MAX_WORD_DIFFERENCES)
                if diff:
                    by_positions.setdefault(diff, []).append(t)
        if not by_positions:
            return new
        positions, members = max(by_positions.items(), key=lambda kv: len(kv[1]))
        if len(members) + 1 < self.siblings:
            return new
        members.append(new)
        survivor = min(members, key=lambda t: t.id)
        tokens = survivor.tokens
        for t in members:
            tokens = [a if a == b else WILD for a, b in zip(tokens, t.tokens)]
        survivor.tokens = tokens
        for t in members:
            if t is not survivor:
                group.remove(t)
                self.merged_into[t.id] = survivor.id
        return survivor

    def state_if_changed(self) -> bytes | None:
        """The serialised state when templates changed since the last call, else None."""
        if not self._dirty:
            return None
        self._dirty = False
        clusters = [
            [t.id, *self._keys[t.id], t.tokens] for group in self._groups.values() for t in group
        ]
        body = {
            "version": 1, "next_id": self._next_id, "templates": clusters,
            "merged_into": [[a, b] for a, b in self.merged_into.items()],
        }
        return zlib.compress(json.dumps(body, separators=(",", ":")).encode("utf-8", "surrogatepass"))

    def _restore(self, state: bytes) -> None:
        body = json.loads(zlib.decompress(state).decode("utf-8", "surrogatepass"))
        for tid, level, component, tokens in body["templates"]:
            first = tokens[0] if tokens and WILD not in tokens[0] else WILD
            t = self._by_id[tid] = _Template(tid, tokens)
            self._groups.setdefault((level, component, len(tokens), first), []).append(t)
            self._keys[tid] = (level, component)
        self._next_id = max(self._next_id, body["next_id"])
        self.merged_into.update({a: b for a, b in body.get("merged_into", [])})

    @staticmethod
    def save(db: sqlite_utils.Database, state: bytes) -> None:
        db.execute(
            "INSERT OR REPLACE INTO miner_state (name, state, saved_at) VALUES (?, ?, ?)",
            (STATE_NAME, state, time.time()),
        )
