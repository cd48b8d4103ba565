"""Any OpenAI-compatible HTTP server: llama.cpp server, Ollama, trtllm-serve, vLLM.

Standard library only (``urllib``). A call POSTs ``{url}/chat/completions`` with the system and user
messages, ``temperature: 0``, ``max_tokens``, ``logprobs``/``top_logprobs`` and the schema as a structured
output. Servers disagree on how the schema is sent, so ``structured_output`` picks the form:

- ``json_schema``: OpenAI structured outputs, ``response_format: {"type": "json_schema", "json_schema":
  {"name": "result", "schema": ..., "strict": true}}``. OpenAI, vLLM, Ollama (0.5+), trtllm-serve and the
  C++ llama.cpp server (``llama-server``) accept it.
- ``json_object``: ``response_format: {"type": "json_object", "schema": ...}``, the form llama-cpp-python's
  ``python -m llama_cpp.server`` accepts (it answers 422 to ``json_schema``); llama-server accepts it too.
  The schema is sent rewritten the way grammar.py rewrites it (an integer range becomes an enum, a type
  list becomes ``anyOf``), because those servers' converters ignore integer bounds.
- ``grammar``: llama.cpp's ``grammar`` extension field with the GBNF grammar.py builds (llama.cpp servers
  only; others ignore the field and the output is then checked and refused).
- ``auto`` (default): ``json_schema`` first; when the server rejects it (HTTP 400/422, or 500 as
  llama-cpp-python's server answers validation errors, naming the response format), ``json_object``; the
  form that worked is remembered for later calls.

If the server rejects ``logprobs`` (HTTP 400/422/500 naming it), the call is retried once without and later
calls do not ask again; ``Completion.tokens`` is then []. Whatever the server returns is checked with
``json.loads`` and the schema validator: a server that ignored the structured-output request gives a
BackendError, never a document that breaks the contract.

Errors: connection refused, timeouts, HTTP errors and unparsable answers raise BackendError with the URL;
``create`` does one GET ``{url}/models`` and raises ModelUnavailable if the server cannot be reached.
One thread at a time (no shared connection state, but the remembered fallbacks are plain attributes).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from edged.backends.base import Backend, BackendError, Completion, CompletionRequest, ModelUnavailable
from edged.backends.grammar import rewrite_schema, check_output, schema_to_gbnf, tokens_from_openai

MAX_TOP_LOGPROBS = 20  # OpenAI's limit; servers that allow more do not need more here


KEY: Final = "openai_http"  # [backend] type
NEEDS_MODEL_FILE: Final = False  # whether edged resolves [model] to a local file for it


class OpenAIHttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal[KEY] = KEY
    url: str = Field("http://127.0.0.1:8000/v1", description="base URL of the server's OpenAI API")
    model: str = Field(
        "default", description="model id to ask the server for; \"default\": the first id its /models lists"
    )
    api_key_file: Path | None = Field(None, description="file holding a bearer token, if the server wants one")
    timeout_s: float = Field(60.0, gt=0, description="per-request timeout")
    structured_output: Literal["auto", "json_schema", "json_object", "grammar"] = Field(
        "auto",
        description=(
            "how the output schema is sent: json_schema (OpenAI structured outputs: OpenAI, vLLM, Ollama, "
            "trtllm-serve, llama-server), json_object (llama-cpp-python's server), grammar (llama.cpp GBNF "
            "field), auto (json_schema, falling back to json_object when the server rejects it)"
        ),
    )


class _HTTPFailure(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class OpenAIHttpBackend(Backend):
    name = KEY

    def __init__(self, config: OpenAIHttpConfig) -> None:
        self.config = config
        self.base = config.url.rstrip("/")
        self.model_name = config.model
        self.model_sha256 = None
        self.structured_output = config.structured_output
        self.send_logprobs = True
        self._token: str | None = None
        if config.api_key_file is not None:
            try:
                self._token = config.api_key_file.read_text().strip()
            except OSError as exc:
                raise ModelUnavailable(f"cannot read api_key_file {config.api_key_file}: {exc.strerror}") from None
        # Plain opener: no redirects to follow into other hosts matter here; honours *_proxy/no_proxy.
        self._opener = urllib.request.build_opener()

    # --- HTTP ----------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> Any:
        url = f"{self.base}{path}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                text = exc.read().decode("utf-8", errors="replace")
            except Exception:
                text = ""
            raise _HTTPFailure(exc.code, text) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ConnectionRefusedError):
                raise BackendError(f"{method} {url}: connection refused (is the server running?)") from None
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise BackendError(f"{method} {url}: no answer within {timeout:g} s") from None
            raise BackendError(f"{method} {url}: {reason}") from None
        except (socket.timeout, TimeoutError):
            raise BackendError(f"{method} {url}: no answer within {timeout:g} s") from None
        except (ConnectionError, OSError) as exc:  # reset or closed mid-answer
            raise BackendError(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise BackendError(f"{method} {url}: the answer is not JSON: {raw[:200]!r}") from None

    def check_reachable(self) -> list[str]:
        """GET {url}/models; the model ids the server lists. ModelUnavailable when it cannot be reached."""
        timeout = min(self.config.timeout_s, 10.0)
        try:
            listing = self._request("GET", "/models", None, timeout)
        except BackendError as exc:
            raise ModelUnavailable(f"the OpenAI-compatible server at {self.base} is unreachable: {exc}") from None
        except _HTTPFailure as exc:
            if exc.status in (401, 403):
                hint = "check api_key_file" if self._token else "it wants a key: set api_key_file"
                raise ModelUnavailable(f"the server at {self.base} refused access (HTTP {exc.status}): {hint}") from None
            if exc.status >= 500:
                raise ModelUnavailable(
                    f"the server at {self.base} is not working: GET /models gave HTTP {exc.status}: {exc.body[:200]}"
                ) from None
            return []  # reachable; some servers have no /models
        data = listing.get("data") if isinstance(listing, dict) else None
        return [m["id"] for m in data or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]

    # --- the call ------------------------------------------------------------------------------------------

    def _body(self, request: CompletionRequest, form: str, logprobs: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.user},
            ],
            "temperature": 0,
            "max_tokens": request.max_tokens,
            "stream": False,
        }
        if form == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "result", "schema": request.schema, "strict": True},
            }
        elif form == "json_object":
            body["response_format"] = {"type": "json_object", "schema": rewrite_schema(request.schema)}
        elif form == "grammar":
            try:
                body["grammar"] = schema_to_gbnf(request.schema)
            except (ValueError, ImportError) as exc:
                raise BackendError(f"cannot build a GBNF grammar for the server: {exc}") from None
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = max(0, min(request.top_logprobs, MAX_TOP_LOGPROBS))
        return body

    def complete(self, request: CompletionRequest) -> Completion:
        start = time.perf_counter()
        form = "json_schema" if self.structured_output == "auto" else self.structured_output
        logprobs = self.send_logprobs
        answer = None
        for _ in range(3):  # at most: the first try, a response-format fallback, a logprobs fallback
            try:
                answer = self._request("POST", "/chat/completions", self._body(request, form, logprobs),
                                       self.config.timeout_s)
                break
            except _HTTPFailure as exc:
                text = exc.body.lower()
                # Rejections come as 400/422, or as 500 from llama-cpp-python's server (its validation errors).
                rejected = exc.status in (400, 422, 500)
                if rejected and self.structured_output == "auto" and form == "json_schema" and (
                    "response_format" in text or "json_schema" in text
                ):
                    form = "json_object"
                    continue
                if rejected and logprobs and "logprob" in text:
                    logprobs = False
                    continue
                if exc.status in (401, 403):
                    raise BackendError(
                        f"POST {self.base}/chat/completions: HTTP {exc.status} (check api_key_file): {exc.body[:200]}"
                    ) from None
                raise BackendError(
                    f"POST {self.base}/chat/completions: HTTP {exc.status}: {exc.body[:300]}"
                ) from None
        if answer is None:
            raise BackendError(f"POST {self.base}/chat/completions: rejected every request form tried")
        if self.structured_output == "auto":
            self.structured_output = form
        self.send_logprobs = logprobs
        latency = time.perf_counter() - start
        try:
            return self._completion(answer, request, latency)
        except (AttributeError, TypeError, ValueError) as exc:  # a field of an unexpected type
            raise BackendError(f"{self.base}/chat/completions: unexpected answer ({exc}): {str(answer)[:200]}") from None

    def _completion(self, answer: Any, request: CompletionRequest, latency: float) -> Completion:
        where = f"{self.base}/chat/completions"
        try:
            choice = answer["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"{where}: unexpected answer (no choices[0].message): {str(answer)[:200]}") from None
        text = message.get("content")
        if not isinstance(text, str):
            refusal = message.get("refusal")
            raise BackendError(f"{where}: no content in the answer{f' (refusal: {refusal})' if refusal else ''}")
        problem = check_output(text, request.schema)
        if problem is not None:
            cut = " (finish_reason=length: raise max_tokens)" if choice.get("finish_reason") == "length" else ""
            raise BackendError(
                f"{where}: the answer does not match the schema{cut}; does the server support structured "
                f"output form {self.structured_output!r}? {problem}"
            )
        logprobs = choice.get("logprobs") or {}
        tokens = tokens_from_openai(
            logprobs.get("content") if isinstance(logprobs, dict) else None, request.top_logprobs
        )
        usage = answer.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens")
        if cached is None:  # llama-server reports its prompt cache in "timings"
            cached = (answer.get("timings") or {}).get("cache_n", 0)
        return Completion(
            text=text,
            tokens=tokens,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or len(tokens)),
            cached_prompt_tokens=int(cached or 0),
            latency_s=latency,
        )


def create(config: OpenAIHttpConfig, model=None) -> OpenAIHttpBackend:
    """Connect to the server (``model``, a local file, is not used). ModelUnavailable if it is unreachable."""
    backend = OpenAIHttpBackend(config)
    ids = backend.check_reachable()
    if config.model == "default" and ids:
        backend.model_name = ids[0]  # vLLM and Ollama refuse a model id they do not serve
    return backend


Config = OpenAIHttpConfig  # the registry (edged.backends) builds the [backend] union from these
