"""Telling files apart: device + inode, plus a fingerprint of the first bytes.

The inode alone is not enough: after a delete the filesystem reuses inode numbers, and a truncated
and rewritten file keeps its inode. The fingerprint (a hash of the first ``fp_len`` bytes, up to
FP_MAX) tells those cases apart. It grows with the file until FP_MAX, always checked against the
shorter prefix first, so a file first seen with a few bytes keeps its identity as it grows.
"""

from __future__ import annotations

import hashlib
import os
from typing import NamedTuple

FP_MAX = 1024
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
