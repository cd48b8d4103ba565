"""Running a triage .tflite model with LiteRT (ai-edge-litert), or tflite-runtime where only that installs.

ai-edge-litert is the maintained successor of tflite-runtime, with wheels for Python 3.10+ on
x86-64 and aarch64; tflite-runtime's last wheels (2.14, up to Python 3.11) still serve older
images, e.g. JetPack's Python. Both expose the same Interpreter class. Without either, there is no
triage: edged says so once and every classification goes to the language model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from edged.triage.features import FeatureSpec, dense
from edged.triage.tflite_export import read_metadata


class RuntimeMissing(RuntimeError):
    """Neither ai-edge-litert nor tflite-runtime can be imported."""


def interpreter_class() -> tuple[Any, str]:
    """(the Interpreter class, the name of the package it came from)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        pass
    raise RuntimeMissing(
        "no TFLite runtime: install ai-edge-litert (pip install ai-edge-litert), or tflite-runtime where"
        " ai-edge-litert has no wheel for this Python"
    )


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float


class TriageModel:
    """One trained triage model, loaded from its .tflite bytes. Safe to call from several threads."""

    def __init__(self, tflite: bytes, version: int | None = None) -> None:
        meta = read_metadata(tflite)
        self.classes: list[str] = list(meta["classes"])
        self.features = FeatureSpec.from_dict(meta["features"])
        self.version = version
        cls, self.runtime = interpreter_class()
        self._interpreter = cls(model_content=tflite, num_threads=1)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = 1
        self._lock = threading.Lock()  # an interpreter holds its tensors: one call at a time

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """A (len(texts), classes) matrix of class probabilities."""
        if not texts:
            return np.zeros((0, len(self.classes)), np.float32)
        x = dense(texts, self.features)
        with self._lock:
            if len(texts) != self._batch:
                self._interpreter.resize_tensor_input(self._input, [len(texts), self.features.dim])
                self._interpreter.allocate_tensors()
                self._batch = len(texts)
            self._interpreter.set_tensor(self._input, x)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output).copy()

    def predict(self, texts: list[str]) -> list[Prediction]:
        probs = self.probabilities(texts)
        best = probs.argmax(axis=1) if len(texts) else []
        return [Prediction(self.classes[int(i)], round(float(probs[row, i]), 4)) for row, i in enumerate(best)]
