"""A damaged database (truncated, overwritten pages, not a database at all): ``run`` and ``status``
name it and say what to do, with exit status 2 and no traceback, before anything starts;
``edged db check`` finds it; ``edged db recover`` saves what can be read and keeps the damaged file."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edged.store.database import open_database
from edged.store.records import NewRecord
from edged.store.writer import WriteBatch

REPO = Path(__file__).resolve().parents[1]
ROWS = 3000


def make_database(path: Path) -> None:
    db = open_database(path)
    records = [NewRecord(f"t:{i}", "test", "m", "log", f"line {i} " + "x" * 200, "", None, time.time())
               for i in range(ROWS)]
    with db.conn:
        pass
    db.conn.execute("BEGIN")
    WriteBatch(records=records).apply(db)
    db.conn.execute("COMMIT")
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def overwrite_pages(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        for at in range(size // 4, size * 3 // 4, 16384):
            f.seek(at)
            f.write(b"\xa5" * 2048)


def not_a_database(path: Path) -> None:
    path.write_bytes(b"this is a text file, not SQLite\n" * 100)


DAMAGES = {"truncated": truncate, "overwritten pages": overwrite_pages, "not a database": not_a_database}


def edged(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp / "edged.toml"
    config.write_text(f'[store]\npath = "{tmp}/edged.db"\n[logs]\npaths = ["{tmp}/logs/*.log"]\n'
                      '[analysis]\nenabled = false\n[web]\nlisten = "127.0.0.1:0"\n')
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "edged", *args, "--config", str(config)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_database_is_named_with_what_to_do(damage, tmp_path):
    db = tmp_path / "edged.db"
    make_database(db)
    DAMAGES[damage](db)
    for command in (["run"], ["status"]):
        result = edged(tmp_path, *command)
        assert result.returncode == 2, result.stderr
        assert "damaged" in result.stderr and "edged db recover" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert "web page on" not in result.stderr
    check = edged(tmp_path, "db", "check")
    assert check.returncode == 1 and "damaged" in check.stdout, check.stdout + check.stderr


@pytest.mark.parametrize("damage", ["overwritten pages", "truncated"])
def test_recover_saves_what_can_be_read_and_keeps_the_damaged_file(damage, tmp_path):
    db = tmp_path / "edged.db"
    make_database(db)
    DAMAGES[damage](db)
    damaged_bytes = db.read_bytes()
    result = edged(tmp_path, "db", "recover")
    assert result.returncode == 0, result.stdout + result.stderr
    kept = list(tmp_path.glob("edged.db.damaged-*"))
    assert [p.read_bytes() for p in kept if not p.name.endswith(("-wal", "-shm"))] == [damaged_bytes]
    assert edged(tmp_path, "db", "check").returncode == 0
    conn = sqlite3.connect(db)
    saved = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    conn.close()
    assert 0 < saved < ROWS  # some rows were on the damaged pages; the others are back
    status = edged(tmp_path, "status", "--json")
    assert status.returncode == 0, status.stderr


def test_a_sound_database_checks_ok(tmp_path):
    make_database(tmp_path / "edged.db")
    result = edged(tmp_path, "db", "check")
    assert result.returncode == 0 and "ok" in result.stdout
