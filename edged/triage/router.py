"""What the triage classifier says about each text: its label where it is confident; where it is
unsure, its guess, whether the language model should decide instead (the active version's measured
routing, ``edged.triage.measure``), the labels the model may choose from and the most similar
labeled examples for its prompt. Who finally decides is ``edged.analysis.routing``.

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
from edged.triage.measure import DEFAULT_THRESHOLD, candidates, ranked
from edged.triage.retrieval import Example, ExampleIndex
from edged.triage.runtime import RuntimeMissing, TriageModel

log = logging.getLogger(__name__)


@dataclass
class Decision:
    """What the classifier says about one text: ``label`` set means it is confident."""

    label: str | None = None
    probability: float | None = None
    severity: int | None = None
    version: int | None = None
    examples: list[Example] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)  # labels the model may choose from; [] = all
    guess: str | None = None  # unsure: the classifier's likeliest label (None: no classifier)
    ask_model: bool = True  # unsure: whether the model decides rather than the guess


class Router:
    def __init__(self, settings: TriageSettings, taxonomy: list[str]) -> None:
        self.settings = settings
        self.taxonomy = list(taxonomy)
        self.model: TriageModel | None = None
        self.index: ExampleIndex | None = None
        self._version: int | None = None
        self._generation: tuple[int, float] | None = None
        self.runtime_error: str | None = None
        self.routing: dict | None = None  # the active version's measured routing (None: not measured)

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
            self.model, self._version, self.routing = None, None, None
            return
        self._version = current[0].version
        self.routing = current[0].routing  # tried once: a file that fails to load is not retried
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
    @property
    def threshold(self) -> float:
        """The configured threshold, else the one the active version's held-out figures chose."""
        if self.settings.confidence_threshold is not None:
            return self.settings.confidence_threshold
        return (self.routing or {}).get("threshold") or DEFAULT_THRESHOLD

    @property
    def route_to_model(self) -> bool:
        """Whether unsure texts go to the model ([triage] route_unsure; measured: per version)."""
        mode = self.settings.route_unsure
        return mode == "model" or mode == "measured" and bool((self.routing or {}).get("route_to_model"))

    def decide(self, texts: list[str]) -> list[Decision]:
        decisions = [Decision() for _ in texts]
        if not self.settings.enabled or not texts:
            return decisions
        if self.model is not None:
            threshold, k, ask = self.threshold, self.settings.candidates, self.route_to_model
            classes = self.model.classes
            for d, probs in zip(decisions, self.model.probabilities(texts)):
                order = ranked(probs, classes, self.taxonomy)
                best = float(probs.max())
                d.version = self.model.version
                # A label no longer in the taxonomy (it changed since training) is not an answer.
                if best >= threshold and order and classes[int(probs.argmax())] == order[0]:
                    d.label, d.probability = order[0], round(best, 4)
                    d.severity = self.settings.severities.get(order[0])
                else:
                    d.guess = order[0] if order else None
                    d.probability = round(float(probs[classes.index(d.guess)]), 4) if d.guess else None
                    d.severity = self.settings.severities.get(d.guess) if d.guess else None
                    d.ask_model = ask or d.guess is None
                    d.candidates = candidates(order, self.taxonomy, k)
        if self.index is not None:
            for d, text in zip(decisions, texts):
                if d.label is None:
                    d.examples = self.index.nearest(text, self.settings.examples)
        return decisions
