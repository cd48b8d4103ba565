"""``edged db check`` and ``edged db recover``: find out whether the database is damaged, and save
what can still be read from a damaged one.

Recovery never writes into the damaged file's pages: it opens a new database with the current
schema, copies every table row by row in rowid order (stepping over ranges that cannot be read),
then moves the damaged file aside (``<name>.damaged-<time>``, with its -wal and -shm) and puts the
new one in its place. Run it with edged stopped.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import TextIO

from edged.store.database import is_damage, open_database

CHUNK_ROWS = 500
MAX_SKIP = 1 << 40  # the widest rowid gap stepped over before a table is given up as unreadable
SIDE_FILES = ("", "-wal", "-shm")
MAX_PAD_BYTES = 1 << 40  # a header claiming more than this is itself damaged: leave the copy as it is


def check(path: Path, out: TextIO = sys.stdout) -> int:
    """Exit status 0 for a sound database, 1 for a damaged one (with what to do)."""
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            problems = [r[0] for r in conn.execute("PRAGMA quick_check(20)").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        problems = [str(exc)]
    if problems == ["ok"]:
        print(f"database {path}: ok", file=out)
        return 0
    print(f"database {path}: damaged", file=out)
    for problem in problems:
        print(f"  {problem}", file=out)
    print("Stop edged, then run `edged db recover`: it copies what can still be read into a new file and"
          " keeps the damaged one beside it.", file=out)
    return 1


def _read_rows(old: sqlite3.Connection, table: str, columns: list[str]):
    """Yield rows of ``table`` in rowid order, stepping over what cannot be read. Also yields an
    int for every step over an unreadable range (how far it jumped)."""
    select = f"SELECT rowid, {', '.join(columns)} FROM \"{table}\" WHERE rowid > ? ORDER BY rowid LIMIT ?"
    last = -(1 << 63)
    while True:
        try:
            rows = old.execute(select, (last, CHUNK_ROWS)).fetchall()
        except sqlite3.DatabaseError:
            rows = None
        if rows is None:
            # Row by row from here, then jump ahead in growing steps until something reads again.
            step = 1
            while True:
                try:
                    rows = old.execute(select, (last, 1)).fetchall()
                    break
                except sqlite3.DatabaseError:
                    if step > MAX_SKIP:
                        return
                    last += step
                    step *= 2
                    yield step
        if not rows:
            return
        for row in rows:
            yield row[1:]
        last = rows[-1][0]


def _working_copy(path: Path, copy: Path) -> Path:
    """A copy of the damaged file (and its write-ahead log) to read from, grown back to the size its
    header gives: SQLite refuses to load a schema whose tables start past the end of a truncated
    file, while the missing pages, read as zeros, are only unreadable rows that get stepped over."""
    for suffix in ("", "-wal"):
        src = Path(str(path) + suffix)
        if src.exists():
            shutil.copyfile(src, Path(str(copy) + suffix))
    with open(copy, "r+b") as f:
        header = f.read(100)
        if len(header) == 100 and header.startswith(b"SQLite format 3\0"):
            page_size = int.from_bytes(header[16:18], "big")
            page_size = 65536 if page_size == 1 else page_size
            pages = int.from_bytes(header[28:32], "big")
            f.seek(0, os.SEEK_END)
            if 0 < pages * page_size <= MAX_PAD_BYTES and f.tell() < pages * page_size:
                f.truncate(pages * page_size)
    return copy


def recover(path: Path, out: TextIO = sys.stdout) -> int:
    """Copy what can be read into a fresh database at ``path``; the damaged file is kept beside it."""
    path = path.resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fresh_path = path.with_name(f"{path.name}.recovering-{stamp}")
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    fresh = open_database(fresh_path)
    reading = _working_copy(path, path.with_name(f"{path.name}.reading-{stamp}"))
    old = sqlite3.connect(str(reading))
    copied: dict[str, int] = {}
    skipped = 0
    try:
        tables = [r[0] for r in fresh.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'migrations'"
        ).fetchall()]
        for table in tables:
            try:
                old_columns = [r[1] for r in old.execute(f'PRAGMA table_info("{table}")').fetchall()]
            except sqlite3.DatabaseError:
                old_columns = []
            new_columns = [r[1] for r in fresh.execute(f'PRAGMA table_info("{table}")').fetchall()]
            columns = [c for c in new_columns if c in old_columns]
            if not columns:
                print(f"  {table}: not readable in the damaged file", file=out)
                continue
            insert = (f'INSERT OR IGNORE INTO "{table}" ({", ".join(columns)})'
                      f' VALUES ({", ".join("?" * len(columns))})')
            n = 0
            batch: list[tuple] = []
            fresh.conn.execute("BEGIN")
            for item in _read_rows(old, table, columns):
                if isinstance(item, int):
                    skipped += 1
                    continue
                batch.append(item)
                if len(batch) >= CHUNK_ROWS:
                    n += fresh.conn.executemany(insert, batch).rowcount
                    batch = []
            if batch:
                n += fresh.conn.executemany(insert, batch).rowcount
            fresh.conn.execute("COMMIT")
            copied[table] = n
    finally:
        old.close()
        fresh.close()
        for suffix in SIDE_FILES:
            Path(str(reading) + suffix).unlink(missing_ok=True)
    for suffix in SIDE_FILES:
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(kept) + suffix))
    for suffix in SIDE_FILES:
        src = Path(str(fresh_path) + suffix)
        if src.exists():
            os.replace(src, Path(str(path) + suffix))
    total = sum(copied.values())
    print(f"recovered {total} rows into {path}; the damaged file is kept as {kept}", file=out)
    for table, n in copied.items():
        if n:
            print(f"  {table}: {n}", file=out)
    if skipped:
        print(f"  {skipped} unreadable ranges were stepped over", file=out)
    db = open_database(path, check=True)  # the result must itself be sound
    db.close()
    return 0
