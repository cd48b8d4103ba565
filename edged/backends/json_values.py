"""Following a JSON object as it is generated, to see the string value being written.

The llama_cpp backend uses it for ``CompletionRequest.string_check``: the moment what has been written
of a member's string value fails the check (it no longer occurs in the record's text), the value can
only end ungrounded, and the backend writes ``null`` in its place instead of letting a small model
spell out (and loop in) a value that would be thrown away.
"""

from __future__ import annotations

import json


class ValueWatch:
    """The bytes of one generated JSON document, fed token by token; knows whether an object member's
    string value is open, where its opening quote is, and what it says so far."""

    def __init__(self) -> None:
        self.data = b""
        self._in_string = False
        self._escaped = False
        self._last = b""  # the last byte outside strings that is not whitespace
        self.value_start = -1  # byte offset of the open value string's quote; -1 when none is open

    def feed(self, piece: bytes) -> None:
        for i in range(len(piece)):
            ch = piece[i:i + 1]
            at = len(self.data) + i
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == b"\\":
                    self._escaped = True
                elif ch == b'"':
                    self._in_string = False
                    self.value_start = -1
                    self._last = ch
            elif ch == b'"':
                self._in_string = True
                self.value_start = at if self._last == b":" else -1
            elif not ch.isspace():
                self._last = ch
        self.data += piece

    def open_value(self) -> str | None:
        """The text of the member value string being written (JSON escapes resolved, an unfinished escape
        or character left out), or None when no value string is open."""
        if self.value_start < 0:
            return None
        raw = self.data[self.value_start + 1:].decode("utf-8", errors="ignore")
        cut = raw.rfind("\\")
        if cut >= 0 and not _complete_escape(raw[cut:]):
            raw = raw[:cut]
        try:
            return json.loads(f'"{raw}"')
        except ValueError:
            return None


def _complete_escape(tail: str) -> bool:
    if len(tail) < 2:
        return False
    if tail[1] == "u":
        return len(tail) >= 6
    return True
