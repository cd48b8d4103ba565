"""Any OpenAI-compatible HTTP server: llama.cpp server, Ollama, trtllm-serve, vLLM."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OpenAIHttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["openai_http"] = "openai_http"
    url: str = Field("http://127.0.0.1:8000/v1", description="base URL of the server's OpenAI API")
    model: str = Field("default", description="model id to ask the server for")
    api_key_file: Path | None = Field(None, description="file holding a bearer token, if the server wants one")
    timeout_s: float = Field(60.0, gt=0, description="per-request timeout")


def create(config: OpenAIHttpConfig, model):
    raise NotImplementedError
