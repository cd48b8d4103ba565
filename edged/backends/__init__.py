"""Inference backends behind one interface (the contract is base.py's docstring; fake.py is the
scripted one for tests).

Each backend is one module holding its key, its config and its implementation:

- ``KEY``: the ``[backend] type`` that selects it;
- ``Config``: its pydantic config model, ``type: Literal[KEY]``;
- ``NEEDS_MODEL_FILE``: whether edged resolves ``[model]`` to a verified local file for it;
- ``create(config, model) -> Backend``.

``MODULES`` is the one list: the registry (``BACKENDS``) and the ``[backend]`` config union are both
built from it, so adding a backend is one module plus one line here. The modules themselves are
light (a config model and Python code); the library each one drives (llama_cpp, tensorrt_llm) is
imported only inside ``create``, when that backend is selected, so a Raspberry Pi never imports
TensorRT and ``edged config check`` loads no model library.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from edged.backends import fake, llama_cpp, openai_http, tensorrt_llm
from edged.backends.base import Backend, BackendError, Completion, CompletionRequest, ModelUnavailable, Token

if TYPE_CHECKING:
    from edged.models.resolve import ResolvedModel

MODULES: tuple[ModuleType, ...] = (llama_cpp, openai_http, tensorrt_llm, fake)

# The explicit registry: [backend] type -> the module that implements it.
BACKENDS: dict[str, ModuleType] = {module.KEY: module for module in MODULES}

BackendConfig = Annotated[Union[tuple(module.Config for module in MODULES)], Field(discriminator="type")]

DEFAULT_BACKEND = llama_cpp.KEY  # what [backend] means without a type


def default_config() -> Any:
    return BACKENDS[DEFAULT_BACKEND].Config()


def needs_model_file(config: Any) -> bool:
    """Whether the configured backend loads a local model file (resolved from ``[model]``)."""
    return bool(BACKENDS[config.type].NEEDS_MODEL_FILE)


def create_backend(config: Any, model: "ResolvedModel | None") -> Backend:
    """Build the configured backend. ``model`` is the resolved local model file (None for servers)."""
    return BACKENDS[config.type].create(config, model)


__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "MODULES",
    "Backend",
    "BackendConfig",
    "BackendError",
    "Completion",
    "CompletionRequest",
    "ModelUnavailable",
    "Token",
    "create_backend",
    "default_config",
    "needs_model_file",
]
