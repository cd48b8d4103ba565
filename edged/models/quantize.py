"""Quantize a GGUF model with llama.cpp's quantizer (through llama-cpp-python) and say what it did.

llama.cpp does not always use the requested type: K-quants (Q4_K_M, ...) pack weights in blocks of
256 values, so a tensor whose rows are not a multiple of 256 long is written in a fallback type
(SmolLM2-135M is 576 wide: most of its tensors end up Q5_0 under "Q4_K_M"). The report therefore
counts the tensor types of the input and of the output, read back from the files' GGUF headers, and
quotes llama.cpp's own fallback summary.

A faithful quantization starts from an unquantized (F32/F16/BF16) GGUF. Quantizing an already
quantized file (the Q4_1 default model) is a requantization: allowed only when asked for, and
labelled as such in the report.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edged.models.gguf import LLAMA_FTYPES, UNQUANTIZED_TYPES, GGUFHeader, NotGGUF, read_header

K_BLOCK = 256  # QK_K: values per K-quant super-block
FTYPE_BY_NAME = {name: value for value, name in LLAMA_FTYPES.items() if name not in ("MXFP4_MOE",)}


class QuantizeError(RuntimeError):
    """The quantization was refused or failed; the message says why."""


@dataclass
class FileSummary:
    path: str
    size: int
    file_type: str | None
    tensors: int
    tensor_types: dict[str, int]


@dataclass
class QuantizeReport:
    target: str
    requantized: bool
    input: FileSummary
    output: FileSummary
    # Quantized output tensors whose rows are not a multiple of 256 long, by output type: with a
    # K-quant target these are the fallbacks.
    fallback_row_lengths: list[int] = field(default_factory=list)
    fallback_types: dict[str, int] = field(default_factory=dict)
    quantized_tensors: int = 0
    llama_cpp_notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        def counts(s: FileSummary) -> str:
            return ", ".join(f"{t} {n}" for t, n in sorted(s.tensor_types.items(), key=lambda kv: -kv[1]))

        lines = [f"quantized {self.input.path} -> {self.output.path} as {self.target} in {self.seconds:.1f} s"]
        if self.requantized:
            lines.append(
                f"REQUANTIZATION: the input is already quantized ({self.input.file_type}); its quantized weights"
                " were quantized again, so the errors of both add up. For a faithful result quantize an"
                " F16/F32 GGUF."
            )
        for label, s in (("input ", self.input), ("output", self.output)):
            lines.append(
                f"{label}: {s.file_type or '?'}, {s.size:,} bytes, {s.tensors} tensors: {counts(s)}"
            )
        if self.fallback_types and _is_k_quant(self.target):
            n = sum(self.fallback_types.values())
            rows = ", ".join(str(r) for r in self.fallback_row_lengths)
            by_type = ", ".join(f"{t} {c}" for t, c in sorted(self.fallback_types.items(), key=lambda kv: -kv[1]))
            lines.append(
                f"fallback: {n} of {self.quantized_tensors} quantized tensors have rows of {rows} values, not a multiple"
                f" of {K_BLOCK} (the K-quant block), so they are not K-quants: {by_type}"
            )
        for note in self.llama_cpp_notes:
            lines.append(f"llama.cpp: {note}")
        return "\n".join(lines)


def _is_k_quant(name: str) -> bool:
    return "_K" in name


def _summary(path: Path, header: GGUFHeader) -> FileSummary:
    return FileSummary(
        path=str(path),
        size=path.stat().st_size,
        file_type=header.file_type,
        tensors=len(header.tensors),
        tensor_types=dict(header.type_counts()),
    )


def _read(path: Path, what: str) -> GGUFHeader:
    try:
        return read_header(path)
    except NotGGUF as exc:
        raise QuantizeError(f"{what} {path} is not a GGUF model file: {exc}") from None
    except OSError as exc:
        raise QuantizeError(f"{what} {path}: {exc.strerror}") from None


class _CaptureLlamaLog:
    """Collects llama.cpp's log while quantizing (it explains fallbacks); restores the default after."""

    def __init__(self, echo: bool):
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.echo = echo
        self.parts: list[str] = []

        @llama_cpp.llama_log_callback
        def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            s = text.decode("utf-8", errors="replace")
            self.parts.append(s)
            if self.echo:
                print(s, end="", flush=True, file=sys.stderr)

        self.callback = callback  # keep a reference: llama.cpp holds only the C pointer

    def __enter__(self) -> "_CaptureLlamaLog":
        self.llama_cpp.llama_log_set(self.callback, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            from llama_cpp._logger import llama_log_callback

            self.llama_cpp.llama_log_set(llama_log_callback, ctypes.c_void_p(0))
        except ImportError:  # pragma: no cover - layout of another llama-cpp-python version
            self.llama_cpp.llama_log_set(self.llama_cpp.llama_log_callback(0), ctypes.c_void_p(0))

    def notes(self) -> list[str]:
        text = "".join(self.parts)
        keep = []
        for line in text.splitlines():
            line = line.strip()
            if "fallback" in line.lower() and "required" in line.lower():
                keep.append(line.split(": ", 1)[-1] if line.startswith("llama_") else line)
        return keep


def quantize_model(
    inp: Path,
    out: Path,
    target: str = "Q4_K_M",
    *,
    allow_requantize: bool = False,
    threads: int = 0,
    overwrite: bool = False,
    verbose: bool = False,
) -> QuantizeReport:
    """Quantize ``inp`` to ``out`` (written atomically) as ``target``; returns what happened."""
    name = target.upper()
    if name not in FTYPE_BY_NAME:
        raise QuantizeError(f"unknown type {target!r}; one of: {', '.join(quantize_types())}")
    if not inp.is_file():
        raise QuantizeError(f"input {inp} does not exist")
    if out.exists() and out.resolve() == inp.resolve():
        raise QuantizeError("output must be a different file from the input")
    if out.exists() and not overwrite:
        raise QuantizeError(f"output {out} exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise QuantizeError(f"output directory {out.parent} does not exist")
    in_header = _read(inp, "input")
    requantize = in_header.is_quantized()
    if requantize and not allow_requantize:
        quantized = sorted({t.type for t in in_header.tensors} - UNQUANTIZED_TYPES)
        raise QuantizeError(
            f"input {inp} is already quantized ({in_header.file_type}; tensors in {', '.join(quantized)}).\n"
            f"Quantizing it again adds a second rounding error; for a faithful {name} use an F16/F32 GGUF of the"
            " model. To requantize anyway, pass --allow-requantize."
        )

    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - llama-cpp-python is a dependency of the backend
        raise QuantizeError(f"llama-cpp-python is not installed: {exc}") from None

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPE_BY_NAME[name]
    params.nthread = threads
    params.allow_requantize = bool(allow_requantize)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    started = time.monotonic()
    try:
        with _CaptureLlamaLog(echo=verbose) as captured:
            rc = llama_cpp.llama_model_quantize(str(inp).encode(), str(partial).encode(), ctypes.byref(params))
        if rc != 0:
            tail = "".join(captured.parts)[-800:].strip()
            raise QuantizeError(f"llama.cpp could not quantize {inp} (status {rc}):\n{tail}")
        os.replace(partial, out)
    finally:
        if partial.exists():
            partial.unlink()
    seconds = time.monotonic() - started

    out_header = _read(out, "output")
    quantized = [t for t in out_header.tensors if t.type not in UNQUANTIZED_TYPES]
    odd = [t for t in quantized if t.shape and t.shape[0] % K_BLOCK]
    return QuantizeReport(
        target=name,
        requantized=requantize,
        input=_summary(inp, in_header),
        output=_summary(out, out_header),
        fallback_row_lengths=sorted({t.shape[0] for t in odd}),
        fallback_types=dict(Counter(t.type for t in odd)),
        quantized_tensors=len(quantized),
        llama_cpp_notes=captured.notes(),
        seconds=seconds,
    )


def quantize_types() -> list[str]:
    return list(FTYPE_BY_NAME)

