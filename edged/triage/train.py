"""Training the triage classifier: multinomial logistic regression, in numpy.

A linear model over hashed character n-grams is the classic strong baseline for short noisy text,
it trains in seconds on a Pi from a few hundred labels, and its softmax probabilities are what the
router compares with its threshold. Trained with (lazy) Adam on mini-batches of sparse rows; L2
regularisation keeps weights small so rare n-grams do not produce overconfident probabilities.
Deterministic for a seed.

Memory stays bounded by the batch: texts are kept as sparse rows and only one batch at a time is
made dense (batch x dim floats).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edged.triage.features import FeatureSpec, sparse


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 0.1
    l2: float = 1e-5
    seed: int = 0


@dataclass
class LinearModel:
    classes: list[str]
    features: FeatureSpec
    weights: np.ndarray  # (classes, dim)
    bias: np.ndarray  # (classes,)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        rows = SparseRows.of(texts, self.features)
        return _softmax(rows.dense(np.arange(len(texts)), self.features.dim) @ self.weights.T + self.bias)


class SparseRows:
    """Texts as CSR rows (index pointer, bucket indices, values)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
        self.indptr, self.indices, self.values = indptr, indices, values

    @classmethod
    def of(cls, texts: list[str], spec: FeatureSpec) -> "SparseRows":
        pieces = [sparse(t, spec) for t in texts]
        indptr = np.zeros(len(texts) + 1, np.int64)
        indptr[1:] = np.cumsum([len(i) for i, _ in pieces])
        indices = np.concatenate([i for i, _ in pieces]) if pieces else np.zeros(0, np.int32)
        values = np.concatenate([v for _, v in pieces]) if pieces else np.zeros(0, np.float32)
        return cls(indptr, indices, values)

    def entries(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The non-zero entries of ``rows``, row after row: (bucket, value, position of its row in
        ``rows``, where each row's entries start). Each row leads with a (0, 0.0) entry, so no row
        is empty (np.add.reduceat needs that) and the sums are unchanged."""
        spans = [(self.indptr[r], self.indptr[r + 1]) for r in rows]
        zero_i, zero_v = np.zeros(1, self.indices.dtype), np.zeros(1, self.values.dtype)
        cols = np.concatenate([x for lo, hi in spans for x in (zero_i, self.indices[lo:hi])])
        vals = np.concatenate([x for lo, hi in spans for x in (zero_v, self.values[lo:hi])])
        lengths = np.array([hi - lo + 1 for lo, hi in spans])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return cols, vals, np.repeat(np.arange(len(rows)), lengths), starts

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
    w, b = fit(SparseRows.of(texts, spec), y, len(classes), spec.dim, params)
    return LinearModel(classes, spec, w, b)


def fit(rows: SparseRows, y: np.ndarray, k: int, dim: int,
        params: TrainParams = TrainParams()) -> tuple[np.ndarray, np.ndarray]:
    """(weights (k, dim), bias (k,)) of the regression of class indices ``y`` on ``rows`` (any sparse
    features of width ``dim``: the benches also train it on n-grams joined with other features)."""
    n = len(y)
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
            # The batch's non-zero entries only: a text has ~100 of dim (16384) buckets.
            cols, vals, owner, starts = rows.entries(batch)
            logits = np.add.reduceat((w[:, cols] * vals).T, starts, axis=0)
            p = _softmax(logits + b)
            p[np.arange(len(batch)), y[batch]] -= 1.0
            p /= len(batch)
            # Lazy Adam: only the buckets this batch touches have a gradient (and their L2 term);
            # updating all dim x classes weights every step would cost most of the training time.
            touched, where = np.unique(cols, return_inverse=True)
            gw = params.l2 * w[:, touched]
            for c in range(k):
                gw[c] += np.bincount(where, weights=vals * p[owner, c], minlength=len(touched)).astype(np.float32)
            gb = p.sum(axis=0)
            step += 1
            correction = np.sqrt(1 - beta2**step) / (1 - beta1**step)
            m = mw[:, touched] = beta1 * mw[:, touched] + (1 - beta1) * gw
            v = vw[:, touched] = beta2 * vw[:, touched] + (1 - beta2) * gw * gw
            w[:, touched] -= params.learning_rate * correction * m / (np.sqrt(v) + eps)
            mb = beta1 * mb + (1 - beta1) * gb
            vb = beta2 * vb + (1 - beta2) * gb * gb
            b -= params.learning_rate * correction * mb / (np.sqrt(vb) + eps)
    return w.astype(np.float32), b.astype(np.float32)
