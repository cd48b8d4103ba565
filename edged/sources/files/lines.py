"""Turning the bytes of a file into records, remembering how far records are complete.

``LineAssembler`` is pure logic (no I/O, time passed in), so rotation and crash tests can drive it
directly. It is fed consecutive chunks of one file and yields ``Piece``s: the byte range a record
covers and its text. ``safe_offset`` is the first byte not yet part of a yielded record: the file
position that may be committed with them. Bytes after it (a partial last line, a multiline record
still collecting lines) are re-read after a restart, which yields the same record ids again.

Memory stays bounded: a line longer than ``max_bytes`` keeps only its first ``max_bytes`` and the
rest is skipped up to its newline.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from edged.store.records import FLAG_INVALID_UTF8, FLAG_NO_NEWLINE, FLAG_TRUNCATED


class Piece(NamedTuple):
    start: int  # byte offset of the record's first byte
    end: int  # offset just past the record (past its newline)
    text: str
    flags: str  # space-separated FLAG_* values


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """Truncate to at most ``limit`` bytes without splitting a UTF-8 sequence."""
    if len(data) <= limit:
        return data
    cut = limit
    # Step back over continuation bytes (10xxxxxx) so the last character stays whole.
    while cut > 0 and limit - cut < 3 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut]


def decode(raw: bytes) -> tuple[str, bool]:
    """Text of a line and whether it had invalid UTF-8 (replaced with U+FFFD)."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), True


def _flags(*pairs: tuple[bool, str]) -> str:
    return " ".join(name for on, name in pairs if on)


class LineAssembler:
    def __init__(
        self,
        offset: int,
        *,
        max_bytes: int,
        multiline_start: re.Pattern[str] | None = None,
        max_group_lines: int = 1000,
    ) -> None:
        self.max_bytes = max_bytes
        self.multiline_start = multiline_start
        self.max_group_lines = max_group_lines
        self.read_offset = offset  # next byte to be fed
        self._buf = b""  # incomplete last line, starting at _buf_start
        self._buf_start = offset
        self._overlong = False  # _buf holds the kept head of a line longer than max_bytes
        # Multiline: lines of the record still collecting, as decoded text.
        self._group: list[str] = []
        self._group_start = 0
        self._group_end = 0
        self._group_bytes = 0
        self._group_truncated = False
        self._group_invalid = False
        self._group_no_newline = False
        self._done_until = offset  # everything before this is in yielded records or was blank

    @property
    def safe_offset(self) -> int:
        """First byte that is not yet part of a yielded record."""
        if self._group:
            return self._group_start
        if self._buf or self._overlong:
            return self._buf_start
        return self._done_until

    @property
    def has_pending(self) -> bool:
        return bool(self._buf or self._overlong or self._group)

    # -- feeding -------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Piece]:
        """Consume the next bytes of the file; returns the records they complete."""
        out: list[Piece] = []
        if not data:
            return out
        offset = self.read_offset
        self.read_offset += len(data)
        if self._overlong:
            nl = data.find(b"\n")
            if nl < 0:
                return out  # still inside the overlong line: skip its bytes
            self._line(out, self._buf_start, offset + nl + 1, self._buf, truncated=True)
            self._buf, self._overlong = b"", False
            offset += nl + 1
            data = data[nl + 1 :]
        elif self._buf:
            offset = self._buf_start
            data = self._buf + data
            self._buf = b""
        lines = data.split(b"\n")
        rest = lines.pop()
        if self.multiline_start is None:
            self._simple_lines(out, lines, offset)
        else:
            for raw in lines:
                end = offset + len(raw) + 1
                self._line(out, offset, end, raw, truncated=False)
                offset = end
        self._buf_start = self.read_offset - len(rest)
        if len(rest) > self.max_bytes:
            self._buf, self._overlong = _cut_utf8(rest, self.max_bytes), True
        else:
            self._buf = rest
        return out

    def _simple_lines(self, out: list[Piece], lines: list[bytes], offset: int) -> None:
        """The hot path: one record per line, no multiline regex. Kept lean on purpose."""
        append = out.append
        max_bytes = self.max_bytes
        new = tuple.__new__  # new(Piece, (...)) is Piece(...) without the Python-level __new__ call
        for raw in lines:
            n = len(raw)
            end = offset + n + 1
            if n > max_bytes:
                self._line(out, offset, end, raw, truncated=False)
            else:
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                try:
                    text = raw.decode("utf-8")
                    flags = ""
                except UnicodeDecodeError:
                    text = raw.decode("utf-8", "replace")
                    flags = FLAG_INVALID_UTF8
                if text and not text.isspace():
                    append(new(Piece, (offset, end, text, flags)))
            offset = end
        self._done_until = offset

    def _line(
        self, out: list[Piece], start: int, end: int, raw: bytes, *, truncated: bool, no_newline: bool = False
    ) -> None:
        """One complete line: a record of its own, or part of a multiline record."""
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self.max_bytes:
            raw, truncated = _cut_utf8(raw, self.max_bytes), True
        text, invalid = decode(raw)
        blank = not text or text.isspace()
        if self.multiline_start is None:
            if not blank:
                flags = _flags((truncated, FLAG_TRUNCATED), (invalid, FLAG_INVALID_UTF8), (no_newline, FLAG_NO_NEWLINE))
                out.append(Piece(start, end, text, flags))
            self._done_until = end
            return
        starts_record = not blank and self.multiline_start.search(text) is not None
        if self._group and (starts_record or len(self._group) >= self.max_group_lines):
            out.append(self._take_group())
        if not self._group:
            if blank:
                self._done_until = end
                return
            self._group_start = start
            self._group_bytes = 0
        room = self.max_bytes - self._group_bytes
        if len(raw) > room:
            # The record is full: keep what fits of this line, drop the rest, flag it.
            if room > 0:
                self._group.append(decode(_cut_utf8(raw, room))[0])
                self._group_bytes = self.max_bytes
            truncated = True
        else:
            self._group.append(text)
            self._group_bytes += len(raw) + 1
        self._group_end = end
        self._group_truncated |= truncated
        self._group_invalid |= invalid
        self._group_no_newline |= no_newline

    def _take_group(self) -> Piece:
        piece = Piece(
            self._group_start,
            self._group_end,
            "\n".join(self._group),
            _flags(
                (self._group_truncated, FLAG_TRUNCATED),
                (self._group_invalid, FLAG_INVALID_UTF8),
                (self._group_no_newline, FLAG_NO_NEWLINE),
            ),
        )
        self._done_until = self._group_end
        self._group = []
        self._group_truncated = self._group_invalid = self._group_no_newline = False
        return piece

    # -- timeouts --------------------------------------------------------------------------
    def flush_partial(self) -> list[Piece]:
        """Treat the incomplete last line as complete (its newline never came)."""
        out: list[Piece] = []
        if self._buf or self._overlong:
            self._line(out, self._buf_start, self.read_offset, self._buf, truncated=self._overlong, no_newline=True)
            self._buf, self._overlong = b"", False
            self._buf_start = self.read_offset
        return out

    def flush_group(self) -> list[Piece]:
        """Store the multiline record that is still collecting lines."""
        return [self._take_group()] if self._group else []

    def flush_all(self) -> list[Piece]:
        return self.flush_partial() + self.flush_group()
