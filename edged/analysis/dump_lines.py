"""Register and flag dump lines: the machine state a crash handler logs, one value per line.

When a CPU, a PLC or a CNC controller crashes, its handler often writes the machine state one
register or flag per log line, each at the crash's own level (FATAL):
``instruction address: 0x00004ed8``, ``machine check enable..............0``,
``r24=0x0ffea4c8 r25=0x00000003``, ``lr:00004ed0 cr:28244842 xer:20000002``. Such a line is not an
event of its own: it describes the crash that another line reports. Labelled by its level, one crash
becomes thirty faults; a technician wants one. ``is_dump_line`` recognises these lines, and routing
labels them ``normal``, severity 0 (``classified_by = dump``), where ``[analysis] dump_lines`` is on.

A message is a dump line when it is nothing but a name and a register-like value, in one of these
shapes:

- ``NAME: VALUE`` or ``NAME = VALUE``, NAME a register's name (at most four words, without a colon,
  an equals sign or a comma), VALUE hexadecimal: ``0x`` and hex digits, or exactly 8 or 16 hex
  digits (a 32- or 64-bit register written without its prefix);
- ``NAME.....0`` or ``NAME.....1``: a flag after a dotted leader of two dots or more (one dot is read
  as the end of a sentence or a version number: ``version 1.0`` is not a flag). The name ends in a
  letter or a closing parenthesis;
- a run of two or more ``REG=VALUE`` / ``REG:VALUE`` pairs, REG a register name (a letter and up to
  7 letters or digits), VALUE as above: ``r24=0x0ffea4c8 r25=0x00000003``;
- a dump's heading with nothing after it: ``special purpose registers:``.

Narrow on purpose, so that a real alarm is never silenced. A message is *not* a dump line when

- its value is anything else: a decimal number (``pressure: 12``), a word (``state: STOPPED``), a
  measurement (``temp: 95C``);
- its name holds a measurement (a number with a unit, ``edged.analysis.field_patterns``), names a
  physical quantity (temperature, pressure, voltage, current, speed, rpm, flow, torque,
  vibration, humidity), or says a failure in words (error, fail, fault, alarm, abort): a PLC's
  ``fault code: 0x8001`` or ``overtemp alarm.....1`` may be the only line of its fault;
- the message holds an error code shape (``field_patterns``' error_code patterns: ``E-1234``,
  ``ALM 203``, ``code=0x1F``, ``rc=-1``);
- it holds an ``[analysis] lexicon`` word (checked by ``edged.analysis.evidence``, which owns the
  lexicon).
"""

from __future__ import annotations

import re

from edged.analysis.field_patterns import DEFAULT_PATTERNS

DUMP_LABEL, DUMP_SEVERITY = "normal", 0
MAX_CHARS = 400  # a longer message is never a dump line (and is not scanned)

_HEX = r"(?:0[xX][0-9A-Fa-f]{1,16}|[0-9A-Fa-f]{16}|[0-9A-Fa-f]{8})"
# A name of words: letters, digits, spaces and a little punctuation; a single dot only inside it
# ("floating point instr. enabled"); two dots in a row are a leader, not part of the name.
_NAME = r"[A-Za-z](?:[\w ,:=()/+-]|\.(?=[\w ]))*?"
# A register's name is a short noun phrase: at most four words, no colon, equals sign or comma (a
# sentence that ends in an id, "Processed session termination for sessionid: 0x14ede63a5a70002", or
# a message holding several values, "vis=0x708, SystemUiVisibility=0x708", is not one).
_REGISTER_NAME = r"[A-Za-z][\w()/.+-]*(?: [\w()/.+-]+){0,3}"
_NAMED_VALUE = re.compile(rf"(?P<name>{_REGISTER_NAME})\s*[:=]\s*(?P<value>{_HEX})")
_FLAG = re.compile(rf"(?P<name>{_NAME})(?<=[A-Za-z)])\s*\.{{2,}}\s*(?P<value>[01])")
_PAIR = rf"[A-Za-z][A-Za-z0-9]{{0,7}}\s*[=:]\s*{_HEX}"
_PAIRS = re.compile(rf"{_PAIR}(?:[\s,;]+{_PAIR})+[\s,;]*")
_REG_NAME = re.compile(r"([A-Za-z][A-Za-z0-9]{0,7})\s*[=:]")
_HEADING = re.compile(r"(?P<name>[A-Za-z][A-Za-z ]{0,40}\bregisters)\s*:")

_FAILURE_WORDS = re.compile(r"(?<![A-Za-z])(?:err(?:or)?s?|fail\w*|fault\w*|alarm\w*|abort\w*)(?![A-Za-z])", re.I)
_QUANTITIES = re.compile(
    r"(?<![A-Za-z])(?:temp\w*|pressure|voltage|current|speed|rpm|flow|torque|vibration|humidity)(?![A-Za-z])",
    re.I)
_MEASUREMENT = [re.compile(p) for p in DEFAULT_PATTERNS["value"]]
_ERROR_CODE = [re.compile(p) for p in DEFAULT_PATTERNS["error_code"]]


def _names(message: str) -> list[str] | None:
    """The name(s) of a dump line's values (None: the message is not in a dump shape)."""
    if _PAIRS.fullmatch(message):
        return _REG_NAME.findall(message)
    for shape in (_NAMED_VALUE, _FLAG, _HEADING):
        match = shape.fullmatch(message)
        if match:
            return [match.group("name")]
    return None


def is_dump_line(message: str) -> bool:
    """Whether a log message is a line of a register or flag dump (see the module's docstring).

    ``message`` is the text after the line's header; the caller checks the lexicon."""
    message = message.strip()
    if not message or len(message) > MAX_CHARS:
        return False
    names = _names(message)
    if names is None:
        return False
    if any(p.search(message) for p in _ERROR_CODE):
        return False
    for name in names:
        if _FAILURE_WORDS.search(name) or _QUANTITIES.search(name) or any(p.search(name) for p in _MEASUREMENT):
            return False
    return True
