"""Which files the configured globs name, and which directories to watch for them.

With ``follow_rotated`` each pattern also names its rotated copies (``app.log.1``,
``app.log-20261127``): a file that was created and rotated away while edged was down is then still
read. Each file is paired with its stream, the name it had before rotation, which is what its
records' ``source`` says. Compressed rotations are not logs we can read and are left alone.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from typing import NamedTuple

_GLOB_CHARS = set("*?[")
ROTATED_SUFFIXES = (".[0-9]*", "-[0-9]*")
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".z", ".Z")


class Found(NamedTuple):
    path: str  # absolute path of the file now
    stream: str  # the path it belongs to before rotation (== path for a live file)


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # vanished between glob and stat


def stream_of(path: str, pattern: str) -> str:
    """The live name of a rotated copy: the longest prefix (cut at '.' or '-') the pattern matches."""
    directory, name = os.path.split(path)
    last = os.path.basename(pattern)
    for cut in range(len(name) - 1, 0, -1):
        if name[cut] in ".-" and fnmatch.fnmatchcase(name[:cut], last):
            return os.path.join(directory, name[:cut])
    return path


def expand(patterns: list[str], follow_rotated: bool = False) -> list[Found]:
    """Regular files the patterns name ('**' recurses), with their streams; sorted, unique."""
    found: dict[str, str] = {}
    for pattern in patterns:
        pattern = os.path.abspath(pattern)
        for path in glob.glob(pattern, recursive=True):
            if _regular(path):
                found[path] = path
        if not follow_rotated:
            continue
        for suffix in ROTATED_SUFFIXES:
            for path in glob.glob(pattern + suffix, recursive=True):
                if path not in found and not path.endswith(COMPRESSED) and _regular(path):
                    found[path] = stream_of(path, pattern)
    return [Found(path, stream) for path, stream in sorted(found.items())]


def is_rotation_of(path: str, stream: str) -> bool:
    """Whether ``path`` is ``stream`` or a rotated name of it in the same directory."""
    directory, name = os.path.split(path)
    s_dir, s_name = os.path.split(stream)
    return directory == s_dir and (name == s_name or name.startswith((s_name + ".", s_name + "-")))


def watch_root(pattern: str) -> tuple[str, bool]:
    """The directory to watch for a pattern, and whether to watch below it too."""
    parts = os.path.abspath(pattern).split(os.sep)
    fixed: list[str] = []
    for part in parts[:-1]:
        if _GLOB_CHARS & set(part):
            return os.sep.join(fixed) or os.sep, True
        fixed.append(part)
    return os.sep.join(fixed) or os.sep, False


def find_inode(directory: str, dev: int, ino: int) -> str | None:
    """A file in ``directory`` that is the given inode (where log rotation renamed it)."""
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.inode() == ino:
                    try:
                        if entry.stat(follow_symlinks=False).st_dev == dev:
                            return entry.path
                    except OSError:
                        continue
    except OSError:
        return None
    return None
