"""Versioned schema migrations, each applied in the same transaction as its record in ``migrations``.

Add a migration by writing a function decorated with ``@migration(N)`` with the next number.
Never edit a migration that has shipped: boxes in the field have already applied it.
"""

from __future__ import annotations

import time
from typing import Callable

import sqlite_utils

from edged.store.transaction import write_transaction

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: dict[int, Migration] = {}


def migration(version: int) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        if version in MIGRATIONS:
            raise ValueError(f"migration {version} registered twice")
        MIGRATIONS[version] = fn
        return fn

    return register


def current_version(db: sqlite_utils.Database) -> int:
    if "migrations" not in db.table_names():
        return 0
    row = db.execute("SELECT max(version) FROM migrations").fetchone()
    return row[0] or 0


def apply_migrations(db: sqlite_utils.Database) -> list[int]:
    """Apply every migration newer than the database; returns the versions applied."""
    applied = []
    with write_transaction(db):
        db.execute(
            "CREATE TABLE IF NOT EXISTS migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
    for version in sorted(MIGRATIONS):
        # The version is re-read under the write lock, so two processes opening a fresh
        # database at once never apply the same migration twice.
        with write_transaction(db):
            if version <= current_version(db):
                continue
            fn = MIGRATIONS[version]
            fn(db)
            db["migrations"].insert({"version": version, "name": fn.__name__, "applied_at": time.time()})
            applied.append(version)
    return applied


@migration(1)
def create_ingest_tables(db: sqlite_utils.Database) -> None:
    # The inbox: one row per log record or incident report, whatever its source.
    db.execute(
        """
        CREATE TABLE records (
            id INTEGER PRIMARY KEY,
            record_id TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL,
            machine TEXT,
            kind TEXT NOT NULL CHECK (kind IN ('log', 'incident')),
            text TEXT NOT NULL,
            flags TEXT NOT NULL DEFAULT '',
            origin TEXT,
            received_at REAL NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'leased', 'done', 'parked')),
            priority INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT,
            lease_until REAL,
            error TEXT
        )
        """
    )
    # Claiming work scans pending rows by priority, then age; the partial index stays small
    # because finished rows leave it.
    db.execute(
        "CREATE INDEX records_claim ON records (priority DESC, id) WHERE status IN ('pending', 'leased')"
    )
    db.execute("CREATE INDEX records_status ON records (status)")
    # One row per file instance ever read. file_key is the identity used in record ids: it is
    # assigned when the file is first seen and persisted with its first lines.
    db["file_positions"].create(
        {
            "file_key": str,
            "source": str,
            "path": str,
            "dev": int,
            "ino": int,
            "fp_len": int,
            "fp_hash": str,
            "offset": int,
            "state": str,
            "reason": str,
            "first_seen": float,
            "updated_at": float,
        },
        pk="file_key",
        not_null={"source", "path", "dev", "ino", "fp_len", "fp_hash", "offset", "state"},
    )
    db["file_positions"].create_index(["state"])
    db["file_positions"].create_index(["source"])
    # Inputs that could not become records, kept with their reason so nothing vanishes silently.
    db.execute(
        """
        CREATE TABLE rejected (
            id INTEGER PRIMARY KEY,
            input_id TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT,
            size INTEGER NOT NULL,
            sample BLOB,
            received_at REAL NOT NULL
        )
        """
    )
    db["counters"].create({"name": str, "value": int}, pk="name", not_null={"value"})


@migration(2)
def create_analysis_tables(db: sqlite_utils.Database) -> None:
    # One result per record: what the model (or a cache standing in for it) said about it.
    db.execute(
        """
        CREATE TABLE results (
            id INTEGER PRIMARY KEY,
            record_id TEXT NOT NULL UNIQUE REFERENCES records (record_id),
            template_id INTEGER,
            label TEXT,
            severity INTEGER,
            confidence REAL,
            fields TEXT,
            summary TEXT,
            needs_review INTEGER NOT NULL DEFAULT 0,
            path TEXT NOT NULL,
            model TEXT,
            model_sha256 TEXT,
            backend TEXT,
            prompt_version TEXT,
            model_calls INTEGER NOT NULL DEFAULT 0,
            latency_ms REAL,
            analyzed_at REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX results_label ON results (label, severity)")
    # Log templates mined by Drain; the classification of a template is made once and reused.
    db.execute(
        """
        CREATE TABLE templates (
            template_id INTEGER PRIMARY KEY,
            template TEXT NOT NULL,
            lines INTEGER NOT NULL DEFAULT 0,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL
        )
        """
    )
    # Reusable model outputs: per template (classify, extract) and per exact text.
    db.execute(
        """
        CREATE TABLE analysis_cache (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            created_at REAL NOT NULL
        )
        """
    )
    # The Drain miner's state, saved in the same transaction as the results that use its ids.
    db.execute("CREATE TABLE miner_state (name TEXT PRIMARY KEY, state BLOB NOT NULL, saved_at REAL NOT NULL)")
    # Periodic summaries of each source's recent log lines.
    db.execute(
        """
        CREATE TABLE digests (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            window_start REAL NOT NULL,
            window_end REAL NOT NULL,
            records INTEGER NOT NULL,
            summary TEXT NOT NULL,
            model TEXT,
            created_at REAL NOT NULL
        )
        """
    )


@migration(3)
def create_outbox(db: sqlite_utils.Database) -> None:
    # Results waiting to go upstream, written in the same transaction as the result itself. A row
    # is marked sent only when the broker's PUBACK for it arrives.
    db.execute(
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            result_id TEXT NOT NULL UNIQUE,
            record_id TEXT,
            kind TEXT NOT NULL,
            source TEXT,
            topic TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at REAL NOT NULL,
            sent_at REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_attempt_at REAL
        )
        """
    )
    db.execute("CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL")
    db.execute("CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL")


@migration(4)
def create_label_corrections(db: sqlite_utils.Database) -> None:
    # Labels corrected by people on the web page (or the API), kept for later learning. The model's
    # own label stays in results; the newest correction of a record is the label shown for it.
    db.execute(
        """
        CREATE TABLE label_corrections (
            id INTEGER PRIMARY KEY,
            record_id TEXT NOT NULL,
            old_label TEXT,
            new_label TEXT NOT NULL,
            corrected_by TEXT NOT NULL,
            corrected_at REAL NOT NULL,
            note TEXT
        )
        """
    )
    db.execute("CREATE INDEX label_corrections_record ON label_corrections (record_id, id)")


@migration(5)
def create_learning_tables(db: sqlite_utils.Database) -> None:
    # Labeled texts the triage classifier and the example retrieval learn from. A text is copied
    # here (a correction's record may later be evicted; its label must stay). One row per
    # (source, ref): a newer correction of the same record replaces the older one.
    #   source: correction (web or API), import (edged learn --data), model (a confident answer).
    db.execute(
        """
        CREATE TABLE training_labels (
            id INTEGER PRIMARY KEY,
            text TEXT NOT NULL,
            label TEXT NOT NULL,
            source TEXT NOT NULL,
            ref TEXT NOT NULL,
            added_at REAL NOT NULL,
            UNIQUE (source, ref)
        )
        """
    )
    db.execute(
        "INSERT OR REPLACE INTO training_labels (text, label, source, ref, added_at)"
        " SELECT r.text, lc.new_label, 'correction', lc.record_id, lc.corrected_at"
        " FROM label_corrections lc JOIN records r ON r.record_id = lc.record_id ORDER BY lc.id"
    )
    # Trained triage models. A version is active only when it beat the active one on held-out labels;
    # the others stay for the record (their .tflite is dropped after a while to bound the size).
    db.execute(
        """
        CREATE TABLE triage_models (
            version INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            classes TEXT NOT NULL,
            features TEXT NOT NULL,
            train_size INTEGER NOT NULL,
            heldout_size INTEGER NOT NULL,
            heldout_micro_f1 REAL NOT NULL,
            previous_micro_f1 REAL,
            labels_seen INTEGER NOT NULL,
            active INTEGER NOT NULL DEFAULT 0,
            decision TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            tflite BLOB
        )
        """
    )
    # Which path classified a result: the triage classifier (no model call) or the language model.
    db.execute("ALTER TABLE results ADD COLUMN classified_by TEXT")
    db.execute("ALTER TABLE results ADD COLUMN triage_version INTEGER")


@migration(6)
def add_log_headers(db: sqlite_utils.Database) -> None:
    # A log line's parsed header fields (format, time, level, host, component, pid) as JSON, beside its
    # result; a template belongs to one level and component.
    db.execute("ALTER TABLE results ADD COLUMN header TEXT")
    db.execute("ALTER TABLE templates ADD COLUMN level TEXT")
    db.execute("ALTER TABLE templates ADD COLUMN component TEXT")


@migration(7)
def grounded_fields(db: sqlite_utils.Database) -> None:
    # Where each extracted field came from (header, record, pattern, model), and why a result needs
    # review beyond a low confidence (a summary that names what its report does not).
    db.execute("ALTER TABLE results ADD COLUMN fields_source TEXT")
    db.execute("ALTER TABLE results ADD COLUMN review_reason TEXT")


@migration(8)
def add_version_routing(db: sqlite_utils.Database) -> None:
    # Per trained triage version: whether, on its own held-out labels, the language model beat the
    # classifier's guess on the records the classifier was unsure of, and the threshold chosen from
    # those figures (JSON; NULL = not measured, so unsure records keep the guess).
    db.execute("ALTER TABLE triage_models ADD COLUMN routing TEXT")


@migration(10)
def add_file_marks(db: sqlite_utils.Database) -> None:
    # A checksum of the bytes just before a file's stored offset (edged.sources.files.identity): a file
    # rewritten in place, or recreated on a reused inode, is told apart even when its beginning is the same.
    db.execute("ALTER TABLE file_positions ADD COLUMN mark TEXT")


@migration(11)
def add_digest_review(db: sqlite_utils.Database) -> None:
    # Why a digest needs review: it named a number or code its input does not, even when generated again.
    db.execute("ALTER TABLE digests ADD COLUMN review_reason TEXT")
