"""The seam between edged and a language model: one abstract method, ``complete``.

Contract (every backend keeps it; ``FakeBackend`` in fake.py is the reference for tests):

- ``complete(request)`` runs the model on ``request.system`` + ``request.user`` as a chat and
  returns a ``Completion`` whose ``text`` is a JSON document that parses with ``json.loads`` and
  validates against ``request.schema`` (the backend constrains decoding with a grammar built from the
  schema, or uses the server's structured-output mode). Greedy decoding (temperature 0): the same
  request gives the same text, so results are reproducible and cacheable.
- ``request.system`` is identical across consecutive calls of one task: a backend with a prompt
  cache (llama.cpp) reuses the KV cache of that shared prefix, so it must not add anything variable
  (dates, ids) before the user message.
- ``Completion.tokens`` lists the generated tokens in order with their log-probabilities under the
  model's raw distribution (before the grammar mask) and up to ``request.top_logprobs`` alternatives
  each, so callers can compute a confidence. A backend that cannot provide them returns [].
- ``request.stop_repeat_ngram`` (n > 0): a backend that decodes token by token may stop where a word
  n-gram repeats, close the JSON document there and set ``Completion.repetition_cut``; the others
  ignore it (callers cut repeated text afterwards).
- ``request.string_check``: when set, a string value of an object member for which it returns False
  (given what has been written of the value so far) can only end up thrown away. A backend that decodes
  token by token may write ``null`` in its place at that moment, where the schema allows null there;
  the others ignore it (callers check finished values anyway).
- Errors: ``BackendError`` for a failed call (the analyzer retries it a few times, then parks the
  record); ``ModelUnavailable`` at construction when the model or server cannot be loaded at all
  (edged refuses to start, with the message as it is).
- A backend is used from one thread at a time.
- A backend module (registered in ``edged.backends.MODULES``) holds ``KEY`` (its ``[backend] type``),
  ``Config`` (its pydantic config, ``type: Literal[KEY]``), ``NEEDS_MODEL_FILE`` and
  ``create(config, model)``; it imports the library it drives only inside ``create``. It never imports
  the store or the settings tree: what it needs arrives as its own ``Config`` and the resolved model.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable


class BackendError(RuntimeError):
    """One call failed; the same call may succeed later."""


class ModelUnavailable(RuntimeError):
    """The model cannot be used at all (missing file, bad checksum, server unreachable at start)."""


@dataclass(frozen=True)
class CompletionRequest:
    system: str
    user: str
    schema: dict[str, Any]
    max_tokens: int = 128
    top_logprobs: int = 10
    stop_repeat_ngram: int = 0  # > 0: end the answer where a word n-gram of this size repeats (if supported)
    string_check: Callable[[str], bool] | None = None  # False: a value string written so far cannot be kept


@dataclass(frozen=True)
class Token:
    text: str
    logprob: float
    top_logprobs: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: list[Token]
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0  # prompt tokens served from the KV cache, where the backend knows
    latency_s: float = 0.0
    repetition_cut: bool = False  # decoding stopped at a repeated n-gram (stop_repeat_ngram) and the JSON was closed


class Backend(abc.ABC):
    """A language model edged can ask. See the module docstring for the contract."""

    name: str = "backend"
    model_name: str = ""  # what results record as the model (file name or server model id)
    model_sha256: str | None = None

    @abc.abstractmethod
    def complete(self, request: CompletionRequest) -> Completion: ...

    def placement(self) -> dict[str, Any] | None:
        """Where the model's layers run, for status and the page (``{"device": ..., ...}``); None when
        the backend cannot tell (a remote server)."""
        return None

    def close(self) -> None:
        """Release the model; the default has nothing to release."""
