"""A scripted backend for unit tests of pipeline logic. Never proof that inference works."""

from __future__ import annotations

import json
from typing import Any, Callable, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from edged.backends.base import Backend, BackendError, Completion, CompletionRequest


KEY: Final = "fake"  # [backend] type
NEEDS_MODEL_FILE: Final = False  # whether edged resolves [model] to a local file for it


class FakeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal[KEY] = KEY
    label: str = Field("normal", description="label every classification returns (tests only)")


def _default_answer(schema: dict[str, Any], label: str) -> dict[str, Any]:
    """The smallest document that satisfies the schemas edged's tasks use."""
    out: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type")
        kind = kind[0] if isinstance(kind, list) else kind
        if "enum" in prop:
            out[name] = label if label in prop["enum"] else prop["enum"][0]
        elif kind == "integer":
            out[name] = prop.get("minimum", 0)
        elif kind == "number":
            out[name] = 0
        elif kind == "boolean":
            out[name] = False
        else:
            out[name] = "fake"[: prop.get("maxLength", 4)]
    return out


class FakeBackend(Backend):
    name = KEY

    def __init__(self, config: FakeConfig | None = None, answer: Callable[[CompletionRequest], Any] | None = None):
        self.config = config or FakeConfig()
        self.model_name = "fake"
        self.answer = answer
        self.calls: list[CompletionRequest] = []
        self.fail_next = 0  # make the next N calls raise BackendError

    def complete(self, request: CompletionRequest) -> Completion:
        self.calls.append(request)
        if self.fail_next > 0:
            self.fail_next -= 1
            raise BackendError("scripted failure")
        doc = self.answer(request) if self.answer else _default_answer(request.schema, self.config.label)
        text = doc if isinstance(doc, str) else json.dumps(doc)
        return Completion(text=text, tokens=[], prompt_tokens=len(request.user.split()), completion_tokens=1)


def create(config: FakeConfig, model: object) -> FakeBackend:
    return FakeBackend(config)


Config = FakeConfig  # the registry (edged.backends) builds the [backend] union from these
