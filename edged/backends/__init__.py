"""Inference backends behind one interface (base.py). Each backend is one module holding its key,
its pydantic config (``type: Literal[KEY]``) and its implementation; the heavy library it needs is
imported only inside ``create``, so a Raspberry Pi never imports TensorRT.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from edged.backends.base import Backend, BackendError, Completion, CompletionRequest, ModelUnavailable, Token
from edged.backends.fake import FakeConfig
from edged.backends.llama_cpp import LlamaCppConfig
from edged.backends.openai_http import OpenAIHttpConfig
from edged.backends.tensorrt_llm import TensorRTLLMConfig

if TYPE_CHECKING:
    from edged.models.resolve import ResolvedModel

# The explicit registry: config key -> module that implements it (imported when selected).
BACKENDS = {
    "llama_cpp": "edged.backends.llama_cpp",
    "openai_http": "edged.backends.openai_http",
    "tensorrt_llm": "edged.backends.tensorrt_llm",
    "fake": "edged.backends.fake",
}

BackendConfig = Annotated[
    Union[LlamaCppConfig, OpenAIHttpConfig, TensorRTLLMConfig, FakeConfig],
    Field(discriminator="type"),
]


def create_backend(config: "BackendConfig", model: "ResolvedModel | None") -> Backend:
    """Build the configured backend. ``model`` is the resolved local model file (None for servers)."""
    module = importlib.import_module(BACKENDS[config.type])
    return module.create(config, model)


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendConfig",
    "BackendError",
    "Completion",
    "CompletionRequest",
    "ModelUnavailable",
    "Token",
    "create_backend",
]
