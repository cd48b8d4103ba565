"""The template miner edged used before header parsing: whole raw lines into drain3 (kept to compare against).

A template is classified once and the result reused for every later line of it. The miner's state
is saved in the same transaction as the results that refer to its template ids (``state_if_changed``
gives the bytes to save), so after a crash a template id never means another template.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import sqlite_utils
from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.persistence_handler import PersistenceHandler
from drain3.template_miner_config import TemplateMinerConfig

log = logging.getLogger(__name__)

STATE_NAME = "drain"

# Variable parts masked before mining, so "temp 71.5" and "temp 80.2" share a template. Order matters.
MASKS = [
    (r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b", "TS"),
    (r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b", "TIME"),
    (r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b", "IP"),
    (r"\b0x[0-9a-fA-F]+\b", "HEX"),
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "UUID"),
    (r"(?<![A-Za-z_\d.])[-+]?\d+(?:\.\d+)?", "NUM"),  # also before a unit: 91.5C, 3000rpm
]


class _MemoryState(PersistenceHandler):
    """Holds the state bytes; edged decides when they are written (with the results)."""

    def __init__(self, state: bytes | None) -> None:
        self.state = state

    def save_state(self, state: bytes) -> None:
        self.state = state

    def load_state(self) -> bytes | None:
        return self.state


class _ExplicitSaveMiner(TemplateMiner):
    # drain3 would serialise its whole state after every new template; we save once per batch.
    def get_snapshot_reason(self, change_type, cluster_id):  # noqa: ANN001
        return None


@dataclass
class Mined:
    template_id: int
    template: str
    params: list[str]
    changed: bool  # a new template, or an existing one generalised


class TemplateStore:
    def __init__(self, state: bytes | None = None, *, sim_th: float = 0.4, depth: int = 4) -> None:
        config = TemplateMinerConfig()
        config.drain_sim_th = sim_th
        config.drain_depth = depth
        config.snapshot_compress_state = True
        config.masking_instructions = [MaskingInstruction(pattern, name) for pattern, name in MASKS]
        config.parametrize_numeric_tokens = True
        self._handler = _MemoryState(state)
        self.miner = _ExplicitSaveMiner(persistence_handler=self._handler, config=config)
        self._dirty = False

    @classmethod
    def load(cls, db: sqlite_utils.Database) -> "TemplateStore":
        row = db.execute("SELECT state FROM miner_state WHERE name = ?", (STATE_NAME,)).fetchone()
        store = cls(row[0] if row else None)
        if row:
            log.info("restored %d log templates", len(store.miner.drain.clusters))
        return store

    @property
    def count(self) -> int:
        return len(self.miner.drain.clusters)

    def mine(self, text: str) -> Mined:
        result = self.miner.add_log_message(text)
        changed = result["change_type"] != "none"
        self._dirty |= changed
        template = result["template_mined"]
        params = self.miner.get_parameter_list(template, text) if "<" in template else []
        return Mined(result["cluster_id"], template, params, changed)

    def state_if_changed(self) -> bytes | None:
        """The serialised state when templates changed since the last call, else None."""
        if not self._dirty:
            return None
        self.miner.save_state("batch")
        self._dirty = False
        return self._handler.state

    @staticmethod
    def save(db: sqlite_utils.Database, state: bytes) -> None:
        db.execute(
            "INSERT OR REPLACE INTO miner_state (name, state, saved_at) VALUES (?, ?, ?)",
            (STATE_NAME, state, time.time()),
        )
