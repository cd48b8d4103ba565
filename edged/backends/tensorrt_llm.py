"""TensorRT-LLM in-process on a Jetson Orin with an INT4 engine. Import guarded: never on a Pi."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TensorRTLLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["tensorrt_llm"] = "tensorrt_llm"
    engine_dir: Path = Field(Path("/var/lib/edged/engines/smollm2-int4"), description="trtllm-build output")
    tokenizer_dir: Path = Field(
        Path("/var/lib/edged/engines/smollm2-tokenizer"), description="Hugging Face tokenizer files of the model"
    )


def create(config: TensorRTLLMConfig, model):
    raise NotImplementedError
