"""Logging for the daemon and the CLI: plain lines on stderr (journald takes them under systemd)."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # watchdog logs every inotify event at DEBUG; that is noise even when debugging edged.
    logging.getLogger("watchdog").setLevel(max(logging.INFO, root.level))
