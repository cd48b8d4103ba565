"""Retrieval of the labeled examples most like a text, for the language model's prompt.

An inverted index over the same hashed n-gram vectors the classifier uses: for each bucket, the
examples that have it and their weights. A query touches only the postings of its own buckets
(a short text has ~100), so it costs microseconds and memory grows with the examples' non-zero
entries, not with examples x buckets. Scores are cosine similarities (vectors have unit length).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edged.triage.features import FeatureSpec, sparse
from edged.triage.labels import same_text


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    similarity: float


class ExampleIndex:
    def __init__(self, texts: list[str], labels: list[str], spec: FeatureSpec) -> None:
        self.texts, self.labels, self.spec = texts, labels, spec
        self._texts = {same_text(t) for t in texts}
        rows, cols, vals = [], [], []
        for row, text in enumerate(texts):
            index, values = sparse(text, spec)
            rows.append(np.full(len(index), row, np.int32))
            cols.append(index)
            vals.append(values)
        col = np.concatenate(cols) if cols else np.zeros(0, np.int32)
        order = np.argsort(col, kind="stable")
        self._rows = (np.concatenate(rows) if rows else np.zeros(0, np.int32))[order]
        self._vals = (np.concatenate(vals) if vals else np.zeros(0, np.float32))[order]
        self._starts = np.searchsorted(col[order], np.arange(spec.dim + 1))

    def __len__(self) -> int:
        return len(self.texts)

    def contains(self, text: str) -> bool:
        """Whether ``text`` is one of the examples (ignoring case and spacing, as labels do)."""
        return same_text(text) in self._texts

    def nearest(self, text: str, k: int) -> list[Example]:
        """The ``k`` most similar examples, most similar first (those with no n-gram in common left out)."""
        if k <= 0 or not self.texts:
            return []
        index, values = sparse(text, self.spec)
        scores = np.zeros(len(self.texts), np.float32)
        for bucket, weight in zip(index, values):
            lo, hi = self._starts[bucket], self._starts[bucket + 1]
            if hi > lo:
                np.add.at(scores, self._rows[lo:hi], self._vals[lo:hi] * weight)
        k = min(k, len(self.texts))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Example(self.texts[i], self.labels[i], round(float(scores[i]), 4)) for i in top if scores[i] > 0]
