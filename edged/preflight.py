"""What ``edged run`` checks before it starts anything, and ``edged config check`` checks the same way.

The settings themselves are validated when they load (edged.config: every key, and every rule that
spans keys, in one validator). Here is what depends on the box rather than on the file: can the
database be written where ``[store] path`` says, and is the configured model there and intact.
Each refusal is a ``ConfigError`` or ``ModelUnavailable`` whose text names the key and the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from edged.config import ConfigError, LoadedConfig
from edged.backends import needs_model_file


def check_store_path(path: Path, where: str) -> None:
    """The database file can be created or written at ``path`` (with its -wal and -shm beside it)."""
    key = f"{where}: [store] path"
    if path.is_dir():
        raise ConfigError(f"{key}: {path} is a directory; name a file in it, e.g. {path / 'edged.db'}")
    if path.exists():
        if not path.is_file():
            raise ConfigError(f"{key}: {path} is not a regular file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError(
                f"{key}: {path} cannot be written (a read-only file or file system, or owned by another"
                " user); give edged's user write access or set [store] path to a writable place"
            )
    parent = path.parent
    while not parent.exists():  # edged creates missing directories: the nearest existing one counts
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}: {parent} is not a directory, so {path} cannot be created under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key}: the directory {parent} cannot be written (read-only file system, or owned by another"
            " user), and SQLite needs to create the database and its -wal and -shm files there"
        )


def check_before_start(loaded: LoadedConfig) -> None:
    """Everything ``run`` refuses before it starts a worker. Raises ConfigError or ModelUnavailable."""
    settings = loaded.settings
    check_store_path(Path(settings.store.path), str(loaded.path or "built-in defaults"))
    if settings.analysis.enabled and needs_model_file(settings.backend):
        from edged.models.resolve import resolve_model

        resolve_model(settings.model)
