"""The log-directory source: follows files named by globs into the inbox, losing nothing.

One thread. Watchdog (inotify) wakes it when something changes; a periodic rescan is the safety net
for missed events (NFS, SMB shares, overflowing inotify queues). Every batch of records goes to the
store writer together with the file positions it reaches, in one transaction, so a position never
gets ahead of the stored lines. After a restart each known file is found again by device + inode +
fingerprint, also when rotation renamed it, and resumes at its stored position.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

import sqlite_utils
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from edged.config.settings import LogsSettings
from edged.sources.files.discovery import expand, find_inode, is_rotation_of, watch_root
from edged.sources.files.identity import Fingerprint, check_fingerprint, looks_binary, mark_holds, take_fingerprint
from edged.sources.files.tailer import ACTIVE, DONE, DRAINING, SKIPPED, Tailer, new_file_key
from edged.store.records import SAMPLE_BYTES, FilePosition, Rejected
from edged.store.writer import StoreWriter, WriteBatch

if TYPE_CHECKING:
    from edged.store.retention import Backpressure

log = logging.getLogger(__name__)

IDLE_TICK_S = 0.2  # how often pending timeouts are checked while something waits
PAUSED_TICK_S = 0.5  # how often a paused source looks whether it should stop
END_ALIGN_BYTES = 65536  # how far back "start at end" looks for the last newline
POSITION_COLUMNS = ", ".join(FilePosition._fields)
_DEFER = object()


class _WakeOnChange(FileSystemEventHandler):
    def __init__(self, source: "FileSource") -> None:
        self.source = source

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("created", "moved", "deleted"):
            self.source.request_scan()
        else:
            self.source.wake()


class FileSource:
    name = "files"

    def __init__(
        self,
        settings: LogsSettings,
        writer: StoreWriter,
        reader: sqlite_utils.Database,
        backpressure: Backpressure | None = None,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.reader = reader  # a read connection, for restoring positions
        self.batch_max_rows = writer.max_batch_rows
        self._multiline = re.compile(settings.multiline_start) if settings.multiline_start else None
        self._machine_re = re.compile(settings.machine_pattern)
        self._tailers: dict[str, Tailer] = {}
        self._by_inode: dict[tuple[int, int], Tailer] = {}
        self._skipped: set[tuple[int, int]] = set()
        # Files read to their end: inode -> (size, mtime) then, so a rescan does not reopen them.
        self._finished: dict[tuple[int, int], tuple[int, int]] = {}
        self._watched: set[str] = set()
        self._unreadable: set[tuple[str, int | None]] = set()  # (path, errno) already warned about
        self._observer: Observer | None = None
        self._wake = threading.Event()
        self._scan_due = True
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file-source", daemon=True)
        self._inflight: collections.deque[Future] = collections.deque()
        # State changes found outside a read (rotation, vanished files) wait for the next batch.
        self._positions: dict[str, FilePosition] = {}
        self._rejected: list[Rejected] = []
        self._counters: collections.Counter[str] = collections.Counter()
        self.first_run = False
        self.error: BaseException | None = None
        self.records_read = 0
        # Held by the retention job (backlog over high water, or the database full): read nothing.
        self.backpressure = backpressure
        if backpressure is not None:
            backpressure.on_release(self.wake)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading. Lines read but not yet stored are simply read again next time."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def request_scan(self) -> None:
        self._scan_due = True
        self._wake.set()

    @property
    def files_followed(self) -> int:
        return len(self._tailers)

    def _run(self) -> None:
        try:
            self._restore()
            next_scan = 0.0
            while not self._stopping.is_set():
                self._check_inflight()
                if self.backpressure is not None and self.backpressure.paused:
                    # Unread lines simply wait in their files; the store's positions stay where they are.
                    self.backpressure.wait_released(PAUSED_TICK_S)
                    continue
                now = time.monotonic()
                if self._scan_due or now >= next_scan:
                    self._scan_due = False
                    self._watch()
                    self._scan()
                    next_scan = now + self.settings.rescan_interval_s
                if self._poll():
                    continue  # more data is waiting: read on without sleeping
                timeout = next_scan - time.monotonic()
                if any(t.assembler.has_pending or t.state == DRAINING for t in self._tailers.values()):
                    timeout = min(timeout, IDLE_TICK_S)
                self._wake.wait(max(0.0, timeout))
                self._wake.clear()
        except BaseException as exc:
            self.error = exc
            log.exception("file source stopped by an error")
            raise
        finally:
            if self._observer is not None:
                self._observer.stop()
            for t in self._tailers.values():
                t.close()

    # -- restoring after a restart -------------------------------------------------------------
    def _restore(self) -> None:
        for t in self._tailers.values():
            t.close()
        self._tailers.clear()
        self._by_inode.clear()
        self._skipped.clear()
        self._finished.clear()
        self.first_run = self.reader.execute("SELECT count(*) FROM file_positions").fetchone()[0] == 0
        rows = self.reader.execute(
            f"SELECT {POSITION_COLUMNS} FROM file_positions WHERE state IN (?, ?, ?)",
            (ACTIVE, DRAINING, SKIPPED),
        ).fetchall()
        for row in map(FilePosition._make, rows):
            if row.state == SKIPPED:
                self._skipped.add((row.dev, row.ino))
                continue
            found = self._locate(row)
            if found is None:
                log.warning("%s: file vanished while edged was stopped; it was read up to byte %d", row.path, row.offset)
                self._positions[row.file_key] = row._replace(state=DONE, reason="vanished", updated_at=time.time())
                self._counters["files.vanished"] += 1
                continue
            fd, path = found
            tailer = self._tailer(
                fd=fd,
                path=path,
                source=row.source,
                dev=row.dev,
                ino=row.ino,
                fingerprint=Fingerprint(row.fp_len, row.fp_hash),
                offset=row.offset,
                file_key=row.file_key,
                state=ACTIVE if path == row.path and row.state == ACTIVE else DRAINING,
                first_seen=row.first_seen,
                mark=row.mark,  # the first poll checks it: a file rewritten while edged was down starts over
            )
            tailer.saved_offset = row.offset
            log.info("%s: resuming at byte %d", path, row.offset)

    def _locate(self, row: FilePosition) -> tuple[int, str] | None:
        """Open the file a stored position belongs to: at its path, or renamed in its directory."""
        try:
            fd = os.open(row.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (row.dev, row.ino):
                return fd, row.path  # a rewrite in place is caught by the first poll (fingerprint)
            os.close(fd)
        except OSError:
            pass
        moved = find_inode(os.path.dirname(row.path), row.dev, row.ino)
        if moved is None:
            return None
        try:
            fd = os.open(moved, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        st = os.fstat(fd)
        if check_fingerprint(fd, st.st_size, Fingerprint(row.fp_len, row.fp_hash)) is None:
            os.close(fd)
            return None  # the inode was reused by another file
        return fd, moved

    # -- discovery -------------------------------------------------------------------------------
    def _watch(self) -> None:
        """(Re)schedule watchdog on the patterns' directories; ones that appear later are added then."""
        if self._observer is None:
            self._observer = Observer()
            self._observer.daemon = True
            self._observer.start()
        for pattern in self.settings.paths:
            root, recursive = watch_root(pattern)
            if root in self._watched or not os.path.isdir(root):
                continue
            try:
                self._observer.schedule(_WakeOnChange(self), root, recursive=recursive)
                self._watched.add(root)
            except OSError as exc:
                log.warning("cannot watch %s (%s); relying on the periodic rescan", root, exc)

    def _scan(self) -> None:
        at_end = self.first_run and self.settings.start_at == "end"
        for path, stream in expand(self.settings.paths, self.settings.follow_rotated):
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            known = self._by_inode.get(key)
            if known is not None:
                known.path = path  # rotation renamed it to a name the patterns also match
                if known.state == ACTIVE and f"file:{path}" != known.source:
                    known.state, known.reason = DRAINING, "rotated"
                continue
            if key in self._skipped or self._finished.get(key) == (st.st_size, st.st_mtime_ns) or st.st_size == 0:
                continue  # not text, already read to its end, or nothing to fingerprint yet
            self._open_new(path, stream, at_end)
        self.first_run = False
        for t in list(self._tailers.values()):
            if t.state == ACTIVE:
                self._check_rotated(t)

    def _check_rotated(self, t: Tailer) -> None:
        try:
            st = os.stat(t.path)
            same = (st.st_dev, st.st_ino) == (t.dev, t.ino)
        except OSError:
            same = False
        if same:
            return
        # Rotated away or deleted: the open descriptor still reads it; finish it, then let go.
        t.state = DRAINING
        t.reason = "rotated"
        moved = find_inode(os.path.dirname(t.path), t.dev, t.ino)
        if moved is not None:
            t.path = moved
        else:
            t.reason = "deleted"
        log.info("%s: %s; reading it to its end", t.source, t.reason)

    def _open_new(self, path: str, stream: str, at_end: bool) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO put there must not block us
        except OSError as exc:
            # Said (and counted) once per file and error: every scan and file event retries it.
            seen = (path, exc.errno)
            if seen not in self._unreadable:
                self._unreadable.add(seen)
                self._counters["files.unreadable"] += 1
                log.warning("%s: cannot open (%s); retrying at each scan, silently", path, exc.strerror)
            return
        if self._unreadable:
            self._unreadable = {seen for seen in self._unreadable if seen[0] != path}
        st = os.fstat(fd)
        fingerprint = take_fingerprint(fd, st.st_size)
        source = f"file:{stream}"
        if looks_binary(fd):
            self._skip_binary(fd, path, source, st, fingerprint)
            return
        prior = self._prior_instance(fd, st, path)
        if prior is _DEFER:
            os.close(fd)
            return
        if isinstance(prior, FilePosition):
            # A file read before: renamed while edged was down, or a copytruncate copy of it.
            # It continues that instance, under its key, so overlapping lines keep their ids.
            self._tailer(
                fd=fd,
                path=path,
                source=prior.source,
                dev=st.st_dev,
                ino=st.st_ino,
                fingerprint=fingerprint,
                offset=prior.offset,
                file_key=prior.file_key,
                state=ACTIVE if prior.source == f"file:{path}" else DRAINING,
                first_seen=prior.first_seen,
                mark=prior.mark,
            )
            log.info("%s: continues %s at byte %d", path, prior.path, prior.offset)
            return
        offset = self._end_offset(fd, st.st_size) if at_end else 0
        tailer = self._tailer(
            fd=fd,
            path=path,
            source=source,
            dev=st.st_dev,
            ino=st.st_ino,
            fingerprint=fingerprint,
            offset=offset,
            file_key=new_file_key(),
            state=ACTIVE if stream == path else DRAINING,
            first_seen=time.time(),
        )
        if at_end:
            tailer.saved_offset = -1  # store the start position now, or a restart would skip ahead again
        log.info("%s: following from byte %d", path, offset)

    def _prior_instance(self, fd: int, st: os.stat_result, path: str) -> FilePosition | object | None:
        """The stored instance an unknown file continues, _DEFER for a copy still being made, or None.

        Only rotated names of the same stream qualify, so two machines' logs that happen to begin
        with the same bytes are never mistaken for each other.
        """
        for t in self._tailers.values():
            if is_rotation_of(path, t.source.removeprefix("file:")) and check_fingerprint(fd, st.st_size, t.fingerprint):
                # Same beginning as a file we are still reading: a copytruncate copy whose
                # truncation we have not seen yet. Decide at the next scan.
                return _DEFER
        self._settle()  # the instances we just finished must be in the store before we look
        directory, name = os.path.split(path)
        streams = [f"file:{path}"] + [
            f"file:{os.path.join(directory, name[:cut])}" for cut in range(len(name)) if name[cut] in ".-" and cut
        ]
        rows = self.reader.execute(
            f"SELECT {POSITION_COLUMNS} FROM file_positions WHERE state = ? AND source IN"
            f" ({', '.join('?' * len(streams))}) ORDER BY updated_at DESC",
            (DONE, *streams),
        ).fetchall()
        for row in map(FilePosition._make, rows):
            same_inode = (row.dev, row.ino) == (st.st_dev, st.st_ino)
            if (same_inode or row.reason == "truncated") and check_fingerprint(
                fd, st.st_size, Fingerprint(row.fp_len, row.fp_hash)
            ) and mark_holds(fd, row.offset, row.mark):
                return row
        return None

    def _skip_binary(self, fd: int, path: str, source: str, st: os.stat_result, fp: Fingerprint) -> None:
        sample = os.pread(fd, SAMPLE_BYTES, 0)
        os.close(fd)
        now = time.time()
        key = new_file_key()
        self._skipped.add((st.st_dev, st.st_ino))
        self._positions[key] = FilePosition(
            key, source, path, st.st_dev, st.st_ino, fp.length, fp.digest, 0, SKIPPED, "binary file", now, now
        )
        self._rejected.append(
            Rejected(f"file:{st.st_dev}:{st.st_ino}:{fp.digest}", source, "binary file", path, st.st_size, sample, now)
        )
        self._counters["files.skipped_binary"] += 1
        log.warning("%s: not a text file (NUL bytes); skipped", path)

    @staticmethod
    def _end_offset(fd: int, size: int) -> int:
        """Just after the last complete line, so "start at end" never starts mid-line."""
        start = max(0, size - END_ALIGN_BYTES)
        tail = os.pread(fd, size - start, start)
        nl = tail.rfind(b"\n")
        return start + nl + 1 if nl >= 0 else start

    def _tailer(self, **kwargs) -> Tailer:
        match = self._machine_re.search(kwargs["source"].removeprefix("file:"))
        t = Tailer(
            machine=match.groupdict().get("machine") if match else None,
            max_bytes=self.settings.max_line_bytes,
            multiline_start=self._multiline,
            **kwargs,
        )
        self._tailers[t.file_key] = t
        self._by_inode[(t.dev, t.ino)] = t
        return t

    # -- reading ---------------------------------------------------------------------------------
    def _poll(self) -> bool:
        """Read what is new in every file and hand it to the writer. True if more is waiting."""
        s = self.settings
        records: list[tuple] = []
        more = False
        now = time.monotonic()
        received_at = time.time()
        for t in list(self._tailers.values()):
            why = t.still_same_file()
            if why is not None:
                records += self._restart_instance(t, why, received_at)
                t = self._by_inode[(t.dev, t.ino)]
            pieces, has_more = t.read_chunk(s.read_chunk_bytes)
            more |= has_more
            pieces += t.flush_idle(now, s.partial_line_timeout_s, s.multiline_timeout_s)
            if t.state == DRAINING and not has_more and now - t.last_data_at >= s.rotate_wait_s:
                pieces += t.assembler.flush_all()
                t.state = DONE
            if pieces:
                records += t.records(pieces, received_at)
                if t.nul_records:
                    self._counters["files.nul_replaced"] += t.nul_records
                    t.nul_records = 0
            if t.state == DONE or t.offset != t.saved_offset:
                self._positions[t.file_key] = t.position()
                t.saved_offset = t.offset
            if t.state == DONE:
                self._forget(t)
            if len(records) >= self.batch_max_rows:
                self._submit(records)
                records = []
        self._submit(records)
        return more

    def _restart_instance(self, t: Tailer, why: str, received_at: float) -> list[tuple]:
        """The file was truncated (or rewritten from the start): finish this instance, begin a new one."""
        records = t.records(t.assembler.flush_all(), received_at)
        was = t.state
        t.state, t.reason = DONE, why
        self._positions[t.file_key] = t.position()
        self._counters[f"files.{why}"] += 1
        self._forget(t, close=False)
        st = os.fstat(t.fd)
        log.warning("%s: %s at byte %d; reading it again from the start", t.path, why, t.assembler.read_offset)
        self._tailer(
            fd=t.fd,
            path=t.path,
            source=t.source,
            dev=t.dev,
            ino=t.ino,
            fingerprint=take_fingerprint(t.fd, st.st_size),
            offset=0,
            file_key=new_file_key(),
            state=was,
            first_seen=time.time(),
        ).saved_offset = -1  # store the new instance even before it has lines
        return records

    def _forget(self, t: Tailer, close: bool = True) -> None:
        if t.state == DONE and close:
            st = os.fstat(t.fd)
            self._finished[(t.dev, t.ino)] = (st.st_size, st.st_mtime_ns)
        self._tailers.pop(t.file_key, None)
        if self._by_inode.get((t.dev, t.ino)) is t:
            del self._by_inode[(t.dev, t.ino)]
        if close:
            t.close()

    def _submit(self, records: list[tuple]) -> None:
        if not (records or self._positions or self._rejected or self._counters):
            return
        batch = WriteBatch(
            records=records,
            positions=list(self._positions.values()),
            rejected=self._rejected,
            counters=dict(self._counters),
            source_type="file",
        )
        self._positions, self._rejected = {}, []
        self._counters.clear()
        self.records_read += len(records)
        # Blocks while the writer is behind: the backpressure that keeps memory bounded.
        self._inflight.append(self.writer.submit(batch))

    def _settle(self) -> None:
        """Hand over pending state and wait until the writer has committed all our batches."""
        self._submit([])
        for future in list(self._inflight):
            future.exception()  # waits; a failure is handled by the next _check_inflight

    def _check_inflight(self) -> None:
        """A batch that failed to commit means our positions are ahead of the store: start over from it."""
        failed = False
        while self._inflight and self._inflight[0].done():
            if self._inflight.popleft().exception() is not None:
                failed = True
        if failed:
            log.error("a batch of file lines was not stored; re-reading from the stored positions")
            for f in list(self._inflight):
                f.exception()  # wait for the rest so the restore sees a settled store
            self._inflight.clear()
            self._restore()
