"""Which files the configured globs name, and which directories to watch for them."""

from __future__ import annotations

import glob
import os
import stat

_GLOB_CHARS = set("*?[")


def expand(patterns: list[str]) -> list[str]:
    """Absolute paths of the regular files matching any pattern ('**' recurses), sorted, unique."""
    found: set[str] = set()
    for pattern in patterns:
        for path in glob.glob(os.path.abspath(pattern), recursive=True):
            try:
                if stat.S_ISREG(os.stat(path).st_mode):
                    found.add(path)
            except OSError:
                continue  # vanished between glob and stat
    return sorted(found)


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
