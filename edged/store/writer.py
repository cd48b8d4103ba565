"""The one thread that writes to the database.

Every source hands its work to ``StoreWriter.submit``. The writer takes whatever has queued up,
applies it in one transaction and commits, and only then runs each job's ``on_commit`` callback:
that is where a source acknowledges its input (an MQTT ack) or advances in-memory state, so nothing
is acknowledged before it is durable. One writer means no lock contention inside the daemon and
large, cheap batched commits.

The queue is bounded in rows: a source that produces faster than the disk accepts blocks in
``submit`` (the file source simply stops reading) instead of growing memory.
"""

from __future__ import annotations

import collections
import errno
import logging
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Callable, Sequence

import sqlite_utils

from edged.store.database import sqlite_error_in, write_transaction
from edged.store.records import (
    ADD_COUNTER,
    INSERT_RECORD,
    INSERT_RECORDS_MANY,
    INSERT_REJECTED,
    RECORD_COLUMNS,
    RECORDS_PER_INSERT,
    UPSERT_POSITION,
    FilePosition,
    NewRecord,
    Rejected,
)

log = logging.getLogger(__name__)

# What an fn job counts for in a transaction's row budget unless it says: analyzer batches and
# eviction chunks write tens to thousands of rows, so they are not piled into one transaction.
CALL_ROWS = 100


def insert_records(conn: sqlite3.Connection, records: Sequence[Sequence[Any]]) -> int:
    """INSERT OR IGNORE the rows, RECORDS_PER_INSERT per statement; returns how many were new.

    The same rows in the same order as one INSERT_RECORD per row, so ids, rowids and the
    duplicate count are the same; only the statement overhead is shared.
    """
    n = len(records)
    whole = n - n % RECORDS_PER_INSERT
    inserted = 0
    if whole and set(map(len, records)) == {RECORD_COLUMNS}:  # a malformed row fails below, as before
        flat = list(chain.from_iterable(records[:whole]))
        step = RECORDS_PER_INSERT * RECORD_COLUMNS
        params = [flat[i : i + step] for i in range(0, len(flat), step)]
        inserted = conn.executemany(INSERT_RECORDS_MANY, params).rowcount
        records = records[whole:]
    if records:
        inserted += conn.executemany(INSERT_RECORD, records).rowcount
    return inserted


@dataclass
class BatchResult:
    inserted: int
    duplicates: int


@dataclass
class WriteBatch:
    """Records, file positions, rejections and counter increments stored atomically together.

    ``source_type`` names the counter that duplicates are added to (``duplicates.<source_type>``):
    a record whose record_id is already stored is not ingested again, only counted.
    """

    records: list[NewRecord] = field(default_factory=list)
    positions: list[FilePosition] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    source_type: str = "other"
    on_commit: Callable[[BatchResult], None] | None = None

    @property
    def rows(self) -> int:
        return len(self.records) + len(self.positions) + len(self.rejected) + 1

    def apply(self, db: sqlite_utils.Database) -> BatchResult:
        conn = db.conn
        inserted = 0
        if self.records:
            inserted = insert_records(conn, self.records)
        if self.positions:
            conn.executemany(UPSERT_POSITION, self.positions)
        if self.rejected:
            conn.executemany(INSERT_REJECTED, self.rejected)
        counters = dict(self.counters)
        duplicates = len(self.records) - inserted
        if duplicates:
            key = f"duplicates.{self.source_type}"
            counters[key] = counters.get(key, 0) + duplicates
        if counters:
            conn.executemany(ADD_COUNTER, list(counters.items()))
        return BatchResult(inserted=inserted, duplicates=duplicates)


@dataclass
class _Job:
    batch: WriteBatch | None
    fn: Callable[[sqlite_utils.Database], Any] | None
    future: Future = field(default_factory=Future)
    weight: int = 1  # for fn jobs: about how many rows they write

    @property
    def rows(self) -> int:
        return self.batch.rows if self.batch is not None else self.weight

    def apply(self, db: sqlite_utils.Database) -> Any:
        return self.batch.apply(db) if self.batch is not None else self.fn(db)


class WriterStopped(RuntimeError):
    pass


STORAGE_RETRY_MIN_S = 0.5
STORAGE_RETRY_MAX_S = 5.0
# SQLite's primary result codes (sqlite3.h) for a disk that is full, failing, read-only or locked by
# another process: the same transaction can work later, so it is retried rather than failed.
_STORAGE_CODES = {5: "busy", 6: "locked", 8: "read-only", 10: "I/O error", 13: "disk full", 14: "cannot open"}
_STORAGE_WORDS = ("disk is full", "disk i/o error", "readonly database", "database is locked", "unable to open")


def is_storage_error(exc: BaseException) -> bool:
    """Whether a failed write was the disk's fault (full, I/O error, read-only, locked), not the job's."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT)
    return isinstance(exc, sqlite3.OperationalError) and sqlite_error_in(exc, _STORAGE_CODES, _STORAGE_WORDS)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class StoreWriter:
    """Owns the only write connection of the daemon. Start with ``start()``, end with ``stop()``."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        *,
        max_batch_rows: int = 20_000,
        max_queued_rows: int = 100_000,
    ) -> None:
        self.db = db
        self.max_batch_rows = max_batch_rows
        self.max_queued_rows = max_queued_rows
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        # Figures for status and metrics; written only by the writer thread.
        self.commits = 0
        self.records_inserted = 0
        self.duplicates = 0
        self.failed_jobs = 0
        self.last_commit_at: float | None = None
        # Set while the disk is full or failing (see _retry_until_stored); for /healthz, the page, STATUS=.
        self.storage_error: str | None = None
        self.storage_error_since: float | None = None
        self.storage_pauses = 0
        self.storage_retries = 0
        # Called from the writer thread with True when a write fails for the disk, False when it works again.
        self.on_storage_error: Callable[[bool], None] | None = None

    # -- producers -------------------------------------------------------------------------
    def submit(self, batch: WriteBatch, *, wait_for_room: bool = True, timeout: float | None = None) -> Future:
        """Queue a batch; the returned future resolves to a BatchResult after the commit.

        With ``wait_for_room`` the call blocks while the queue is over its bound (backpressure).
        MQTT passes False: its network thread must keep answering pings; it bounds its own
        uncommitted messages instead (it stops reading the socket, see sources.mqtt.source).
        """
        return self._put(_Job(batch=batch, fn=None), wait_for_room, timeout)

    def call(self, fn: Callable[[sqlite_utils.Database], Any], rows: int = CALL_ROWS) -> Future:
        """Run ``fn(db)`` inside the writer's next transaction; the future holds its return value.

        ``rows`` says about how many rows ``fn`` writes: a transaction takes jobs up to
        ``max_batch_rows``, which keeps its write-ahead log (counted against the size cap) small.
        """
        return self._put(_Job(batch=None, fn=fn, weight=max(1, rows)), True, None)

    def _put(self, job: _Job, wait_for_room: bool, timeout: float | None) -> Future:
        with self._cond:
            if wait_for_room:
                deadline = None if timeout is None else time.monotonic() + timeout
                while self._queued_rows >= self.max_queued_rows and not self._stopping:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError("store writer queue is full")
                    self._cond.wait(remaining)
            if self._stopping and not self._thread.is_alive():
                raise WriterStopped("store writer has stopped")
            self._queue.append(job)
            self._queued_rows += job.rows
            self._cond.notify_all()
        return job.future

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Commit everything already queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the writer thread -------------------------------------------------------------------
    def _take(self) -> list[_Job]:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            jobs: list[_Job] = []
            rows = 0
            while self._queue and (not jobs or rows + self._queue[0].rows <= self.max_batch_rows):
                job = self._queue.popleft()
                jobs.append(job)
                rows += job.rows
            self._queued_rows -= rows
            self._cond.notify_all()
            return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if not jobs:
                return  # stopping and drained
            try:
                with write_transaction(self.db):
                    results = [job.apply(self.db) for job in jobs]
            except Exception as exc:
                if is_storage_error(exc):
                    self._retry_until_stored(jobs, exc)
                    continue
                log.exception("batch of %d jobs failed; retrying them one by one", len(jobs))
                self._apply_one_by_one(jobs)
                continue
            self._committed(jobs, results)

    def _retry_until_stored(self, jobs: list[_Job], exc: Exception) -> None:
        """The disk is full or failing: keep the jobs, pause, and try the same transaction again.

        Nothing is acknowledged meanwhile (acks run after a commit), the sources are held through
        ``on_storage_error``, and the daemon stays up: it resumes by itself once a write works. At
        stop the jobs fail instead; their inputs were never acknowledged, so they come again."""
        self._storage_paused(exc)
        delay = STORAGE_RETRY_MIN_S
        while True:
            with self._cond:
                if self._stopping:
                    break
                self._cond.wait(delay)
                if self._stopping:
                    break
            try:
                with write_transaction(self.db):
                    results = [job.apply(self.db) for job in jobs]
            except Exception as again:
                if is_storage_error(again):
                    self.storage_retries += 1
                    self.storage_error = _describe(again)
                    delay = min(delay * 2, STORAGE_RETRY_MAX_S)
                    continue
                self._storage_resumed()
                log.exception("batch of %d jobs failed; retrying them one by one", len(jobs))
                self._apply_one_by_one(jobs)
                return
            self._storage_resumed()
            self._committed(jobs, results)
            return
        log.error("stopping while the database cannot be written: %d jobs not stored (their inputs were not"
                  " acknowledged and come again)", len(jobs))
        for job in jobs:
            self.failed_jobs += 1
            job.future.set_exception(WriterStopped(f"not stored: {self.storage_error}"))

    def _storage_paused(self, exc: Exception) -> None:
        self.storage_error = _describe(exc)
        self.storage_error_since = time.time()
        self.storage_pauses += 1
        log.error("cannot write the database (%s): ingest is paused and resumes by itself when writing works",
                  self.storage_error)
        self._tell_storage(True)

    def _storage_resumed(self) -> None:
        log.warning("the database can be written again after %.0f s; ingest resumes",
                    time.time() - (self.storage_error_since or time.time()))
        self.storage_error = None
        self.storage_error_since = None
        self._tell_storage(False)

    def _tell_storage(self, paused: bool) -> None:
        if self.on_storage_error is not None:
            try:
                self.on_storage_error(paused)
            except Exception:
                log.exception("storage error listener failed")

    def _apply_one_by_one(self, jobs: list[_Job]) -> None:
        """Isolate the job that broke a batch so the others still land."""
        for job in jobs:
            try:
                with write_transaction(self.db):
                    result = job.apply(self.db)
            except Exception as exc:
                self.failed_jobs += 1
                log.error("write job failed: %s", exc)
                job.future.set_exception(exc)
            else:
                self._committed([job], [result])

    def _committed(self, jobs: list[_Job], results: list[Any]) -> None:
        self.commits += 1
        self.last_commit_at = time.time()
        for job, result in zip(jobs, results):
            if isinstance(result, BatchResult):
                self.records_inserted += result.inserted
                self.duplicates += result.duplicates
                if job.batch is not None and job.batch.on_commit is not None:
                    try:
                        job.batch.on_commit(result)
                    except Exception:
                        log.exception("on_commit callback failed")
            job.future.set_result(result)
