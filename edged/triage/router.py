"""Routing a classification: the triage classifier when it is confident, else the language model
with the most similar labeled examples in its prompt.

``Router.refresh`` follows the store: it loads a newly activated model version and rebuilds the
example index when labels were added or changed. Both are cheap to check (two indexed queries).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlite_utils

from edged.config.settings import TriageSettings
from edged.triage import labels as label_store
from edged.triage import versions
from edged.triage.features import FeatureSpec
from edged.triage.retrieval import Example, ExampleIndex
from edged.triage.runtime import RuntimeMissing, TriageModel

log = logging.getLogger(__name__)

TRIAGE, SLM = "triage", "slm"  # the two classification paths, as results name them


@dataclass
class Decision:
    """How one text is classified: ``label`` set means the triage classifier decided."""

    label: str | None = None
    probability: float | None = None
    severity: int | None = None
    version: int | None = None
    examples: list[Example] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)  # labels the model may choose from; [] = all


class Router:
    def __init__(self, settings: TriageSettings, taxonomy: list[str]) -> None:
        self.settings = settings
        self.taxonomy = list(taxonomy)
        self.model: TriageModel | None = None
        self.index: ExampleIndex | None = None
        self._version: int | None = None
        self._generation: tuple[int, float] | None = None
        self.runtime_error: str | None = None

    # -- following the store -------------------------------------------------------------------
    def refresh(self, db: sqlite_utils.Database) -> None:
        if not self.settings.enabled:
            return
        version = versions.active_version(db)
        if version != self._version and self.runtime_error is None:
            self._load_model(db)
        generation = label_store.generation(db)
        if generation != self._generation:
            self._generation = generation
            self.rebuild_index(db)

    def _load_model(self, db: sqlite_utils.Database) -> None:
        current = versions.active(db)
        if current is None:
            self.model, self._version = None, None
            return
        self._version = current[0].version  # tried once: a file that fails to load is not retried
        try:
            self.model = TriageModel(current[1], version=current[0].version)
        except RuntimeMissing as exc:
            self.runtime_error = str(exc)
            self.model = None
            log.warning("triage classifier not used: %s", exc)
            return
        except ValueError as exc:
            self.model = None
            log.error("triage model version %d not used: %s", current[0].version, exc)
            return
        log.info("triage model version %d loaded (%s, %d classes)", self._version, self.model.runtime,
                 len(self.model.classes))

    def rebuild_index(self, db: sqlite_utils.Database) -> None:
        if self.settings.examples == 0:
            self.index = None
            return
        labeled, _ = label_store.load(db, self.taxonomy, self.settings.max_labels)
        spec = self.model.features if self.model else FeatureSpec(dim=self.settings.hash_buckets)
        self.index = ExampleIndex([x.text for x in labeled], [x.label for x in labeled], spec) if labeled else None

    # -- deciding -----------------------------------------------------------------------------
    def decide(self, texts: list[str]) -> list[Decision]:
        decisions = [Decision() for _ in texts]
        if not self.settings.enabled or not texts:
            return decisions
        if self.model is not None:
            threshold, k = self.settings.confidence_threshold, self.settings.candidates
            classes = self.model.classes
            for d, probs in zip(decisions, self.model.probabilities(texts)):
                order = [classes[i] for i in probs.argsort()[::-1] if classes[i] in self.taxonomy]
                best = float(probs.max())
                # A label no longer in the taxonomy (it changed since training) is not an answer.
                if best >= threshold and order and classes[int(probs.argmax())] == order[0]:
                    d.label, d.probability, d.version = order[0], round(best, 4), self.model.version
                    d.severity = self.settings.severities.get(order[0])
                elif k and len(order) >= 2:
                    # In taxonomy order: the same candidates always make the same schema (and grammar).
                    top = set(order[:k])
                    d.candidates = [label for label in self.taxonomy if label in top]
        if self.index is not None:
            for d, text in zip(decisions, texts):
                if d.label is None:
                    d.examples = self.index.nearest(text, self.settings.examples)
        return decisions
