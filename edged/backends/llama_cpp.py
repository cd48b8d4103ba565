"""In-process llama.cpp (llama-cpp-python) on a GGUF file: the default backend."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LlamaCppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["llama_cpp"] = "llama_cpp"
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, description="CPU threads")
    n_ctx: int = Field(2048, ge=256, description="context window in tokens")
    n_batch: int = Field(512, ge=16, description="prompt tokens evaluated per batch")
    n_gpu_layers: int = Field(0, ge=-1, description="layers offloaded to a GPU (CUDA build on Jetson; -1 = all)")


def create(config: LlamaCppConfig, model):  # implementation below
    raise NotImplementedError
