"""The figures the overview, /api/status and /metrics share: ``collect_status()`` plus a few page
extras, computed at most every ``STATUS_TTL_S`` for all requests (longer when the database is slow)."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

from edged.store.status import collect_status
from edged.web import queries

log = logging.getLogger(__name__)

STATUS_TTL_S = 2.0  # the overview, /api/status and /metrics share figures this old at most (more if slow)
# Sections of collect_status() the page relies on, with what to show if a database lacks them.
STORAGE_DEFAULTS = {"max_bytes": None, "evicted": {}, "refused": {}, "paused": False, "paused_reasons": []}
UPSTREAM_DEFAULTS = {"unsent": 0, "sent": 0, "oldest_unsent_s": None, "published": 0, "resent": 0, "connects": 0,
                     "expired": 0}

Snapshot = tuple[dict[str, Any], dict[str, Any], str | None]


class StatusSnapshot:
    def __init__(self, settings: Any, pool: queries.ReaderPool) -> None:
        self.store = settings.store
        self.pool = pool
        self._snapshot: Snapshot | None = None
        self._snapshot_at = 0.0
        self._snapshot_ttl = STATUS_TTL_S
        self._lock = threading.Lock()

    def get(self) -> Snapshot:
        """(collect_status(), extras, error)."""
        with self._lock:
            if self._snapshot is not None and time.monotonic() - self._snapshot_at < self._snapshot_ttl:
                return self._snapshot
            started = time.monotonic()
            try:
                with self.pool.reader() as db:
                    status = collect_status(db, self.store.path, self.store.max_bytes)
                    extra = {
                        "last_delivery": queries.last_delivery(db),
                        "label_corrections": queries.corrections_count(db),
                        "problems": queries.recent_problems(db),
                    }
                status["storage"] = {**STORAGE_DEFAULTS, "used_bytes": status["db"]["bytes"], **status.get("storage", {})}
                status["upstream"] = {**UPSTREAM_DEFAULTS, **status.get("upstream", {})}
                self._snapshot = (status, extra, None)
            except sqlite3.Error as exc:
                log.error("web: reading the status failed: %s", exc)
                self._snapshot = ({}, {}, str(exc))
            self._snapshot_at = time.monotonic()
            # A big database makes the counts slow (a Pi with a million records): then reuse them longer.
            self._snapshot_ttl = max(STATUS_TTL_S, 10 * (self._snapshot_at - started))
            return self._snapshot
