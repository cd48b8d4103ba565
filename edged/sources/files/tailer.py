"""Following one file instance: reading new bytes and turning them into records.

A ``Tailer`` holds its file open, so a file that is renamed or deleted by log rotation can still
be read to its end. Its ``file_key`` names the instance in record ids; it is random, assigned when
the file is first seen, and only means something once stored (with the file's first lines), so a
re-read after a crash reuses the stored key and yields the same ids.
"""

from __future__ import annotations

import os
import re
import secrets
import time

from edged.ids import file_record_id
from edged.sources.files.identity import Fingerprint, check_fingerprint, mark_holds, mark_of_chunk, take_mark
from edged.sources.files.lines import LineAssembler, Piece
from edged.store.limits import NUL, REPLACEMENT, bound_name
from edged.store.records import FilePosition

ACTIVE = "active"  # the file its path names
DRAINING = "draining"  # rotated away or deleted: read to its end, then done
DONE = "done"
SKIPPED = "skipped"  # not a text file


def new_file_key() -> str:
    return secrets.token_hex(8)


def _record_id_prefix(file_key: str) -> str | None:
    """``p`` with ``file_record_id(file_key, n) == f"{p}{n}"``, or None if ids are not built that way."""
    prefix = file_record_id(file_key, 0)[:-1]
    if all(file_record_id(file_key, n) == f"{prefix}{n}" for n in (0, 7, 1234567890)):
        return prefix
    return None


class Tailer:
    def __init__(
        self,
        *,
        fd: int,
        path: str,
        source: str,
        dev: int,
        ino: int,
        fingerprint: Fingerprint,
        offset: int,
        file_key: str,
        state: str,
        first_seen: float,
        machine: str | None,
        mark: str | None = None,
        max_bytes: int,
        multiline_start: re.Pattern[str] | None,
    ) -> None:
        self.fd = fd
        self.path = path  # where the file is now
        self.source = source  # the log stream it belongs to: "file:" + its name before rotation
        self.dev, self.ino = dev, ino
        self.fingerprint = fingerprint
        self.file_key = file_key
        self.state = state
        self.reason: str | None = None
        self.first_seen = first_seen
        self.machine, _ = bound_name(machine)
        self.has_nul = False  # NUL bytes were read: records() replaces them (edged.store.limits)
        self.nul_records = 0  # records whose NULs were replaced, for the files.nul_replaced counter
        self.assembler = LineAssembler(offset, max_bytes=max_bytes, multiline_start=multiline_start)
        self.saved_offset = offset  # last offset handed to the store
        # The bytes just before the read offset, checked when the file changes (see identity.py).
        self.read_mark: tuple[int, str | None] = (offset, mark)
        self.safe_mark = self.read_mark  # the same at the offset stored with the position
        self.last_data_at = time.monotonic()
        self.last_size = -1
        self.last_mtime = 0.0
        self._id_prefix = (file_key, _record_id_prefix(file_key))  # for file_key

    # -- reading ------------------------------------------------------------------------------
    def read_chunk(self, max_bytes: int) -> tuple[list[Piece], bool]:
        """Read up to ``max_bytes`` new bytes. Returns the completed pieces and whether more is waiting."""
        start = self.assembler.read_offset
        data = os.pread(self.fd, max_bytes, start)
        if not data:
            return [], False
        self.last_data_at = time.monotonic()
        if b"\0" in data:  # one scan per chunk; the rare file with NULs pays for cleaning its lines
            self.has_nul = True
        pieces = self.assembler.feed(data)
        end = start + len(data)
        self.read_mark = (end, mark_of_chunk(self.fd, end, data))
        # Marks are taken from the bytes as they were read: a file changed later must not change them.
        safe = self.assembler.safe_offset
        if safe == end:
            self.safe_mark = self.read_mark
        elif safe != self.safe_mark[0]:
            self.safe_mark = (safe, take_mark(self.fd, safe))
        return pieces, len(data) == max_bytes

    def flush_idle(self, now: float, partial_timeout: float, multiline_timeout: float) -> list[Piece]:
        """Records that waited long enough: a last line without newline, a multiline record."""
        idle = now - self.last_data_at
        out: list[Piece] = []
        if idle >= partial_timeout:
            out += self.assembler.flush_partial()
        if idle >= multiline_timeout:
            out += self.assembler.flush_group()
        return out

    def records(self, pieces: list[Piece], received_at: float) -> list[tuple]:
        """Inbox rows (NewRecord column order) for pieces of this file."""
        key, source, machine, path = self.file_key, self.source, self.machine, self.path
        if self.has_nul:
            pieces = self._without_nul(pieces)
        if self._id_prefix[0] != key:
            self._id_prefix = (key, _record_id_prefix(key))
        prefix = self._id_prefix[1]
        if prefix is not None:  # file_record_id inlined: this runs for every line
            return [
                (f"{prefix}{p.start}", source, machine, "log", p.text, p.flags, path, received_at, 0)
                for p in pieces
            ]
        return [
            (file_record_id(key, p.start), source, machine, "log", p.text, p.flags, path, received_at, 0)
            for p in pieces
        ]

    def _without_nul(self, pieces: list[Piece]) -> list[Piece]:
        out = []
        for p in pieces:
            if NUL in p.text:
                self.nul_records += 1
                p = p._replace(text=p.text.replace(NUL, REPLACEMENT))
            out.append(p)
        return out

    # -- state ----------------------------------------------------------------------------------
    @property
    def offset(self) -> int:
        return self.assembler.safe_offset

    def position(self) -> FilePosition:
        return FilePosition(
            self.file_key,
            self.source,
            self.path,
            self.dev,
            self.ino,
            self.fingerprint.length,
            self.fingerprint.digest,
            self.offset,
            self.state,
            self.reason,
            self.first_seen,
            time.time(),
            self._mark_at(self.offset),
        )

    def _mark_at(self, offset: int) -> str | None:
        for at, mark in (self.safe_mark, self.read_mark):
            if at == offset:
                return mark
        return take_mark(self.fd, offset)

    def still_same_file(self) -> str | None:
        """None while the open file is still the one we follow; else why not ('truncated')."""
        st = os.fstat(self.fd)
        if st.st_size == self.last_size and st.st_mtime == self.last_mtime:
            return None
        self.last_size, self.last_mtime = st.st_size, st.st_mtime
        if st.st_size < self.assembler.read_offset:
            return "truncated"
        fp = check_fingerprint(self.fd, st.st_size, self.fingerprint)
        if fp is None:
            return "truncated"  # rewritten from the start (copytruncate, then new lines)
        if not mark_holds(self.fd, *self.read_mark):
            return "truncated"  # rewritten after an unchanged beginning (same banner, same inode)
        self.fingerprint = fp
        return None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
