"""Hashed character n-grams: features for short, noisy text (log lines, work orders).

Maintenance texts are misspelt, abbreviated and full of codes ("L/H BUCKET CYL LEAKING", "hyd
pmp u/s"), so whole words match badly; overlapping character n-grams inside word boundaries still
share most of their pieces. Hashing maps them into a fixed number of buckets: no vocabulary to
store or keep in step, and the same text gives the same vector on every box and every version.

The hash is CRC-32 of the UTF-8 n-gram (Python's hash() of str changes with each process). Digit
runs become one "0" first, so "spindle 2 overtemp 91C" and "spindle 3 overtemp 88C" look alike.
Each bucket holds log(1 + count); a vector is scaled to unit length, so a dot product of two
vectors is their cosine similarity (what retrieval ranks by).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
MAX_TEXT_CHARS = 1000  # the part of a record the classifier looks at (as the model sees at most this)


@dataclass(frozen=True)
class FeatureSpec:
    """How texts become vectors. Stored with each trained model: a model only reads its own features."""

    dim: int = 1 << 14
    min_n: int = 2
    max_n: int = 5
    words: bool = True  # whole tokens as well, for the words that are spelt right

    def as_dict(self) -> dict[str, int | bool]:
        return {"dim": self.dim, "min_n": self.min_n, "max_n": self.max_n, "words": self.words}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        return cls(dim=int(d["dim"]), min_n=int(d["min_n"]), max_n=int(d["max_n"]), words=bool(d["words"]))


def normalize(text: str) -> str:
    return _DIGITS.sub("0", text[:MAX_TEXT_CHARS].lower())


def _grams(text: str, spec: FeatureSpec) -> list[str]:
    grams: list[str] = []
    for token in _WORD.findall(normalize(text)):
        if spec.words:
            grams.append("w:" + token)
        padded = f" {token} "
        for n in range(spec.min_n, spec.max_n + 1):
            grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


def sparse(text: str, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """(bucket indices, values) of one text, indices sorted and unique, values of unit length."""
    grams = _grams(text, spec)
    if not grams:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    buckets = np.fromiter(
        (zlib.crc32(g.encode("utf-8", "surrogatepass")) % spec.dim for g in grams), np.int64, len(grams)
    )
    index, counts = np.unique(buckets, return_counts=True)
    values = np.log1p(counts.astype(np.float32))
    values /= np.linalg.norm(values)
    return index.astype(np.int32), values


def dense(texts: list[str], spec: FeatureSpec) -> np.ndarray:
    """A (len(texts), dim) float32 matrix: the classifier's input."""
    out = np.zeros((len(texts), spec.dim), np.float32)
    for row, text in enumerate(texts):
        index, values = sparse(text, spec)
        out[row, index] = values
    return out
