"""A small reader for the header of a GGUF file: metadata and tensor descriptions, no weights.

Used to tell a model file from a corrupt or foreign one (the 4-byte magic ``GGUF``), to name a
file's quantization, and to count tensor types before and after ``edged model quantize``.
Pure Python on purpose: resolving a model at start must not load llama.cpp.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"

# ggml_type (ggml.h); gaps are types llama.cpp removed.
GGML_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
    16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
    34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4", 40: "NVFP4", 41: "Q1_0", 42: "Q2_0",
}
UNQUANTIZED_TYPES = {"F32", "F16", "BF16", "F64"}

# llama_ftype (llama.h), the value of general.file_type: what a file as a whole is called.
LLAMA_FTYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
    18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S",
    25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M",
    32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}

# GGUF metadata value types.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class NotGGUF(ValueError):
    """The file is not a GGUF model (wrong magic, truncated or unreadable header)."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    type: str


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)

    @property
    def file_type(self) -> str | None:
        value = self.metadata.get("general.file_type")
        return None if value is None else LLAMA_FTYPES.get(int(value), f"ftype{value}")

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    def type_counts(self) -> Counter[str]:
        return Counter(t.type for t in self.tensors)

    def is_quantized(self) -> bool:
        return any(t.type not in UNQUANTIZED_TYPES for t in self.tensors)


def has_gguf_magic(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == MAGIC


class _Reader:
    def __init__(self, f: BinaryIO):
        self.f = f

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise NotGGUF("truncated GGUF header")
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > 1 << 30:
            raise NotGGUF("implausible string length in GGUF header")
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep_arrays: bool) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if etype in _SCALARS and not keep_arrays:
                self.f.seek(struct.calcsize(_SCALARS[etype]) * count, 1)
                return f"<array of {count}>"
            items = [self.value(etype, keep_arrays) for _ in range(count)]
            return items if keep_arrays else f"<array of {count}>"
        raise NotGGUF(f"unknown GGUF value type {vtype}")


def read_header(path: Path, *, keep_arrays: bool = False) -> GGUFHeader:
    """Parse metadata and tensor infos. Arrays (the tokenizer's vocabulary) are skipped unless asked."""
    with open(path, "rb") as raw:
        r = _Reader(raw)
        magic = raw.read(4)
        if magic != MAGIC:
            raise NotGGUF(f"starts with {magic!r}, not the GGUF magic {MAGIC!r}")
        version = r.unpack("<I")
        if version < 2:
            raise NotGGUF(f"GGUF version {version} is too old")
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string()
            metadata[key] = r.value(r.unpack("<I"), keep_arrays)
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.unpack("<I")
            shape = tuple(r.unpack("<Q") for _ in range(n_dims))
            ttype = r.unpack("<I")
            r.unpack("<Q")  # offset into the data section
            tensors.append(TensorInfo(name, shape, GGML_TYPES.get(ttype, f"type{ttype}")))
    return GGUFHeader(version=version, metadata=metadata, tensors=tensors)
