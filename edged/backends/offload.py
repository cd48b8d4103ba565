"""Where llama.cpp put a model's layers (CPU or a GPU), read from its own load log.

``n_gpu_layers`` asks llama.cpp to offload layers; a llama-cpp-python wheel built without a GPU
backend ignores it without a word and runs everything on the CPU (a Jetson with the wrong wheel
would be about ten times slower and nobody would know). So the llama_cpp backend:

- refuses ``n_gpu_layers != 0`` when ``llama_supports_gpu_offload()`` is false, with what to install
  or set instead (``check_offload``): a box that was meant to use its GPU does not start on the CPU.
  Refused rather than warned because a warning lands in a journal nobody reads, while a refused start
  is what a rolling upgrade's health check stops at, on the first box;
- captures llama.cpp's log while the model loads (``captured_log``; the log is otherwise dropped with
  ``verbose=False``) and counts the ``layer N assigned to device X`` lines (``placement``), which
  status and the web page show.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from collections import Counter
from typing import Any, Iterator

from edged.backends.base import ModelUnavailable

CUDA_HINT = (
    'install a llama-cpp-python built with CUDA (CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall'
    " --no-cache-dir llama-cpp-python, on a Jetson with JetPack's CUDA) or set [backend] n_gpu_layers = 0"
    " to run on the CPU"
)
_ASSIGNED = re.compile(r"layer\s+(\d+) assigned to device (\S+?),")
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


def gpu_offload_supported(lib: Any) -> bool:
    try:
        return bool(lib.llama_supports_gpu_offload())
    except (AttributeError, OSError):  # an old wheel without the call cannot offload either
        return False


def check_offload(lib: Any, n_gpu_layers: int) -> bool:
    """Whether this llama-cpp-python can offload; raises ModelUnavailable when layers are asked for
    and it cannot."""
    supported = gpu_offload_supported(lib)
    if n_gpu_layers != 0 and not supported:
        raise ModelUnavailable(
            f"[backend] n_gpu_layers = {n_gpu_layers} asks for GPU offload, but this llama-cpp-python was built"
            f" without a GPU backend (llama_supports_gpu_offload() is false), so every layer would run on the"
            f" CPU: {CUDA_HINT}"
        )
    return supported


@contextlib.contextmanager
def captured_log(lib: Any) -> Iterator[list[str]]:
    """llama.cpp's log lines while the block runs (then llama-cpp-python's own handler is put back)."""
    lines: list[str] = []

    @lib.llama_log_callback
    def keep(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", "replace"))

    lib.llama_log_set(keep, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        from llama_cpp import _logger

        lib.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def placement(log_lines: list[str], requested: int, supported: bool) -> dict[str, Any]:
    """``{"devices": {"CPU": 30}, "gpu_layers": 0, "layers": 30, "requested_gpu_layers": 0,
    "gpu_offload_supported": False, "summary": "30 of 30 layers on CPU"}``; devices is None when the
    log said nothing about them (a llama.cpp that logs differently)."""
    devices: dict[int, str] = {}
    offloaded = None
    for line in "".join(log_lines).splitlines():
        if m := _ASSIGNED.search(line):
            devices[int(m.group(1))] = m.group(2)
        elif m := _OFFLOADED.search(line):
            offloaded = (int(m.group(1)), int(m.group(2)))
    counts = dict(Counter(devices.values())) if devices else None
    if offloaded is not None:
        gpu, layers = offloaded
    elif counts is not None:
        layers = len(devices)
        gpu = sum(n for device, n in counts.items() if not device.startswith("CPU"))
    else:
        gpu = layers = None
    if counts:
        summary = ", ".join(f"{n} of {len(devices)} layers on {device}" for device, n in sorted(counts.items()))
    elif offloaded is not None:
        summary = f"{gpu} of {layers} layers on the GPU"
    else:
        summary = "not reported by llama.cpp"
    return {
        "devices": counts, "gpu_layers": gpu, "layers": layers, "requested_gpu_layers": requested,
        "gpu_offload_supported": supported, "summary": summary,
    }
