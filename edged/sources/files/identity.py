"""Telling files apart: device + inode, a fingerprint of the first bytes, and a mark at the position.

The inode alone is not enough: after a delete the filesystem reuses inode numbers, and a truncated
and rewritten file keeps its inode. The fingerprint (a hash of the first ``fp_len`` bytes, up to
FP_MAX) tells those cases apart. It grows with the file until FP_MAX, always checked against the
shorter prefix first, so a file first seen with a few bytes keeps its identity as it grows.

A fingerprint cannot see past FP_MAX: a file that keeps its first KiB (a banner) and its inode but
is rewritten after it would pass. So the position also carries a *mark*, a hash of the MARK_MAX
bytes just before it. Resuming at an offset needs the file to be at least that long and to hold the
same bytes right before it; otherwise it is a rewrite and is read again from the start.
"""

from __future__ import annotations

import hashlib
import os
from typing import NamedTuple

FP_MAX = 1024
MARK_MAX = 256
BINARY_SAMPLE = 8192


class Fingerprint(NamedTuple):
    length: int
    digest: str


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def take_fingerprint(fd: int, size: int) -> Fingerprint:
    data = os.pread(fd, min(size, FP_MAX), 0)
    return Fingerprint(len(data), _digest(data))


def check_fingerprint(fd: int, size: int, known: Fingerprint) -> Fingerprint | None:
    """The (possibly longer) fingerprint if the file still starts with the known bytes, else None."""
    if size < known.length:
        return None
    data = os.pread(fd, min(size, FP_MAX), 0)
    if len(data) < known.length or _digest(data[: known.length]) != known.digest:
        return None
    if len(data) == known.length:
        return known
    return Fingerprint(len(data), _digest(data))


def looks_binary(fd: int) -> bool:
    """NUL bytes in the first 8 KiB: a compressed rotation, a core dump, a database - not a log."""
    return b"\0" in os.pread(fd, BINARY_SAMPLE, 0)


def take_mark(fd: int, offset: int) -> str | None:
    """The hash of the bytes just before ``offset`` (None at offset 0, where there is nothing to check)."""
    if offset <= 0:
        return None
    start = max(0, offset - MARK_MAX)
    data = os.pread(fd, offset - start, start)
    if len(data) != offset - start:
        return "short"  # the file is shorter than the offset: no mark can match this
    return _digest(data)


def mark_of_chunk(fd: int, end: int, data: bytes) -> str | None:
    """The mark at ``end`` right after reading ``data`` (which ends there): no extra read when it is long."""
    if len(data) >= MARK_MAX:
        return _digest(data[-MARK_MAX:])
    return take_mark(fd, end)


def mark_holds(fd: int, offset: int, mark: str | None) -> bool:
    """Whether the file still holds, right before ``offset``, the bytes ``mark`` was taken of."""
    return mark is None or take_mark(fd, offset) == mark
