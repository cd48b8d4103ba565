"""TensorRT-LLM in-process on a Jetson Orin with an INT4 engine. Import guarded: never on a Pi.

NOT RUN ON REAL HARDWARE. This module is written against TensorRT-LLM's documented LLM API (the
``tensorrt_llm`` LLM API of the 0.17-1.x releases: ``LLM(model=engine_dir, tokenizer=tokenizer_dir,
guided_decoding_backend="xgrammar", kv_cache_config=KvCacheConfig(enable_block_reuse=True))``,
``SamplingParams(max_tokens, temperature=0.0, logprobs=k, guided_decoding=GuidedDecodingParams(json=schema))``,
``RequestOutput.outputs[0].text / .token_ids / .logprobs``). Its tests run against a small fake
``tensorrt_llm`` module that only checks the arguments built here and the mapping of the output; nobody has
run it with a real engine. Expect to adjust it on the first Jetson run:

- TensorRT-LLM for Jetson (JetPack 6) has been published as its own branch (v0.12.0-jetson), older than
  guided decoding; a JetPack build of a later release is needed for ``GuidedDecodingParams``.
- From 1.0 on, ``tensorrt_llm.LLM`` is the PyTorch backend; a prebuilt engine directory goes to
  ``tensorrt_llm._tensorrt_engine.LLM``, which ``create`` uses when it exists.
- ``outputs[0].logprobs`` is a list of floats (the chosen tokens' log-probabilities) in some versions and a
  list of ``{token_id: Logprob(logprob, rank)}`` in others; both are read. Whether TensorRT-LLM computes
  them before or after the guided-decoding mask is not verified (the contract wants the raw distribution).
- Block reuse of the KV cache (the shared system prefix) needs an engine built with paged context FMHA
  (``trtllm-build --use_paged_context_fmha enable``).

The output is checked with ``json.loads`` and the schema validator, like every backend's.
One thread at a time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from edged.backends.base import Backend, BackendError, Completion, CompletionRequest, ModelUnavailable, Token
from edged.backends.grammar import check_output

NOT_INSTALLED = (
    "tensorrt_llm is not installed; this backend runs on a Jetson with JetPack 6 and a TensorRT-LLM build for "
    "it, with an INT4 engine made by trtllm-build (see models/README.md). On other boxes use "
    "[backend] type = \"llama_cpp\""
)


KEY: Final = "tensorrt_llm"  # [backend] type
NEEDS_MODEL_FILE: Final = False  # whether edged resolves [model] to a local file for it


class TensorRTLLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal[KEY] = KEY
    engine_dir: Path = Field(Path("/var/lib/edged/engines/smollm2-int4"), description="trtllm-build output")
    tokenizer_dir: Path = Field(
        Path("/var/lib/edged/engines/smollm2-tokenizer"), description="Hugging Face tokenizer files of the model"
    )
    guided_decoding_backend: str = Field(
        "xgrammar", description="TensorRT-LLM's structured-output backend (xgrammar; llguidance in newer releases)"
    )
    enable_block_reuse: bool = Field(
        True, description="reuse KV-cache blocks of the shared prompt prefix (engine built with paged context FMHA)"
    )


class TensorRTLLMBackend(Backend):
    name = KEY

    def __init__(self, config: TensorRTLLMConfig, llm: Any, api: dict[str, Any]) -> None:
        self.config = config
        self.llm = llm
        self.api = api  # SamplingParams and GuidedDecodingParams of the installed tensorrt_llm
        self.model_name = config.engine_dir.name
        self.model_sha256 = None

    def _prompt(self, request: CompletionRequest) -> str:
        messages = [{"role": "system", "content": request.system}, {"role": "user", "content": request.user}]
        tokenizer = self.llm.tokenizer
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def sampling_params(self, request: CompletionRequest) -> Any:
        guided = self.api["GuidedDecodingParams"](json=request.schema)
        return self.api["SamplingParams"](
            max_tokens=request.max_tokens,
            temperature=0.0,  # greedy
            logprobs=request.top_logprobs if request.top_logprobs > 0 else None,
            guided_decoding=guided,
        )

    def complete(self, request: CompletionRequest) -> Completion:
        start = time.perf_counter()
        try:
            prompt = self._prompt(request)
            result = self.llm.generate(prompt, sampling_params=self.sampling_params(request))
        except Exception as exc:
            raise BackendError(f"TensorRT-LLM call failed: {type(exc).__name__}: {exc}") from exc
        if isinstance(result, list):
            result = result[0]
        try:
            output = result.outputs[0]
        except (AttributeError, IndexError, TypeError):
            raise BackendError(f"TensorRT-LLM returned no output: {result!r}"[:300]) from None
        text = output.text
        token_ids = list(getattr(output, "token_ids", None) or [])
        tokens = self._tokens(token_ids, getattr(output, "logprobs", None))
        problem = check_output(text, request.schema)
        if problem is not None:
            cut = " (stopped at max_tokens)" if getattr(output, "finish_reason", None) == "length" else ""
            raise BackendError(f"the TensorRT-LLM output does not validate against the schema{cut}: {problem}")
        prompt_ids = getattr(result, "prompt_token_ids", None) or []
        return Completion(
            text=text,
            tokens=tokens,
            prompt_tokens=len(prompt_ids),
            completion_tokens=len(token_ids),
            cached_prompt_tokens=0,  # not reported by the LLM API
            latency_s=time.perf_counter() - start,
        )

    def _tokens(self, token_ids: list[int], logprobs: Any) -> list[Token]:
        if not token_ids or not logprobs or len(logprobs) != len(token_ids):
            return []
        decode = self.llm.tokenizer.decode
        out: list[Token] = []
        previous = ""
        for i, (token_id, entry) in enumerate(zip(token_ids, logprobs)):
            # Each token's text is what it adds to the decoded prefix, so the texts concatenate to the output.
            upto = decode(token_ids[: i + 1])
            piece, previous = upto[len(previous):], upto
            top: dict[str, float] = {}
            if isinstance(entry, dict):  # {token_id: Logprob(logprob, rank)} or {token_id: float}
                ranked = sorted(entry.items(), key=lambda kv: -_logprob_value(kv[1]))
                for alt_id, alt in ranked:
                    top.setdefault(decode([alt_id]), _logprob_value(alt))
                chosen = entry.get(token_id)
                logprob = _logprob_value(chosen) if chosen is not None else float("nan")
            else:
                logprob = float(entry)
            out.append(Token(piece, logprob, top))
        return out

    def close(self) -> None:
        llm, self.llm = self.llm, None
        shutdown = getattr(llm, "shutdown", None)
        if callable(shutdown):
            shutdown()


def _logprob_value(value: Any) -> float:
    return float(getattr(value, "logprob", value))


def create(config: TensorRTLLMConfig, model=None) -> TensorRTLLMBackend:
    """Load the engine in ``config.engine_dir`` (``model`` is not used: the engine is the model)."""
    try:
        import tensorrt_llm  # noqa: F401  (heavy: CUDA, TensorRT; only ever imported here)
        from tensorrt_llm import SamplingParams
        from tensorrt_llm.llmapi import GuidedDecodingParams, KvCacheConfig
    except ImportError as exc:
        raise ModelUnavailable(f"{NOT_INSTALLED} ({exc})") from None
    try:  # 1.x: prebuilt TensorRT engines load through the TensorRT backend's LLM class
        from tensorrt_llm._tensorrt_engine import LLM
    except ImportError:
        from tensorrt_llm import LLM

    for what, path in (("engine_dir", config.engine_dir), ("tokenizer_dir", config.tokenizer_dir)):
        if not path.is_dir():
            raise ModelUnavailable(f"TensorRT-LLM {what} {path} does not exist (build it as models/README.md says)")
    try:
        llm = LLM(
            model=str(config.engine_dir),
            tokenizer=str(config.tokenizer_dir),
            guided_decoding_backend=config.guided_decoding_backend,
            kv_cache_config=KvCacheConfig(enable_block_reuse=config.enable_block_reuse),
        )
    except Exception as exc:
        raise ModelUnavailable(f"TensorRT-LLM cannot load the engine in {config.engine_dir}: {exc}") from None
    return TensorRTLLMBackend(
        config, llm, {"SamplingParams": SamplingParams, "GuidedDecodingParams": GuidedDecodingParams}
    )


Config = TensorRTLLMConfig  # the registry (edged.backends) builds the [backend] union from these
