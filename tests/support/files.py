"""A real FileSource + StoreWriter on a real SQLite file, for file-ingest tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edged.config.settings import LogsSettings
from edged.sources.files.source import FileSource
from edged.store.database import connect, open_database
from edged.store.writer import StoreWriter
from tests.support.wait import wait_for

FAST = dict(
    partial_line_timeout_s=0.3,
    multiline_timeout_s=0.3,
    rotate_wait_s=0.3,
    rescan_interval_s=0.5,
)


class FileIngest:
    def __init__(self, tmp_path: Path, **settings) -> None:
        self.dir = tmp_path / "logs"
        self.dir.mkdir(exist_ok=True)
        self.db_path = tmp_path / "edged.db"
        settings.setdefault("paths", [str(self.dir / "*.log")])
        self.settings = LogsSettings(**(FAST | settings))
        self.source: FileSource | None = None
        self.writer: StoreWriter | None = None

    def start(self) -> "FileIngest":
        self.writer = StoreWriter(open_database(self.db_path))
        self.writer.start()
        self.source = FileSource(self.settings, self.writer, connect(self.db_path))
        self.source.start()
        return self

    def stop(self) -> None:
        if self.source is not None:
            self.source.stop()
            assert self.source.error is None, self.source.error
        if self.writer is not None:
            self.writer.stop()
            self.writer.db.close()
        self.source = self.writer = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def query(self, sql: str, *params) -> list[tuple]:
        conn = sqlite3.connect(self.db_path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def texts(self) -> list[str]:
        return [t for (t,) in self.query("SELECT text FROM records ORDER BY id")]

    def rows(self) -> list[tuple[str, str, str]]:
        return self.query("SELECT record_id, text, flags FROM records ORDER BY id")

    def counter(self, name: str) -> int:
        rows = self.query("SELECT value FROM counters WHERE name = ?", name)
        return rows[0][0] if rows else 0

    def wait_texts(self, n: int, timeout: float = 20.0) -> list[str]:
        wait_for(lambda: len(self.texts()) >= n, timeout, what=f"{n} records")
        return self.texts()
