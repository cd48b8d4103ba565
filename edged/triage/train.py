"""Training the triage classifier: multinomial logistic regression, in numpy.

A linear model over hashed character n-grams is the classic strong baseline for short noisy text,
it trains in seconds on a Pi from a few hundred labels, and its softmax probabilities are what the
router compares with its threshold. Trained with Adam on mini-batches; L2 regularisation keeps
weights small so rare n-grams do not produce overconfident probabilities. Deterministic for a seed.

Memory stays bounded by the batch: texts are kept as sparse rows and only one batch at a time is
made dense (batch x dim floats).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edged.triage.features import FeatureSpec, sparse


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 0.05
    l2: float = 1e-5
    seed: int = 0


@dataclass
class LinearModel:
    classes: list[str]
    features: FeatureSpec
    weights: np.ndarray  # (classes, dim)
    bias: np.ndarray  # (classes,)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        rows = _SparseRows.of(texts, self.features)
        return _softmax(rows.dense(np.arange(len(texts)), self.features.dim) @ self.weights.T + self.bias)


class _SparseRows:
    """Texts as CSR rows (index pointer, bucket indices, values)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
        self.indptr, self.indices, self.values = indptr, indices, values

    @classmethod
    def of(cls, texts: list[str], spec: FeatureSpec) -> "_SparseRows":
        pieces = [sparse(t, spec) for t in texts]
        indptr = np.zeros(len(texts) + 1, np.int64)
        indptr[1:] = np.cumsum([len(i) for i, _ in pieces])
        indices = np.concatenate([i for i, _ in pieces]) if pieces else np.zeros(0, np.int32)
        values = np.concatenate([v for _, v in pieces]) if pieces else np.zeros(0, np.float32)
        return cls(indptr, indices, values)

    def dense(self, rows: np.ndarray, dim: int) -> np.ndarray:
        out = np.zeros((len(rows), dim), np.float32)
        for r, row in enumerate(rows):
            lo, hi = self.indptr[row], self.indptr[row + 1]
            out[r, self.indices[lo:hi]] = self.values[lo:hi]
        return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train(texts: list[str], labels: list[str], spec: FeatureSpec, params: TrainParams = TrainParams()) -> LinearModel:
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError("training needs at least two different labels")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[label] for label in labels], np.int64)
    rows = _SparseRows.of(texts, spec)
    n, k, dim = len(texts), len(classes), spec.dim
    rng = np.random.default_rng(params.seed)
    w = np.zeros((k, dim), np.float32)
    b = np.zeros(k, np.float32)
    # Adam state
    mw, vw = np.zeros_like(w), np.zeros_like(w)
    mb, vb = np.zeros_like(b), np.zeros_like(b)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    for _ in range(params.epochs):
        order = rng.permutation(n)
        for start in range(0, n, params.batch_size):
            batch = order[start : start + params.batch_size]
            x = rows.dense(batch, dim)
            p = _softmax(x @ w.T + b)
            p[np.arange(len(batch)), y[batch]] -= 1.0
            p /= len(batch)
            gw = p.T @ x + params.l2 * w
            gb = p.sum(axis=0)
            step += 1
            mw = beta1 * mw + (1 - beta1) * gw
            vw = beta2 * vw + (1 - beta2) * gw * gw
            mb = beta1 * mb + (1 - beta1) * gb
            vb = beta2 * vb + (1 - beta2) * gb * gb
            correction = np.sqrt(1 - beta2**step) / (1 - beta1**step)
            w -= params.learning_rate * correction * mw / (np.sqrt(vw) + eps)
            b -= params.learning_rate * correction * mb / (np.sqrt(vb) + eps)
    return LinearModel(classes, spec, w.astype(np.float32), b.astype(np.float32))
