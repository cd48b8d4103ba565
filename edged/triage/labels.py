"""Labeled texts in the store: where they come from, which ones training sees, and the held-out split.

Sources, in the order they win when two give the same text a label:
  correction  a person's label from the web page or the API (copied with the record's text)
  import      ``edged learn --data FILE.csv`` (one row per distinct text; a later import wins)
  teacher     the answer of a bigger model upstream to an escalated result (``edged teacher``, or any
              responder on the escalation response topic; edged.publish.escalation). Below imports: a
              file people labeled is curated, a teacher model is not; above the local model's answers.
  model       a confident language-model answer, only when ``[triage] learn_from_model_confidence``
              is set. Off by default: a 135M model's confidence says little, and learning from its
              own mistakes would make them permanent. Results the triage classifier made are never used.

The held-out part is chosen by a hash of the normalized text (digits collapsed, as the features see
it), not at random: the same text, and texts that differ only in their numbers, are on the same side
every time, so a model never trained on the texts it is later scored on, and versions
trained at different times can be compared on the same held-out labels.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import sqlite_utils

from edged.triage.features import normalize

SOURCE_RANK = {"correction": 0, "import": 1, "teacher": 2, "model": 3}
UPSERT = (
    "INSERT INTO training_labels (text, label, source, ref, added_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (source, ref) DO UPDATE SET text = excluded.text, label = excluded.label,"
    " added_at = excluded.added_at WHERE training_labels.label IS NOT excluded.label"
    " OR training_labels.text IS NOT excluded.text"
)


@dataclass(frozen=True)
class Labeled:
    text: str
    label: str
    source: str


def same_text(text: str) -> str:
    """Texts that differ only in case or spacing are the same text (one label per text)."""
    return " ".join(text.lower().split())


def text_key(text: str) -> str:
    return hashlib.blake2b(same_text(text).encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()


def is_heldout(text: str, percent: int, salt: str = "versions") -> bool:
    """Whether ``text`` falls into a held-out ``percent``. Each use of a split has its own ``salt``, so the
    rows ``edged learn --holdout`` keeps for evaluation and the labels that score versions are independent."""
    digest = hashlib.blake2b((salt + "\0" + normalize(text).strip()).encode("utf-8", "surrogatepass"), digest_size=4)
    return int.from_bytes(digest.digest(), "big") % 100 < percent


def add_correction(db: sqlite_utils.Database, record_id: str, label: str, at: float | None = None) -> None:
    """A person's label for a stored record (in the caller's transaction)."""
    row = db.execute("SELECT text FROM records WHERE record_id = ?", (record_id,)).fetchone()
    if row is not None:
        db.conn.execute(UPSERT, (row[0], label, "correction", record_id, at or time.time()))


def add_teacher_label(db: sqlite_utils.Database, text: str, label: str, record_id: str, at: float) -> None:
    """A teacher's answer for an escalated record (in the caller's transaction; one per record)."""
    db.conn.execute(UPSERT, (text, label, "teacher", record_id, at))


def add_imported(db: sqlite_utils.Database, rows: list[tuple[str, str]]) -> tuple[int, int]:
    """Labeled (text, label) rows from a file (in the caller's transaction); returns (texts new to the
    store, texts whose label changed). A text given twice keeps its last label."""
    now = time.time()
    latest = {text_key(text): (text, label) for text, label in rows}
    keys = list(latest)
    known: dict[str, str] = {}
    for lo in range(0, len(keys), 500):
        chunk = keys[lo : lo + 500]
        known.update(db.execute(
            f"SELECT ref, label FROM training_labels WHERE source = 'import' AND ref IN ({','.join('?' * len(chunk))})",
            chunk,
        ).fetchall())
    db.conn.executemany(UPSERT, [(text, label, "import", key, now) for key, (text, label) in latest.items()])
    new = sum(1 for key in keys if key not in known)
    changed = sum(1 for key in keys if key in known and known[key] != latest[key][1])
    return new, changed


def add_model_answers(db: sqlite_utils.Database, min_confidence: float, labels: list[str]) -> int:
    """Confident language-model classifications not yet taken (in the caller's transaction)."""
    before = db.conn.total_changes
    marks = ",".join("?" * len(labels))
    db.conn.execute(
        "INSERT OR IGNORE INTO training_labels (text, label, source, ref, added_at)"
        " SELECT r.text, s.label, 'model', s.record_id, s.analyzed_at FROM results s"
        " JOIN records r ON r.record_id = s.record_id"
        f" WHERE s.classified_by = 'slm' AND s.confidence >= ? AND s.label IN ({marks})"
        " AND NOT EXISTS (SELECT 1 FROM label_corrections c WHERE c.record_id = s.record_id)",
        (min_confidence, *labels),
    )
    return db.conn.total_changes - before


def generation(db: sqlite_utils.Database) -> tuple[int, float]:
    """Changes whenever a label is added or changed: (rows, newest change)."""
    count, newest = db.execute("SELECT count(*), coalesce(max(added_at), 0) FROM training_labels").fetchone()
    return int(count), float(newest)


def load(db: sqlite_utils.Database, taxonomy: list[str], limit: int) -> tuple[list[Labeled], int]:
    """The newest ``limit`` distinct texts with their winning label, and how many rows were left out
    because their label is not in the taxonomy (it changed since they were stored)."""
    rows = db.execute(
        "SELECT text, label, source FROM training_labels ORDER BY added_at DESC, id DESC"
    ).fetchall()
    allowed = set(taxonomy)
    best: dict[str, Labeled] = {}
    outside = 0
    for text, label, source in rows:
        if label not in allowed:
            outside += 1
            continue
        key = text_key(text)
        held = best.get(key)
        if held is None or SOURCE_RANK[source] < SOURCE_RANK[held.source]:
            if held is None and len(best) >= limit:
                continue
            best[key] = Labeled(text, label, source)
    return list(best.values()), outside
