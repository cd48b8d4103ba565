"""Where the llama_cpp backend's layers run: read from llama.cpp's own load log, shown in the web
status; layers asked of a GPU on a build that cannot offload refuse the start with what to do."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from edged.backends import ModelUnavailable, create_backend
from edged.backends.llama_cpp import LlamaCppConfig
from edged.backends.offload import gpu_offload_supported, placement
from tests.support.llama_server import default_model_path


@pytest.fixture(scope="module")
def model() -> SimpleNamespace:
    path = default_model_path()
    if path is None:
        pytest.fail("the default model file is missing: run `make model`", pytrace=False)
    return SimpleNamespace(name="smollm2-135m", path=Path(path), sha256="0" * 64, verified=True)


def test_placement_counts_the_devices_llama_cpp_logged() -> None:
    log = [f"load_tensors: layer {i:3d} assigned to device {'CPU' if i < 2 else 'CUDA0'}, is_swa = 0\n" for i in range(5)]
    p = placement(log, -1, True)
    assert p["devices"] == {"CPU": 2, "CUDA0": 3} and p["gpu_layers"] == 3 and p["layers"] == 5
    assert p["summary"] == "2 of 5 layers on CPU, 3 of 5 layers on CUDA0"
    assert placement([], 0, False)["summary"] == "not reported by llama.cpp"


def test_the_backend_reports_where_its_layers_went(model) -> None:
    backend = create_backend(LlamaCppConfig(threads=1, n_ctx=512, n_gpu_layers=0), model)
    try:
        p = backend.placement()
    finally:
        backend.close()
    assert p["requested_gpu_layers"] == 0 and p["gpu_layers"] == 0
    assert p["devices"] and set(p["devices"]) == {"CPU"}
    assert p["layers"] == p["devices"]["CPU"] > 0
    assert p["summary"] == f"{p['layers']} of {p['layers']} layers on CPU"


def test_gpu_layers_on_a_build_without_offload_refuse_to_start(model) -> None:
    import llama_cpp

    if gpu_offload_supported(llama_cpp):
        backend = create_backend(LlamaCppConfig(threads=1, n_ctx=512, n_gpu_layers=-1), model)
        try:
            assert backend.placement()["gpu_layers"] > 0  # a GPU build: the layers left the CPU
        finally:
            backend.close()
        return
    with pytest.raises(ModelUnavailable) as info:
        create_backend(LlamaCppConfig(threads=1, n_gpu_layers=-1), model)
    message = str(info.value)
    assert "[backend] n_gpu_layers = -1" in message and "without a GPU backend" in message
    assert "GGML_CUDA" in message and "n_gpu_layers = 0" in message
