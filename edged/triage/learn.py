"""One training run: labels from the store -> classifier -> .tflite -> held-out score -> new version.

The held-out labels (``[triage] heldout_percent``, chosen by a hash of the text) are never trained
on. The new model is scored on them through LiteRT, i.e. the exported file itself is what is
measured; the active model is scored on the same labels, and the new one becomes active only when
it scores better (the first one, when it beats always answering the commonest label). Given a
``judge`` (the language model), the version's routing is measured on the same held-out labels
(edged.triage.measure) and stored with it. Training reads through ``db`` and stores the version
through ``write`` (the daemon's store writer, or a plain transaction in the CLI).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import sqlite_utils

from edged.config.settings import TriageSettings
from edged.triage import labels as label_store
from edged.triage import versions
from edged.triage.features import FeatureSpec
from edged.triage.measure import Judge, measure
from edged.triage.retrieval import ExampleIndex
from edged.triage.runtime import TriageModel
from edged.triage.tflite_export import export_linear_softmax
from edged.triage.train import TrainParams, train

log = logging.getLogger(__name__)

Write = Callable[[Callable[[sqlite_utils.Database], Any]], Any]


class NotEnoughLabels(ValueError):
    """Too few labels (or label kinds) to train and score a classifier."""


@dataclass
class LearnReport:
    version: int
    active: bool
    decision: str
    labels: int
    train_size: int
    heldout_size: int
    heldout_micro_f1: float
    previous_micro_f1: float | None
    baseline_micro_f1: float  # always answering the commonest training label
    classes: list[str]
    label_sources: dict[str, int]
    runtime: str
    seconds: float
    tflite_bytes: int
    routing: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def accuracy(model: TriageModel, texts: list[str], gold: list[str]) -> float:
    """Micro-F1 of a single-label classifier that always answers: the share of right answers."""
    if not texts:
        return 0.0
    predictions = model.predict(texts)
    return round(sum(p.label == g for p, g in zip(predictions, gold)) / len(texts), 4)


def learn(db: sqlite_utils.Database, write: Write, settings: TriageSettings, taxonomy: list[str],
          judge: Judge | None = None) -> LearnReport:
    started = time.perf_counter()
    if settings.learn_from_model_confidence is not None:
        added = write(lambda w: label_store.add_model_answers(w, settings.learn_from_model_confidence, taxonomy))
        if added:
            log.info("took %d confident model answers as labels", added)
    labeled, outside = label_store.load(db, taxonomy, settings.max_labels)
    if outside:
        log.warning("%d stored labels are not in the taxonomy ([analysis] labels) and were left out", outside)
    seen = label_store.generation(db)[0]
    held = [x for x in labeled if label_store.is_heldout(x.text, settings.heldout_percent)]
    training = [x for x in labeled if not label_store.is_heldout(x.text, settings.heldout_percent)]
    kinds = Counter(x.label for x in training)
    if len(labeled) < settings.min_labels:
        raise NotEnoughLabels(
            f"{len(labeled)} labeled texts in the store; [triage] min_labels is {settings.min_labels}"
        )
    if len(kinds) < 2:
        raise NotEnoughLabels(f"the training labels hold {len(kinds)} distinct label(s); two or more are needed")
    if not held:
        raise NotEnoughLabels("no labels fell into the held-out part: add labels or raise [triage] heldout_percent")

    spec = FeatureSpec(dim=settings.hash_buckets)
    linear = train([x.text for x in training], [x.label for x in training], spec, TrainParams(epochs=settings.epochs))
    tflite = export_linear_softmax(
        linear.weights, linear.bias, {"classes": linear.classes, "features": spec.as_dict()}
    )
    model = TriageModel(tflite)
    held_texts, held_gold = [x.text for x in held], [x.label for x in held]
    score = accuracy(model, held_texts, held_gold)
    commonest = kinds.most_common(1)[0][0]
    baseline = round(sum(g == commonest for g in held_gold) / len(held_gold), 4)

    current = versions.active(db)
    previous = accuracy(TriageModel(current[1]), held_texts, held_gold) if current else None
    if current is None:
        activate = score > baseline
        decision = (
            f"first model: held-out micro-F1 {score:.3f} vs {baseline:.3f} answering '{commonest}' always"
        )
    else:
        activate = score > previous
        decision = f"held-out micro-F1 {score:.3f} vs {previous:.3f} of the active version {current[0].version}"
    decision = ("activated: " if activate else "kept the active model: ") + decision
    routing = measure_routing(model, training, held_texts, held_gold, settings, taxonomy, judge)
    log.info("triage model routing: %s", routing["reason"])

    def store(w: sqlite_utils.Database) -> int:
        return versions.save(
            w,
            versions.Version(
                version=0, created_at=time.time(), classes=linear.classes, train_size=len(training),
                heldout_size=len(held), heldout_micro_f1=score, previous_micro_f1=previous, labels_seen=seen,
                active=activate, decision=decision, sha256=hashlib.sha256(tflite).hexdigest(),
                features=spec.as_dict(), routing=routing,
            ),
            tflite,
        )

    version = write(store)
    log.info("triage model version %d: %s", version, decision)
    return LearnReport(
        version=version, active=activate, decision=decision, labels=len(labeled), train_size=len(training),
        heldout_size=len(held), heldout_micro_f1=score, previous_micro_f1=previous, baseline_micro_f1=baseline,
        classes=linear.classes, label_sources=dict(Counter(x.source for x in labeled)), runtime=model.runtime,
        seconds=round(time.perf_counter() - started, 2), tflite_bytes=len(tflite), routing=routing,
    )


def measure_routing(model: TriageModel, training: list[label_store.Labeled], texts: list[str], gold: list[str],
                    settings: TriageSettings, taxonomy: list[str], judge: Judge | None) -> dict[str, Any]:
    """Whether the model beats this version's guess on its unsure held-out labels (edged.triage.measure).
    Its examples come from the training labels only: a held-out text must not meet itself."""
    index = None
    if judge is not None and settings.examples and training:
        index = ExampleIndex([x.text for x in training], [x.label for x in training], model.features)

    def examples_for(text: str) -> list[tuple[str, str]]:
        return [(e.text, e.label) for e in index.nearest(text, settings.examples)] if index is not None else []

    return measure(model.probabilities(texts), model.classes, texts, gold, taxonomy, judge=judge,
                   sample=settings.routing_sample, k=settings.candidates, examples_for=examples_for,
                   threshold=settings.confidence_threshold)


def measure_active(db: sqlite_utils.Database, write: Write, settings: TriageSettings, taxonomy: list[str],
                   judge: Judge) -> dict[str, Any] | None:
    """Measure the routing of an active version that was stored without it (trained without the model,
    or before edged measured routing) and store it. None when there is nothing to measure."""
    current = versions.active(db)
    if current is None or current[0].routing is not None and current[0].routing.get("measured"):
        return None
    labeled, _ = label_store.load(db, taxonomy, settings.max_labels)
    held = [x for x in labeled if label_store.is_heldout(x.text, settings.heldout_percent)]
    training = [x for x in labeled if not label_store.is_heldout(x.text, settings.heldout_percent)]
    routing = measure_routing(TriageModel(current[1]), training, [x.text for x in held], [x.label for x in held],
                              settings, taxonomy, judge)
    if not routing["measured"]:
        return None
    write(lambda w: versions.set_routing(w, current[0].version, routing))
    log.info("triage model version %d routing: %s", current[0].version, routing["reason"])
    return routing


def due(db: sqlite_utils.Database, settings: TriageSettings) -> bool:
    """Enough new labels since the last training for an automatic one."""
    if not settings.enabled or settings.retrain_after == 0:
        return False
    count = label_store.generation(db)[0]
    return count >= settings.min_labels and count - versions.labels_seen(db) >= settings.retrain_after
