"""Trained triage models in the store: one row per version, at most one active."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

KEEP_FILES = 4  # .tflite blobs kept besides the active one (older rows keep their figures only)


@dataclass
class Version:
    version: int
    created_at: float
    classes: list[str]
    train_size: int
    heldout_size: int
    heldout_micro_f1: float
    previous_micro_f1: float | None
    labels_seen: int
    active: bool
    decision: str
    sha256: str
    features: dict[str, Any] = field(default_factory=dict)
    routing: dict[str, Any] | None = None  # edged.triage.measure: does the model beat the guess? None = not measured

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


_COLUMNS = (
    "version, created_at, classes, train_size, heldout_size, heldout_micro_f1, previous_micro_f1,"
    " labels_seen, active, decision, sha256, features, routing"
)


def _version(row: tuple) -> Version:
    (version, created_at, classes, train_size, heldout_size, score, previous, seen, active, decision, sha,
     features, routing) = row
    return Version(version, created_at, json.loads(classes), train_size, heldout_size, score, previous, seen,
                   bool(active), decision, sha, json.loads(features), json.loads(routing) if routing else None)


def versions(db: sqlite_utils.Database, limit: int = 20) -> list[Version]:
    rows = db.execute(f"SELECT {_COLUMNS} FROM triage_models ORDER BY version DESC LIMIT ?", (limit,)).fetchall()
    return [_version(r) for r in rows]


def active(db: sqlite_utils.Database) -> tuple[Version, bytes] | None:
    row = db.execute(f"SELECT {_COLUMNS}, tflite FROM triage_models WHERE active = 1").fetchone()
    return (_version(row[:-1]), bytes(row[-1])) if row else None


def active_version(db: sqlite_utils.Database) -> int | None:
    row = db.execute("SELECT version FROM triage_models WHERE active = 1").fetchone()
    return row[0] if row else None


def labels_seen(db: sqlite_utils.Database) -> int:
    """The label count the latest training saw (accepted or not): automatic training waits for more."""
    row = db.execute("SELECT max(labels_seen) FROM triage_models").fetchone()
    return row[0] or 0


def save(db: sqlite_utils.Database, v: Version, tflite: bytes) -> int:
    """Store a trained version (in the caller's transaction); activate it when ``v.active``."""
    if v.active:
        db.conn.execute("UPDATE triage_models SET active = 0 WHERE active = 1")
    cur = db.conn.execute(
        "INSERT INTO triage_models (created_at, classes, features, train_size, heldout_size, heldout_micro_f1,"
        " previous_micro_f1, labels_seen, active, decision, sha256, tflite, routing)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (v.created_at or time.time(), json.dumps(v.classes), json.dumps(v.features), v.train_size, v.heldout_size,
         v.heldout_micro_f1, v.previous_micro_f1, v.labels_seen, int(v.active), v.decision, v.sha256, tflite,
         None if v.routing is None else json.dumps(v.routing)),
    )
    db.conn.execute(
        "UPDATE triage_models SET tflite = NULL WHERE active = 0 AND tflite IS NOT NULL AND version NOT IN"
        " (SELECT version FROM triage_models WHERE active = 0 ORDER BY version DESC LIMIT ?)",
        (KEEP_FILES,),
    )
    return int(cur.lastrowid)


def set_routing(db: sqlite_utils.Database, version: int, routing: dict[str, Any]) -> None:
    """Store a version's measured routing (in the caller's transaction)."""
    db.conn.execute("UPDATE triage_models SET routing = ? WHERE version = ?", (json.dumps(routing), version))
