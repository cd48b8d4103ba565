"""Grounding: a value the model returns must be in the record's text, or it is not kept.

A 135M model can be trusted to pick, not to copy: it invents dates, codes and parts. Whatever the
prompt and grammar do, this check is what guarantees that an extracted value was in the text:

- a string must occur in the text, ignoring case and runs of whitespace, starting and ending at
  word boundaries where it starts or ends with a letter or digit (``12`` is not found in ``4123``,
  nor, as a piece of an identifier, in ``EX-12`` or ``R12``; a unit may follow its number: ``s``
  in ``1810s``);
- a number must occur in the text as a number (``91.5`` in ``91.5C``), not as a piece of a longer
  number or of an identifier (not ``12`` in ``EX-12``).
"""

from __future__ import annotations

import re
from typing import Any

from edged.analysis.field_patterns import UNIT

_SPACE = re.compile(r"\s+")
# A number is not a piece of an identifier: not 12 in "EX-12" or "R12", nor 7 in "blk_7", nor 10.190
# in the address 10.190.173.170.
_NUMBERS = re.compile(r"(?<![\w.])(?<![A-Za-z]-)\d+(?:[.,]\d+)?(?![.,]?\d)")


def _fold(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold()


def _start_pattern(needle: str) -> str:
    """``needle`` as a pattern that does not start inside a word or number."""
    pattern = re.escape(needle).replace(r"\ ", r"\s+")
    if needle[0].isalnum():
        # a word must not continue a word (a unit may follow a digit: "s" in "1810s")
        pattern = (r"(?<![^\W\d_])" if not needle[0].isdigit() else r"(?<![\w.,])(?<![^\W\d_]-)") + pattern
    return pattern


def string_in_text(value: str, text: str) -> bool:
    needle = _fold(value)
    if not needle:
        return False
    hay = _fold(text)
    pattern = _start_pattern(needle)
    if needle[-1].isalnum():
        pattern = pattern + (r"(?![^\W_])" if not needle[-1].isdigit() else r"(?!\d|[.,]\d)")
    return re.search(pattern, hay) is not None


def may_become_grounded(prefix: str, text: str) -> bool:
    """Whether a string value that starts with ``prefix`` can still occur in ``text`` by the rule of
    ``string_in_text`` (every prefix of a value that occurs passes; the end-of-word rule waits for the end)."""
    needle = _fold(prefix)
    return not needle or re.search(_start_pattern(needle), _fold(text)) is not None


def numbers_in(text: str) -> set[float]:
    found = set()
    for m in _NUMBERS.finditer(text):
        raw = m.group(0)
        for candidate in {raw.replace(",", "."), raw.replace(",", "")}:
            try:
                found.add(float(candidate))
            except ValueError:
                pass
    return found


def grounded(value: Any, text: str) -> bool:
    """Whether ``value`` occurs in ``text`` (see the module docstring). None is always grounded."""
    if value is None:
        return True
    if isinstance(value, bool):
        return string_in_text(str(value).lower(), text)
    if isinstance(value, (int, float)):
        return abs(float(value)) in numbers_in(text)
    return string_in_text(str(value), text)


_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}:\d{2}:\d{2}")
_MEASURE = re.compile(r"[-+]?\d+(?:[.,]\d+)*\s*°?[A-Za-z%]{0,4}")  # 12, 88.5C, 3000rpm: a value, not a code


# Longer "codes" the model copied were block, task or attempt ids (blk_-6891122177443047531).
ERROR_CODE_MAX_CHARS = 16


def plausible(name: str, value: Any) -> bool:
    """The shape a field's value must have, beyond being in the text. Being in the text is not enough: the
    model copies the wrong words into the right fields ("unit": "Cylinder", "machine": "Deleting").

    - an error code has a digit, is at most 16 characters, and is not a date, time or measurement ("L",
      "2005-06-03" or "88.5C" copied from the text is not a code);
    - a unit is one the value+unit patterns know (C, °C, bar, rpm, %, A, V, s, ms, ...: ``field_patterns``);
    - a machine the model names has a digit (EX-12, cnc-1, 10.0.0.7): the words it offered without one were
      parts, verbs or field names, and a machine without a digit in its name comes from the header or the
      file/topic rule, which the model is not asked about."""
    text = str(value).strip()
    if name == "error_code":
        return (any(ch.isdigit() for ch in text) and len(text) <= ERROR_CODE_MAX_CHARS
                and not _DATE.search(text) and not _MEASURE.fullmatch(text))
    if name == "unit":
        return UNIT.fullmatch(text) is not None
    if name == "machine":
        return any(ch.isdigit() for ch in text)
    return True
