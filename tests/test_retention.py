"""Bounded resources: the size cap's eviction order, refusal, backpressure, and the daemon under a small cap."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edged.config.settings import LogsSettings, MqttSettings, StoreSettings, UpstreamSettings
from edged.publish.outbox import OutboxBuilder, insert_rows
from edged.sources.files.source import FileSource
from edged.sources.mqtt import MqttSource
from edged.store import inbox
from edged.store.database import connect, open_database
from edged.store.records import NewRecord
from edged.store.retention import EVICT_TO, Backpressure, Retention
from edged.store.status import collect_status
from edged.store.writer import StoreWriter, WriteBatch
from tests.support.daemon import REPO, Daemon, query, write_config
from tests.support.wait import wait_for

MiB = 1 << 20


# -- helpers --------------------------------------------------------------------------------------


def rec(i: int, kind: str = "log", size: int = 400) -> NewRecord:
    text = f"{kind} {i:06d} " + "x" * size
    return NewRecord(f"{kind}:{i}", f"test:{kind}", "m1", kind, text, "", None, 1000.0 + i, 0)


def analyze(db, limit: int = 10_000) -> int:
    """What the analyzer stores for each claimed record: result + done + outbox row (one transaction)."""
    claimed = inbox.claim_batch(db, owner="t", limit=limit, lease_s=60, max_attempts=3)
    results = [
        inbox.ResultRow(c.record_id, None, "normal", 0, 0.9, None, None, False, "model", "fake", None, "fake", "v1", 1, 1.0)
        for c in claimed
    ]
    inbox.complete(db, results)
    builder = OutboxBuilder(UpstreamSettings(node="n1", site="s1"))
    by_id = {c.record_id: c for c in claimed}
    insert_rows(db, [builder.for_result(r, vars(by_id[r.record_id])) for r in results])
    return len(claimed)


def counters(path: Path) -> dict[str, int]:
    return dict(query(path, "SELECT name, value FROM counters"))


def checkpoint(path: Path) -> None:
    """Empty the write-ahead log, so that a size measured now is the data's, not the log's."""
    conn = sqlite3.connect(path, timeout=10)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def used_parts(path: Path) -> tuple[int, int]:
    """(bytes of pages in use, bytes of the write-ahead log): what the cap is about."""
    conn = sqlite3.connect(path, timeout=10)
    try:
        page_size, pages, free = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count", "freelist_count"))
    finally:
        conn.close()
    wal = Path(f"{path}-wal")
    return (pages - free) * page_size, (wal.stat().st_size if wal.exists() else 0)


def used_bytes(path: Path) -> int:
    return sum(used_parts(path))


class Store:
    """A real database file with a running writer."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "edged.db"
        self.writer = StoreWriter(open_database(self.path))
        self.writer.start()
        self.backpressure = Backpressure()

    def add(self, records: list[NewRecord]) -> None:
        self.writer.submit(WriteBatch(records=records)).result()

    def call(self, fn):
        return self.writer.call(fn).result()

    def retention(self, **settings) -> Retention:
        r = Retention(
            StoreSettings(path=self.path, **settings), self.writer, self.backpressure, count_unsent=True
        )
        r.open()
        return r

    def close(self) -> None:
        self.writer.stop()
        self.writer.db.close()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path)
    yield s
    s.close()


# -- the eviction order ----------------------------------------------------------------------------


def test_eviction_order_sent_first_then_unsent_logs_never_incidents(store):
    # 1500 analyzed log lines, the oldest 500 delivered upstream; 100 analyzed incident reports,
    # none delivered; 100 log lines not analyzed yet.
    store.add([rec(i) for i in range(1500)])
    store.call(analyze)
    store.call(lambda db: db.execute(
        "UPDATE outbox SET sent_at = 2000.0 + id WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 500)"))
    store.add([rec(i, "incident", 3000) for i in range(100)])
    store.call(analyze)
    store.add([rec(i) for i in range(2000, 2100)])
    p = store.path
    sent_ids = [r for (r,) in query(p, "SELECT record_id FROM outbox WHERE sent_at IS NOT NULL ORDER BY id")]
    checkpoint(p)
    start = used_bytes(p)
    assert start > 3 * MiB

    # A cap whose eviction target delivered results alone can reach: they go, oldest first.
    r = store.retention(max_bytes=int(start * 0.8 / EVICT_TO))
    r.check()
    c = counters(p)
    assert c.get("evicted.sent_log_results", 0) > 0
    assert c["evicted.sent_messages"] == c["evicted.sent_log_results"]
    assert "evicted.unsent_log_results" not in c
    left = [r for (r,) in query(p, "SELECT record_id FROM outbox WHERE sent_at IS NOT NULL ORDER BY id")]
    assert left == sent_ids[len(sent_ids) - len(left):], "the oldest delivered results go first"
    assert query(p, "SELECT count(*) FROM records WHERE record_id IN (%s)" % ",".join("?" * 50), *sent_ids[:50]) == [(0,)]
    orphaned = "SELECT count(*) FROM results s WHERE NOT EXISTS (SELECT 1 FROM records WHERE record_id = s.record_id)"
    assert query(p, orphaned) == [(0,)], "a result outlived its record"
    assert used_bytes(p) <= r.cap * EVICT_TO
    assert not store.backpressure.paused
    r.stop()

    # A cap that needs more than all delivered results: then the oldest undelivered log results.
    checkpoint(p)
    r = store.retention(max_bytes=int(used_bytes(p) * 0.6))
    r.check()
    c = counters(p)
    assert c["evicted.sent_log_results"] == 500 and c["evicted.sent_messages"] == 500
    unsent = c["evicted.unsent_log_results"]
    assert 0 < unsent < 1000
    remaining = [int(t.split()[1]) for (t,) in query(
        p, "SELECT r.text FROM outbox o JOIN records r ON r.record_id = o.record_id WHERE o.kind = 'log' ORDER BY o.id")]
    assert remaining == list(range(500 + unsent, 1500)), "oldest undelivered log results go first"
    assert query(p, "SELECT count(*) FROM records WHERE kind = 'incident'") == [(100,)]
    assert query(p, "SELECT count(*) FROM outbox WHERE kind = 'incident'") == [(100,)]
    assert query(p, "SELECT count(*) FROM records WHERE status = 'pending'") == [(100,)]
    assert used_bytes(p) <= r.cap
    r.stop()
    # status shows all of it
    status = collect_status(connect(p, readonly=True), p, 123)["storage"]
    assert status["max_bytes"] == 123 and status["used_bytes"] == used_bytes(p)
    assert status["evicted"] == {"sent_log_results": 500, "sent_messages": 500, "unsent_log_results": unsent}
    assert status["refused"] == {} and status["paused"] is False


def test_refusal_when_only_incidents_remain_and_release_when_room(store):
    store.add([rec(i, "incident", 3000) for i in range(400)])  # about 2.5 MB that may never be evicted
    store.call(analyze)
    store.add([rec(i) for i in range(300)])
    store.call(analyze)
    p = store.path
    assert used_bytes(p) > 2 * MiB

    r = store.retention(max_bytes=MiB)
    r.check()
    c = counters(p)
    assert c["evicted.unsent_log_results"] == 300  # every log result went first
    assert c["refused.storage_full"] == 1
    assert query(p, "SELECT count(*) FROM records WHERE kind = 'incident'") == [(400,)]
    assert store.backpressure.paused and store.backpressure.reasons == {Backpressure.STORAGE_FULL}
    r.check()  # still full: counted once per engagement, not per check
    assert counters(p)["refused.storage_full"] == 1
    status = collect_status(connect(p, readonly=True), p, MiB)["storage"]
    assert status["paused"] is True and status["paused_reasons"] == ["storage_full"]
    assert status["refused"] == {"storage_full": 1}
    r.stop()

    # Room again (here: a larger cap): the sources are released and the state says so.
    released = threading.Event()
    store.backpressure.on_release(released.set)
    r = store.retention(max_bytes=64 * MiB)
    r.check()
    assert released.is_set() and not store.backpressure.paused
    assert collect_status(connect(p, readonly=True), p, 64 * MiB)["storage"]["paused"] is False
    assert query(p, "SELECT count(*) FROM records WHERE kind = 'incident'") == [(400,)]
    r.stop()


def test_delivered_results_whose_message_expired_are_evicted_as_sent(store):
    store.add([rec(i) for i in range(3000)])
    store.call(analyze)
    # The publisher deletes delivered messages after [upstream] sent_ttl_s: records stay behind.
    store.call(lambda db: db.execute("DELETE FROM outbox WHERE id <= 1000"))
    p = store.path
    checkpoint(p)
    r = store.retention(max_bytes=int(used_bytes(p) * 0.7))
    r.check()
    c = counters(p)
    # All 1000 delivered (expired) ones went before any undelivered one, and those oldest first.
    assert c["evicted.sent_log_results"] == 1000
    unsent = c["evicted.unsent_log_results"]
    assert unsent > 0
    assert query(p, "SELECT min(id), count(*) FROM outbox") == [(1001 + unsent, 2000 - unsent)]
    assert query(p, "SELECT count(*) FROM records") == [(2000 - unsent,)]
    r.stop()


def test_db_vacuum_gives_space_back_and_can_switch_to_incremental(tmp_path):
    store = Store(tmp_path)
    try:
        store.add([rec(i) for i in range(2000)])
        store.call(analyze)
        checkpoint(store.path)
        r = store.retention(max_bytes=MiB)
        r.check()
        r.stop()
    finally:
        store.close()
    p = store.path
    before = p.stat().st_size
    config = write_config(tmp_path / "edged.toml", {"store": {"path": str(p)}})
    run = subprocess.run(
        [sys.executable, "-m", "edged", "db", "vacuum", "--auto-vacuum", "incremental", "--config", str(config)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "before" in run.stdout and "after" in run.stdout and "auto_vacuum incremental" in run.stdout
    assert p.stat().st_size < before / 2
    assert query(p, "PRAGMA auto_vacuum") == [(2,)]

    # With incremental auto_vacuum, eviction gives the pages back to the file system by itself.
    store = Store(tmp_path)
    try:
        store.add([rec(i) for i in range(5000, 8000)])
        store.call(analyze)
        checkpoint(p)
        grown = p.stat().st_size
        r = store.retention(max_bytes=MiB)
        r.check()
        r.stop()
        assert counters(p)["evicted.unsent_log_results"] > 0
        assert query(p, "PRAGMA freelist_count") == [(0,)]
        checkpoint(p)
        assert p.stat().st_size < grown
    finally:
        store.close()


# -- backpressure ------------------------------------------------------------------------------------


def test_backpressure_pauses_file_reading_above_high_water_and_resumes_below_low_water(store, tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    log = logdir / "m.log"
    settings = LogsSettings(paths=[str(logdir / "*.log")], rescan_interval_s=0.5, partial_line_timeout_s=0.3)
    source = FileSource(settings, store.writer, connect(store.path), store.backpressure)
    waits = []
    real_wait = store.backpressure.wait_released
    store.backpressure.wait_released = lambda timeout=None: waits.append(1) or real_wait(timeout)  # type: ignore[method-assign]
    r = store.retention(high_water=150, low_water=50)  # nothing analyzes: every record stays pending
    p = store.path
    stored = lambda: query(p, "SELECT count(*) FROM records")[0][0]  # noqa: E731

    def write(start: int, n: int) -> None:
        with log.open("a") as f:
            f.writelines(f"line {i:05d}\n" for i in range(start, start + n))

    source.start()
    try:
        write(0, 100)
        wait_for(lambda: stored() == 100, what="100 lines")
        r.check()
        assert not store.backpressure.paused
        write(100, 100)
        wait_for(lambda: stored() == 200, what="200 lines")
        r.check()  # 200 pending > 150
        assert store.backpressure.paused
        assert counters(p)["backpressure.paused"] == 1
        assert collect_status(connect(p, readonly=True), p)["storage"]["paused_reasons"] == ["backlog"]
        wait_for(lambda: waits, what="the source to see the pause")
        write(200, 300)
        source.wake()
        # The source goes round its loop twice more, paused, and reads nothing.
        seen = len(waits)
        wait_for(lambda: len(waits) >= seen + 2, what="two more paused rounds")
        assert stored() == 200 and source.records_read == 200
        store.call(lambda db: db.execute("UPDATE records SET status = 'done' WHERE id <= 100"))
        r.check()  # 100 pending: between the marks, still paused
        assert store.backpressure.paused
        store.call(lambda db: db.execute("UPDATE records SET status = 'done'"))
        r.check()  # 0 < 50: resume
        assert not store.backpressure.paused
        wait_for(lambda: stored() == 500, what="all 500 lines after the resume")
    finally:
        source.stop()
        r.stop()
    assert source.error is None
    texts = [t for (t,) in query(p, "SELECT text FROM records ORDER BY id")]
    assert texts == [f"line {i:05d}" for i in range(500)], "nothing lost, nothing twice"
    assert counters(p)["backpressure.paused"] == 1


def test_backpressure_also_holds_mqtt_reading():
    bp = Backpressure()
    source = MqttSource(MqttSettings(url="mqtt://127.0.0.1:1"), StoreWriter(None), bp)  # type: ignore[arg-type]
    assert not source._read_paused()
    bp.hold(Backpressure.BACKLOG)
    assert source._read_paused()
    bp.hold(Backpressure.STORAGE_FULL)
    bp.release(Backpressure.BACKLOG)
    assert source._read_paused(), "paused while any reason holds"
    bp.release(Backpressure.STORAGE_FULL)
    assert not source._read_paused()


# -- the daemon under sustained input ------------------------------------------------------------------


class LineWriter(threading.Thread):
    """Appends about 300 numbered lines a second: steady input, not a benchmark."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.count = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with self.path.open("a") as f:
            while not self.stop.is_set():
                f.writelines(
                    f"{time.time():.3f} press-{i % 4} cycle {self.count + i} temperature={60 + i % 20} status=ok\n"
                    for i in range(15)
                )
                f.flush()
                self.count += 15
                time.sleep(0.05)


@pytest.mark.slow
def test_database_stays_within_cap_under_sustained_input(tmp_path):
    cap = 2 * MiB
    logdir = tmp_path / "logs"
    logdir.mkdir()
    db_path = tmp_path / "edged.db"
    config = write_config(
        tmp_path / "edged.toml",
        {
            "store": {"path": str(db_path), "max_bytes": cap, "check_interval_s": 0.1},
            "logs": {"paths": [str(logdir / "*.log")], "partial_line_timeout_s": 0.5},
            "backend": {"type": "fake"},
            "analysis": {"digest_interval_s": 0},
            # No [mqtt] url, no [upstream] url: nothing is ever delivered, so unsent results must go.
        },
    )
    daemon = Daemon(tmp_path, config)
    daemon.start()
    writer = LineWriter(logdir / "press.log")
    writer.start()
    samples: list[int] = []
    trace: list[tuple[float, int, int]] = []  # (s, pages, log) for the failure message
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert daemon.alive(), daemon.log_text()[-3000:]
            pages, wal = used_parts(db_path)
            if samples or query(db_path, "SELECT count(*) FROM counters WHERE name LIKE 'evicted.%'")[0][0]:
                samples.append(pages + wal)
                trace.append((round(time.monotonic() - deadline + 20, 1), pages, wal))
            time.sleep(0.1)
    finally:
        writer.stop.set()
        writer.join(10)
    try:
        status = subprocess.run(
            [sys.executable, "-m", "edged", "status", "--json", "--config", str(config)],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
        )
        assert daemon.terminate() == 0
    finally:
        if daemon.alive():
            daemon.kill9()
    assert len(samples) > 20, f"evictions never started ({writer.count} lines written)"
    assert max(samples) <= cap * 1.1, f"over cap + 10%: max {max(samples)} of cap {cap}; (s, pages, log): {trace}"
    c = counters(db_path)
    assert c["evicted.unsent_log_results"] > 0
    assert "refused.storage_full" not in c
    storage = json.loads(status.stdout)["storage"]
    assert storage["max_bytes"] == cap and storage["evicted"]["unsent_log_results"] > 0
    top = sorted(trace, key=lambda t: t[1] + t[2])[-3:]
    print(f"{writer.count} lines, {len(samples)} samples after the first eviction, max {max(samples)} bytes"
          f" of cap {cap} (largest (s, pages, log): {top}); counters {c}")
