"""The store: migrations, the writer's batched inserts, duplicates, priorities."""

from __future__ import annotations

import sqlite3

from edged.store.database import open_database
from edged.store.migrations import MIGRATIONS, current_version
from edged.store.records import NewRecord
from edged.store.writer import StoreWriter, WriteBatch


def rec(i: int, text: str = "ok", priority: int = 0, kind: str = "log") -> NewRecord:
    return NewRecord(f"t:{i}", "test", None, kind, text, "", None, 0.0, priority)


def test_migrations_are_recorded_and_applied_once(tmp_path):
    db = open_database(tmp_path / "a.db")
    assert current_version(db) == max(MIGRATIONS)
    db.close()
    db = open_database(tmp_path / "a.db")  # reopening applies nothing again
    versions = [v for (v,) in db.execute("SELECT version FROM migrations ORDER BY version").fetchall()]
    assert versions == sorted(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_batched_inserts_count_duplicates_across_statement_blocks(tmp_path):
    path = tmp_path / "a.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    try:
        first = writer.submit(WriteBatch(records=[rec(i) for i in range(250)], source_type="x")).result()
        # 150 already stored + 100 new, in one batch that spans the multi-row blocks.
        again = writer.submit(WriteBatch(records=[rec(i) for i in range(100, 350)], source_type="x")).result()
    finally:
        writer.stop()
    assert (first.inserted, first.duplicates) == (250, 0)
    assert (again.inserted, again.duplicates) == (100, 150)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*), count(DISTINCT record_id) FROM records").fetchone() == (350, 350)
    assert conn.execute("SELECT value FROM counters WHERE name = 'duplicates.x'").fetchone() == (150,)
    # Row order follows batch order, so rowids say which line came first.
    ids = [r for (r,) in conn.execute("SELECT record_id FROM records ORDER BY id")]
    assert ids == [f"t:{i}" for i in range(350)]


def test_alert_looking_lines_get_a_higher_priority_than_routine_ones(tmp_path):
    path = tmp_path / "a.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    texts = ["cycle complete", "2026-11-27 ERROR spindle overtemp", "Pump failed to start", "E-Stop pressed"]
    try:
        writer.submit(WriteBatch(records=[rec(i, t) for i, t in enumerate(texts)])).result()
        writer.submit(WriteBatch(records=[rec(9, "operator note", priority=10, kind="incident")])).result()
    finally:
        writer.stop()
    conn = sqlite3.connect(path)
    got = dict(conn.execute("SELECT text, priority FROM records").fetchall())
    assert got == {
        "cycle complete": 0,
        "2026-11-27 ERROR spindle overtemp": 5,
        "Pump failed to start": 5,
        "E-Stop pressed": 5,
        "operator note": 10,
    }
