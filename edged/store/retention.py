"""Bounded resources: the database stays under ``[store] max_bytes``, the backlog under ``high_water``.

One small thread (``Retention``) checks every ``check_interval_s``. It writes only through the store
writer, in chunks, so ingestion goes on between them; it reads and checkpoints with its own connection.

**Size.** Deleting rows does not shrink the file: SQLite keeps the freed pages and reuses them before
it grows the file. So the cap is on what is in use, ``(page_count - freelist_count) * page_size``, plus
the write-ahead log; the file itself stays near its largest used size and only ``edged db vacuum``
gives the space back to the file system. We do not turn on ``auto_vacuum``: a database only takes it
at creation or through a full VACUUM, and on an SD card giving pages back only to allocate them again
a minute later is extra wear for nothing. A database converted with ``edged db vacuum --auto-vacuum
incremental`` gets ``PRAGMA incremental_vacuum`` after each eviction. The write-ahead log counts
against the cap, so with a cap set the writer checkpoints and truncates it at a small fraction of it.

**Eviction** starts when the used size passes ``EVICT_AT`` of the cap (the rest of the cap is
room for what arrives between two checks and for the write-ahead log's ups and downs) and goes on, in
the order of ``edged.store.eviction`` (delivered results first, then undelivered log-line results,
incident reports never), until the size is under ``EVICT_TO`` of the cap, so that it does not run
on every check. If it is still over the cap itself with nothing left that may go, new input is
refused: the sources stop reading (log files stay on disk, the MQTT broker keeps the messages),
counted as ``refused.storage_full`` each time it engages, until eviction brings the size under
``EVICT_TO`` of the cap again (the analyzer keeps turning waiting records into results that may
go). Incident reports submitted with ``edged submit`` or the web form are never refused.

**Backpressure.** Above ``high_water`` rows waiting (records pending or leased, plus outbox rows
not sent) the sources pause; below ``low_water`` they resume; ``backpressure.paused`` counts each
time it engages. Unsent rows count only when an upstream broker is configured and records waiting
for the model only when analysis is on: otherwise nothing would ever drain them and the sources
would stay paused for good (the size cap bounds them instead).

Every eviction and refusal is counted in ``counters``; whether the sources are held right now is
kept there too, as the gauges ``state.paused.backlog`` and ``state.paused.storage_full`` (0 or 1),
for ``edged status``.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import sqlite_utils

from edged.config.settings import StoreSettings
from edged.store.database import connect
from edged.store.eviction import evict
from edged.store.records import ADD_COUNTER
from edged.store.writer import StoreWriter, WriterStopped

log = logging.getLogger(__name__)

EVICT_AT = 0.85  # start evicting above this fraction of the cap (the rest: the WAL and input between checks)
EVICT_TO = 0.75  # and evict down to this fraction
WAL_FRACTION = 0.05  # the write-ahead log is checkpointed and truncated above this fraction of the cap
MIN_WAL_BUDGET = 64 * 1024
# A TRUNCATE checkpoint takes the write lock, then waits for readers to leave the log: the daemon's
# writes wait for it meanwhile, so it gives up soon (and tries again at the next check).
CHECKPOINT_BUSY_MS = 25
PATIENT_CHECKPOINT_BUSY_MS = 250  # when the log is past its whole budget
PAUSED_GAUGE = "state.paused."
SET_GAUGE = (
    "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value"
)


class Backpressure:
    """Whether the sources may read. Set by ``Retention``; sources check ``paused`` in their loop.

    Reasons hold independently: ``backlog`` (too many rows waiting) and ``storage_full`` (over
    the size cap with nothing left to evict). Sources read only while no reason holds.
    """

    BACKLOG = "backlog"
    STORAGE_FULL = "storage_full"
    STORAGE_ERROR = "storage_error"  # the disk is full or failing: held and released by the store writer
    REASONS = (BACKLOG, STORAGE_FULL)  # the ones recorded as gauges in the database

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reasons: set[str] = set()
        self._released = threading.Event()
        self._released.set()
        self._listeners: list[Callable[[], None]] = []

    @property
    def paused(self) -> bool:
        return not self._released.is_set()

    @property
    def reasons(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._reasons)

    def hold(self, reason: str) -> bool:
        """Pause the sources for ``reason``; True if it was not holding them already."""
        with self._lock:
            if reason in self._reasons:
                return False
            self._reasons.add(reason)
            self._released.clear()
            return True

    def release(self, reason: str) -> bool:
        """Drop ``reason``; True if it was holding. Sources resume when no reason is left."""
        with self._lock:
            if reason not in self._reasons:
                return False
            self._reasons.discard(reason)
            if self._reasons:
                return True
            self._released.set()
            listeners = list(self._listeners)
        for fn in listeners:
            try:
                fn()
            except Exception:
                log.exception("backpressure listener failed")
        return True

    def wait_released(self, timeout: float | None = None) -> bool:
        return self._released.wait(timeout)

    def on_release(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` (from the retention thread) whenever the sources may read again."""
        with self._lock:
            self._listeners.append(fn)


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    used_bytes: int  # pages in use + write-ahead log: what the cap is about
    wal_bytes: int
    page_size: int
    free_pages: int


def wal_bytes(path: Path | str) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except OSError:
        return 0


def measure(db: sqlite_utils.Database, path: Path | str) -> Size:
    """The used size of the database at ``path``, read on ``db`` (any connection to it)."""
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    page_count = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    wal = wal_bytes(path)
    return Size(used_bytes=(page_count - free) * page_size + wal, wal_bytes=wal, page_size=page_size, free_pages=free)


def backlog(db: sqlite_utils.Database, *, unanalyzed: bool = True, unsent: bool = True) -> int:
    """Rows waiting: records not analyzed yet (pending, leased) plus outbox rows not sent yet."""
    n = 0
    if unanalyzed:
        n += db.execute("SELECT count(*) FROM records WHERE status IN ('pending', 'leased')").fetchone()[0]
    if unsent:
        n += db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
    return n


# -- the job ----------------------------------------------------------------------------------------


class Retention:
    """The periodic job; ``start()`` once, ``stop()`` at the end (before the writer stops)."""

    name = "retention"

    def __init__(
        self,
        settings: StoreSettings,
        writer: StoreWriter,
        backpressure: Backpressure,
        *,
        count_unanalyzed: bool = True,
        count_unsent: bool = True,
    ) -> None:
        self.settings = settings
        self.path = Path(settings.path)
        self.writer = writer
        self.backpressure = backpressure
        self.count_unanalyzed = count_unanalyzed
        self.count_unsent = count_unsent
        self.cap = settings.max_bytes
        self.wal_budget = max(int(self.cap * WAL_FRACTION), MIN_WAL_BUDGET) if self.cap else 0
        # Records per eviction transaction. A record with its result and message takes about 1.5 KB,
        # and deleting it touches pages all over the indexes, which the write-ahead log (counted
        # against the cap) holds until the next checkpoint: so one transaction frees a few percent
        # of the cap at most, and never holds the writer for long.
        self.chunk = max(100, min(5000, self.cap // 20_000)) if self.cap else 0
        self._db: sqlite_utils.Database | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self.checks = 0
        self.failures = 0
        self.last: Size | None = None
        self.last_backlog = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.open()
        self._thread.start()

    def open(self) -> None:
        """Ready for ``check()`` (``start()`` does this, then checks periodically in its thread)."""
        self._db = connect(self.path)
        self._db.execute(f"PRAGMA busy_timeout = {CHECKPOINT_BUSY_MS}")
        self.writer.call(self._prepare).result()

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread and clear the paused gauges (a stopped daemon holds nothing)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.writer.is_alive() and self._db is not None:
            try:
                self.writer.call(self._clear_gauges).result(timeout=30)
            except Exception as exc:
                log.warning("could not clear the paused state: %s", exc)
        if self._db is not None:
            self._db.close()
            self._db = None

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _prepare(self, db: sqlite_utils.Database) -> None:
        """Writer thread: keep the write-ahead log small against the cap; no paused state left over."""
        # Debian builds SQLite with SECURE_DELETE: every page freed by an eviction would be written
        # again, full of zeros, through the log (twice the writes on an SD card, and a log as large
        # as what was evicted). FAST zeroes deleted content only in pages that are written anyway.
        db.execute("PRAGMA secure_delete = FAST")
        if self.cap:
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            # SQLite's defaults (checkpoint at 1000 pages, never truncate) leave a 4 MB log: nothing
            # under gigabytes, most of a small cap. Checkpoint at half the budget and truncate to half
            # of it, so a transaction on top still leaves the log within the budget.
            pages = max(8, min(1000, self.wal_budget // 2 // page_size))
            db.execute(f"PRAGMA wal_autocheckpoint = {pages}")
            db.execute(f"PRAGMA journal_size_limit = {self.wal_budget // 2}")
        self._clear_gauges(db)

    @staticmethod
    def _clear_gauges(db: sqlite_utils.Database) -> None:
        db.conn.executemany(SET_GAUGE, [(PAUSED_GAUGE + r, 0) for r in Backpressure.REASONS])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except WriterStopped:
                return
            except Exception:
                # Not fatal: the daemon keeps ingesting; the next check tries again.
                self.failures += 1
                log.exception("retention check failed")
            self._stop.wait(self.settings.check_interval_s)

    # -- one check ------------------------------------------------------------------------------
    def check(self) -> None:
        assert self._db is not None, "start() first"
        self.checks += 1
        if self.cap:
            self._enforce_cap()
        self._check_backlog()

    def _enforce_cap(self) -> None:
        size = self._measure()
        full = Backpressure.STORAGE_FULL in self.backpressure.reasons
        target = int(self.cap * EVICT_TO)
        if size.used_bytes <= self.cap * EVICT_AT and not (full and size.used_bytes > target):
            if full:
                self._set_paused(Backpressure.STORAGE_FULL, False)
            return
        evicted: dict[str, int] = {}
        orphans = True  # look for delivered records without an outbox row until a step finds none
        while size.used_bytes > target and not self._stop.is_set():
            # The write-ahead log is checkpointed after each transaction, so the pages are what counts.
            counts, orphans = self.writer.call(
                lambda db: evict(db, max_records=self.chunk, until_bytes=target, orphans=orphans)
            ).result()
            if not counts:
                break
            for k, v in counts.items():
                evicted[k] = evicted.get(k, 0) + v
            size = self._measure()
        if evicted:
            if self._incremental_vacuum():
                size = self._measure()
            log.info(
                "database near its cap of %d bytes: evicted %s; now %d bytes in use",
                self.cap, ", ".join(f"{k} {v}" for k, v in sorted(evicted.items())), size.used_bytes,
            )
        if size.used_bytes > self.cap and not full:
            log.warning(
                "database still over its cap (%d of %d bytes) with nothing left that may be evicted"
                " (incident reports, records not analyzed yet): refusing new input until there is room",
                size.used_bytes, self.cap,
            )
            self._set_paused(Backpressure.STORAGE_FULL, True, counter="refused.storage_full")
        elif full and size.used_bytes <= target:
            log.info("database back under its cap (%d bytes in use); reading input again", size.used_bytes)
            self._set_paused(Backpressure.STORAGE_FULL, False)

    def _measure(self) -> Size:
        assert self._db is not None
        size = measure(self._db, self.path)
        if size.wal_bytes > self.wal_budget // 2:
            # Past the whole budget, wait longer for readers and the writer to let go: a log that
            # keeps growing counts against the cap as much as the data does.
            self._checkpoint(patient=size.wal_bytes > self.wal_budget)
            size = measure(self._db, self.path)
        self.last = size
        return size

    def _checkpoint(self, patient: bool = False) -> None:
        """Copy the log into the database and truncate it. Gives up quietly while readers hold it."""
        assert self._db is not None
        if patient:
            self._db.execute(f"PRAGMA busy_timeout = {PATIENT_CHECKPOINT_BUSY_MS}")
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except Exception as exc:  # SQLITE_BUSY: a reader or the writer; the next check tries again
            log.debug("checkpoint skipped: %s", exc)
        finally:
            if patient:
                self._db.execute(f"PRAGMA busy_timeout = {CHECKPOINT_BUSY_MS}")

    def _incremental_vacuum(self) -> bool:
        """Give freed pages back to the file system, in databases that have incremental auto_vacuum."""
        assert self._db is not None
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return False
        self.writer.call(_incremental_vacuum).result()
        return True

    def _check_backlog(self) -> None:
        assert self._db is not None
        n = backlog(self._db, unanalyzed=self.count_unanalyzed, unsent=self.count_unsent)
        self.last_backlog = n
        held = Backpressure.BACKLOG in self.backpressure.reasons
        if not held and n > self.settings.high_water:
            log.warning(
                "%d rows wait for analysis or upload (high water %d): pausing the sources", n, self.settings.high_water
            )
            self._set_paused(Backpressure.BACKLOG, True, counter="backpressure.paused")
        elif held and n < self.settings.low_water:
            log.info("%d rows wait (low water %d): resuming the sources", n, self.settings.low_water)
            self._set_paused(Backpressure.BACKLOG, False)

    def _set_paused(self, reason: str, paused: bool, counter: str | None = None) -> None:
        """Record the state (and count an engagement) first, then hold or release the sources."""

        def store(db: sqlite_utils.Database) -> None:
            db.execute(SET_GAUGE, (PAUSED_GAUGE + reason, int(paused)))
            if counter:
                db.execute(ADD_COUNTER, (counter, 1))

        self.writer.call(store).result()
        if paused:
            self.backpressure.hold(reason)
        else:
            self.backpressure.release(reason)


def _incremental_vacuum(db: sqlite_utils.Database) -> None:
    # SQLite frees one page per step of this pragma, and Python's sqlite3 steps a statement that
    # has no result columns only once: so once per free page.
    for _ in range(db.execute("PRAGMA freelist_count").fetchone()[0]):
        db.execute("PRAGMA incremental_vacuum")


def storage_status(db: sqlite_utils.Database, path: Path | str, max_bytes: int | None) -> dict:
    """The ``storage`` section of ``edged status``."""
    counters = dict(
        db.execute(
            "SELECT name, value FROM counters WHERE name LIKE 'evicted.%' OR name LIKE 'refused.%'"
            " OR name LIKE 'state.paused.%' OR name = 'backpressure.paused'"
        ).fetchall()
    )
    reasons = [r for r in Backpressure.REASONS if counters.get(PAUSED_GAUGE + r)]
    return {
        "max_bytes": max_bytes,
        "used_bytes": measure(db, path).used_bytes,
        "evicted": {k.removeprefix("evicted."): v for k, v in sorted(counters.items()) if k.startswith("evicted.")},
        "refused": {k.removeprefix("refused."): v for k, v in sorted(counters.items()) if k.startswith("refused.")},
        "paused": bool(reasons),
        "paused_reasons": reasons,
        "backpressure_engaged": counters.get("backpressure.paused", 0),
    }
