"""In-process llama.cpp (llama-cpp-python) on a GGUF file: the default backend.

How a call runs (``LlamaCppBackend.complete``):

- The chat is formatted with the model's own chat template (GGUF metadata ``tokenizer.chat_template``;
  ChatML when the file has none) as [system, user] plus the generation prompt and tokenized; the messages
  are tokenized as plain text (a log line cannot smuggle in control tokens such as ``<|im_end|>``). The
  system part comes first and is rendered the same way every time, so consecutive calls with the same
  ``request.system`` share a token prefix: the KV cache of the longest common prefix with the previous call
  is kept (``llama_memory_seq_rm`` past it) and only the rest is evaluated; ``cached_prompt_tokens`` says
  how many prompt tokens were reused. When the cache holds less than the system part (the previous call
  was another task's), the KV state saved right after this system part was first evaluated is written
  back instead (prefix_states.py; ``[backend] prefix_states``), so alternating tasks do not evaluate
  their system prompts again.
- Decoding is greedy (temperature 0) under a grammar built from ``request.schema`` (grammar.py; built and
  checked once per schema, then cached), for at most ``request.max_tokens`` tokens, up to the end token.
  The decode loop is the backend's own (``_decode``: ``Llama.eval`` + llama.cpp's grammar sampler), not
  ``Llama.generate``: each step first checks the unconstrained argmax against the grammar and masks the
  whole vocabulary only when the grammar rejects it, as llama.cpp's own sampler does (and before that,
  tries the ``TOP_CANDIDATES`` most likely tokens, which gives the same token: see ``_pick``). ``generate`` puts the
  grammar in its sampler chain, which masks all 49k candidates on every step (measured on 2 cores: ~7 ms
  per token, about as much as the decode itself).
- ``request.string_check``: the value string being written (json_values.py) is checked after each token;
  once the check refuses it, the tokens from the one holding its opening quote are dropped from the
  output and the KV cache and ``null`` is evaluated in its place (``_null_value``), where the grammar
  allows null; decoding then goes on with the next member.
- Log-probabilities are read from the raw logits of each step (``llama_get_logits_ith``) before the grammar
  sees them, so they are the model's own distribution, not the masked one: the chosen token's, and the
  top ``request.top_logprobs`` alternatives'. ``logits_all=True`` is not used: it makes prompt evaluation
  compute and copy logits for every prompt token. Step i is the i-th generated token by construction.
- Token texts are decoded incrementally from the tokens' bytes, so a character split across tokens belongs
  to the token that completes it and ``"".join(t.text for t in tokens) == text`` always holds.
- The text is checked with ``json.loads`` and the schema validator before it is returned; a document cut
  off by ``max_tokens`` or one the grammar could not constrain fully (see grammar.py) is a BackendError.

Thread-safety: a ``Llama`` object is not thread-safe. ``complete`` holds a lock, so concurrent callers are
serialized rather than corrupting the KV cache, but the backend is meant to be used from one thread (the
analyzer worker), which also keeps the shared-prefix cache effective.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from edged.backends.base import Backend, BackendError, Completion, CompletionRequest, ModelUnavailable, Token
from edged.backends.grammar import check_output, schema_key, schema_to_gbnf
from edged.backends.json_values import ValueWatch
from edged.backends.repetition import close_json, first_repeat
from edged.backends.offload import captured_log, check_offload, placement
from edged.backends.prefix_states import PrefixStates

log = logging.getLogger(__name__)


KEY: Final = "llama_cpp"  # [backend] type
TOP_CANDIDATES: Final = 256  # tried against the grammar when it rejects the most likely token
NEEDS_MODEL_FILE: Final = True  # whether edged resolves [model] to a local file for it


class LlamaCppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal[KEY] = KEY
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, description="CPU threads")
    n_ctx: int = Field(2048, ge=256, description="context window in tokens")
    n_batch: int = Field(512, ge=16, description="prompt tokens evaluated per batch")
    n_gpu_layers: int = Field(0, ge=-1, description="layers offloaded to a GPU (CUDA build on Jetson; -1 = all)")
    prefix_states: int = Field(
        4, ge=0, le=16,
        description="KV states of system prompts kept, so alternating tasks do not evaluate theirs again (0 = off)",
    )


INSTALL_HINT = (
    "llama-cpp-python is not installed (or its native library does not load): `make run` builds it. By hand: "
    "on x86-64 `CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX2=ON\" pip install llama-cpp-python`; on aarch64 "
    "(Raspberry Pi 5) `CMAKE_ARGS=\"-DGGML_NATIVE=ON\" pip install llama-cpp-python`; on a Jetson add "
    "-DGGML_CUDA=ON for n_gpu_layers"
)

# ChatML, for a GGUF file without a chat template (SmolLM2's own template is ChatML too).
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class LlamaCppBackend(Backend):
    name = KEY

    def __init__(self, config: LlamaCppConfig, model_path: Path, model_name: str | None = None,
                 model_sha256: str | None = None) -> None:
        self.config = config
        self.model_path = Path(model_path)
        self.model_name = model_name or self.model_path.name
        self.model_sha256 = model_sha256
        self._lock = threading.Lock()
        self._grammars: dict[str, Any] = {}
        self._pieces: dict[int, bytes] = {}
        self.last_stats: dict[str, float] = {}  # llama.cpp's timings of the last call (benchmarks read them)
        self.last_token_ids: list[int] = []  # the generated token ids of the last call (tests, debugging)

        try:
            import llama_cpp
        except (ImportError, OSError) as exc:
            raise ModelUnavailable(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from None
        self._lib = llama_cpp

        if not self.model_path.is_file():
            raise ModelUnavailable(
                f"model file {self.model_path} does not exist: run `make model` (or `edged model fetch NAME`)"
                " or set [model] path to a GGUF file"
            )
        supported = check_offload(llama_cpp, config.n_gpu_layers)
        try:
            with captured_log(llama_cpp) as load_log:
                self.llm = llama_cpp.Llama(
                    model_path=str(self.model_path),
                    n_ctx=config.n_ctx,
                    n_threads=config.threads,
                    n_threads_batch=config.threads,
                    n_batch=config.n_batch,
                    n_gpu_layers=config.n_gpu_layers,
                    verbose=False,
                )
        except Exception as exc:  # llama-cpp-python raises ValueError; anything else means the same here
            detail = "llama.cpp failed to load it" if str(self.model_path) in str(exc) else f"{exc}"
            raise ModelUnavailable(
                f"cannot load model file {self.model_path}: {detail}. Is it a complete GGUF file? "
                "`edged model verify` checks it against the manifest; `make model` fetches it again"
            ) from None
        self._placement = placement(load_log, config.n_gpu_layers, supported)
        log.info("llama.cpp placed the model's layers: %s", self._placement["summary"])

        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        vocab = self.llm._model
        eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
        template = self.llm.metadata.get("tokenizer.chat_template") or CHATML
        try:
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=vocab.token_get_text(eos_id) if eos_id != -1 else "",
                bos_token=vocab.token_get_text(bos_id) if bos_id != -1 else "",
                add_generation_prompt=True,
            )
            self._formatter(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
        except Exception as exc:  # a template that does not parse, or one that refuses a system message
            self.llm.close()
            raise ModelUnavailable(
                f"the chat template of {self.model_path} cannot format a system + user chat: {exc}"
            ) from None
        self._add_bos = bool(vocab.add_bos_token()) and bos_id != -1
        self._bos_id = bos_id
        # Candidate arrays for the grammar check in _pick: one token, and the whole vocabulary.
        self._one_data = (llama_cpp.llama_token_data * 1)()
        self._one = llama_cpp.llama_token_data_array(data=self._one_data, size=1, selected=-1, sorted=False)
        self._top_data = (llama_cpp.llama_token_data * TOP_CANDIDATES)()
        self._top = llama_cpp.llama_token_data_array(data=self._top_data, size=TOP_CANDIDATES, selected=-1, sorted=False)
        import numpy as np

        token_data = np.dtype({"names": ["id", "logit", "p"], "formats": ["<i4", "<f4", "<f4"],
                               "offsets": [llama_cpp.llama_token_data.id.offset, llama_cpp.llama_token_data.logit.offset,
                                           llama_cpp.llama_token_data.p.offset],
                               "itemsize": ctypes.sizeof(llama_cpp.llama_token_data)})
        self._top_view = np.frombuffer(self._top_data, dtype=token_data)
        self.top_candidates = TOP_CANDIDATES  # 0: mask the whole vocabulary at once (benchmarks compare)
        from llama_cpp._internals import LlamaTokenDataArray

        self._full = LlamaTokenDataArray(n_vocab=self.llm.n_vocab())
        self.prefixes = PrefixStates(llama_cpp, self.llm, config.prefix_states) if config.prefix_states else None

    def placement(self) -> dict[str, Any]:
        return self._placement

    # --- prompt --------------------------------------------------------------------------------------------

    def format_prompt(self, system: str, user: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self._formatter(messages=messages).prompt

    def prompt_tokens(self, system: str, user: str) -> list[int]:
        """The formatted chat as tokens. Only the template's own text may become special tokens: the
        messages are tokenized as plain text, so a log line that contains ``<|im_end|>`` (or any other
        control token's text) cannot end its turn early and inject instructions."""
        return self._prompt(system, user)[0]

    def _prompt(self, system: str, user: str) -> tuple[list[int], int]:
        """The prompt's tokens, and how many come before the user message (the part every call with this
        system prompt shares; 0 when the template does not show the user message as written)."""
        text = self.format_prompt(system, user)
        segments: list[tuple[str, bool]] = []  # (text, parse special tokens)
        pos = 0
        user_segment = -1
        for n, content in enumerate((system, user)):
            at = text.find(content, pos) if content else -1
            if at < 0:
                continue
            segments += [(text[pos:at], True), (content, False)]
            if n == 1:
                user_segment = len(segments) - 1
            pos = at + len(content)
        segments.append((text[pos:], True))
        tokens: list[int] = []
        shared = 0
        for i, (part, special) in enumerate(segments):
            if i == user_segment:
                shared = len(tokens)
            if part:
                tokens += self.llm.tokenize(part.encode("utf-8"), add_bos=False, special=special)
        if self._add_bos and (not tokens or tokens[0] != self._bos_id):
            tokens.insert(0, self._bos_id)
            shared += shared > 0
        return tokens, (shared if 0 < shared < len(tokens) - 1 else 0)

    # --- grammar -------------------------------------------------------------------------------------------

    def grammar(self, schema: dict[str, Any]):
        """The LlamaGrammar for ``schema``, built and checked by llama.cpp's parser once per schema."""
        key = schema_key(schema)
        grammar = self._grammars.get(key)
        if grammar is None:
            try:
                gbnf = schema_to_gbnf(schema)
            except ValueError as exc:
                raise BackendError(str(exc)) from None
            # An unparsable grammar would reach llama_sampler_chain_add as NULL and crash the process:
            # parse it once here (llama.cpp logs the parse error to stderr).
            probe = self._lib.llama_sampler_init_grammar(self.llm._model.vocab, gbnf.encode(), b"root")
            if not probe:
                raise BackendError(f"llama.cpp rejected the grammar built from the schema:\n{gbnf}")
            self._lib.llama_sampler_free(probe)
            grammar = self._lib.LlamaGrammar.from_string(gbnf, verbose=False)
            if len(self._grammars) >= 64:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[key] = grammar
        return grammar

    # --- tokens --------------------------------------------------------------------------------------------

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render as their text)."""
        data = self._pieces.get(token)
        if data is None:
            size = 64
            while True:
                buf = (ctypes.c_char * size)()
                n = self._lib.llama_token_to_piece(self.llm._model.vocab, token, buf, size, 0, True)
                if n >= 0:
                    data = bytes(buf[:n])
                    break
                size = -n
            self._pieces[token] = data
        return data

    def _cached_prefix(self, tokens: list[int]) -> int:
        """How many of ``tokens`` can be taken from the KV cache: the common prefix with what it holds."""
        llm = self.llm
        if llm.n_tokens <= 0:
            return 0
        lcp = _common_prefix(llm.input_ids[: llm.n_tokens], tokens)
        # At least the last prompt token is evaluated again: its logits are the first step's.
        return max(0, min(lcp, len(tokens) - 1))

    # --- the call ------------------------------------------------------------------------------------------

    def complete(self, request: CompletionRequest) -> Completion:
        with self._lock:
            if getattr(self, "llm", None) is None:
                raise BackendError("the llama_cpp backend is closed")
            try:
                return self._complete(request)
            except BackendError:
                raise
            except Exception as exc:  # llama.cpp decode failures, ctypes errors, template errors
                raise BackendError(f"llama.cpp call failed: {type(exc).__name__}: {exc}") from exc

    def _complete(self, request: CompletionRequest) -> Completion:
        lib, llm = self._lib, self.llm
        start = time.perf_counter()
        grammar = self.grammar(request.schema)
        prompt, shared = self._prompt(request.system, request.user)
        n_prompt, n_ctx = len(prompt), llm.n_ctx()
        if n_prompt >= n_ctx:
            raise BackendError(f"the prompt has {n_prompt} tokens; the context window (n_ctx) is {n_ctx}")
        max_tokens = max(1, min(request.max_tokens, n_ctx - n_prompt))
        lib.llama_perf_context_reset(llm.ctx)
        generated, steps, stopped, cached, repeat_at, nulled = self._decode(
            prompt, max_tokens, grammar, request.top_logprobs, request.stop_repeat_ngram, shared, request.string_check
        )
        perf = lib.llama_perf_context(llm.ctx)
        self.last_stats = {
            "prompt_eval_ms": perf.t_p_eval_ms,
            "prompt_eval_tokens": perf.n_p_eval,
            "eval_ms": perf.t_eval_ms,
            "eval_tokens": perf.n_eval,
            "values_nulled": nulled,
        }

        self.last_token_ids = generated
        tokens = self._tokens(generated, steps)
        text = "".join(t.text for t in tokens)
        repetition_cut = False
        if repeat_at is not None:
            # Stopped at a repeated n-gram: the document is closed where the repetition began.
            closed = close_json(text[:repeat_at])
            if closed is not None and check_output(closed, request.schema) is None:
                text, stopped, repetition_cut = closed, True, True
        latency = time.perf_counter() - start
        problem = check_output(text, request.schema)
        if problem is not None:
            if not stopped:
                raise BackendError(
                    f"the output reached max_tokens={max_tokens} before the JSON document was complete "
                    f"(raise max_tokens or bound the schema's strings with maxLength): {problem}"
                )
            raise BackendError(f"the output does not validate against the schema: {problem}")
        return Completion(
            text=text,
            tokens=tokens,
            prompt_tokens=n_prompt,
            completion_tokens=len(generated),
            cached_prompt_tokens=cached,
            latency_s=latency,
            repetition_cut=repetition_cut,
        )

    def _decode(self, prompt: list[int], max_tokens: int, grammar, top_k: int, stop_repeat: int = 0,
                shared: int = 0, string_check=None):
        """Greedy grammar-constrained decoding of ``prompt``, reusing the KV cache of the common prefix, or
        the saved state of its first ``shared`` tokens (the system prompt) when the cache holds less.

        Returns (generated token ids, per-step (chosen logit, logsumexp, top ids, top logits), stopped at the
        end token, prompt tokens reused from the KV cache, the character offset where a repeated
        ``stop_repeat``-word n-gram began when decoding stopped on one, else None, the value strings
        replaced by null because ``string_check`` failed them).
        """
        import numpy as np

        lib, llm = self._lib, self.llm
        vocab = llm._model.vocab
        n_vocab = llm.n_vocab()

        cached = self._cached_prefix(prompt)
        prefixes = self.prefixes if shared else None
        if prefixes is not None and cached < shared and prefixes.restore(prompt[:shared]):
            cached = shared
        elif 0 < (cached := min(cached, llm.n_tokens)) and llm._ctx.kv_cache_seq_rm(-1, cached, -1):
            llm.n_tokens = cached  # (a state llama.cpp refused left the cache empty: n_tokens 0)
        else:
            cached = 0
            llm.reset()
        smpl = self._sampler(grammar, [])
        generated: list[int] = []
        steps: list[tuple[float, float, Any, Any]] = []
        stopped = False
        repeat_at = None
        nulled = 0
        produced = b""
        watch = ValueWatch() if string_check is not None else None

        def step(logits) -> tuple[float, float, Any, Any]:
            peak = float(logits.max())
            lse = peak + math.log(float(np.exp(logits - peak).sum()))
            top: tuple[list, list] = ([], [])
            if top_k > 0:
                k = min(top_k, n_vocab)
                idx = np.argpartition(logits, n_vocab - k)[n_vocab - k:]
                idx = idx[np.argsort(-logits[idx], kind="stable")]
                top = (idx.tolist(), logits[idx].tolist())
            return peak, lse, top[0], top[1]

        try:
            if prefixes is not None and cached < shared and not prefixes.has(prompt[:shared]):
                llm.eval(prompt[cached:shared])  # the system prompt alone first, to save its state
                prefixes.save(prompt[:shared])
                llm.eval(prompt[shared:])
            else:
                llm.eval(prompt[cached:])
            while True:
                # The raw logits of this step: before any grammar mask (needed for honest log-probabilities).
                logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
                token = self._pick(smpl, logits)
                _, lse, top_ids, top_logits = step(logits)
                if lib.llama_vocab_is_eog(vocab, token):
                    stopped = True
                    break
                steps.append((float(logits[token]), lse, top_ids, top_logits))
                lib.llama_sampler_accept(smpl, token)
                generated.append(token)
                if watch is not None:
                    watch.feed(self.piece(token))
                    value = watch.open_value()
                    if value is not None and not string_check(value):
                        replaced = self._null_value(prompt, generated, steps, grammar, watch, step)
                        if replaced is not None:
                            lib.llama_sampler_free(smpl)
                            smpl, generated, steps = replaced
                            watch = ValueWatch()
                            watch.feed(b"".join(self.piece(t) for t in generated))
                            produced = watch.data if stop_repeat else b""
                            nulled += 1
                            if len(generated) >= max_tokens:
                                break
                            continue  # the replacement's last token is evaluated already
                if len(generated) >= max_tokens:
                    break
                if stop_repeat:
                    piece = self.piece(token)
                    produced += piece
                    # An n-gram is complete when a word ends: check then, not on every token.
                    if piece[:1].isspace() or not piece.strip(b" ").isalnum():
                        done = produced.decode("utf-8", errors="replace").rstrip("\ufffd")
                        repeat_at = first_repeat(_complete_words(done), stop_repeat)
                        if repeat_at is not None and close_json(done[:repeat_at]) is not None:
                            break
                        repeat_at = None  # not at a point where the document can be closed: go on
                llm.eval([token])
        finally:
            lib.llama_sampler_free(smpl)
        return generated, steps, stopped, cached, repeat_at, nulled

    def _sampler(self, grammar, accepted: list[int]):
        """A fresh grammar sampler that has accepted ``accepted``."""
        lib = self._lib
        smpl = lib.llama_sampler_init_grammar(self.llm._model.vocab, grammar._grammar.encode(), grammar._root.encode())
        if not smpl:
            raise BackendError("llama.cpp could not build the grammar sampler")
        for token in accepted:
            lib.llama_sampler_accept(smpl, token)
        return smpl

    def _allows(self, smpl, token: int) -> bool:
        """Whether the grammar allows ``token`` next (one candidate: the grammar leaves its logit or sets -inf)."""
        one = self._one_data
        one[0].id, one[0].logit, one[0].p = token, 0.0, 0.0
        self._one.size, self._one.selected, self._one.sorted = 1, -1, False
        self._lib.llama_sampler_apply(smpl, ctypes.byref(self._one))
        return one[0].logit != -math.inf

    def _null_value(self, prompt: list[int], generated: list[int], steps, grammar, watch: ValueWatch, step):
        """Write ``null`` in place of the open value string (``request.string_check`` failed it): the tokens
        from the one holding its opening quote are dropped from the output and the KV cache, the text
        before the quote in that token and ``null`` are evaluated instead, in one batch whose logits give
        their log-probabilities and the next step's. Returns (sampler, generated, steps), or None when
        the grammar does not allow null there (the value then goes on as the model writes it)."""
        import numpy as np

        lib, llm = self._lib, self.llm
        n_vocab = llm.n_vocab()
        keep, size = 0, 0
        for token in generated:
            piece = self.piece(token)
            if size + len(piece) > watch.value_start:
                break
            size += len(piece)
            keep += 1
        if keep == 0:
            return None
        gap = watch.data[size:watch.value_start]
        forced = llm.tokenize(gap + b"null", add_bos=False, special=False)
        smpl = self._sampler(grammar, generated[:keep])
        for token in forced:
            if not self._allows(smpl, token):
                lib.llama_sampler_free(smpl)
                return None
            lib.llama_sampler_accept(smpl, token)
        # Evaluate the last kept token again with the forced ones: its logits are the first forced token's.
        n_past = len(prompt) + keep - 1
        batch = [generated[keep - 1]] + forced
        llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
        llm.n_tokens = n_past
        llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[n_past:n_past + len(batch)] = batch
        llm.n_tokens = n_past + len(batch)
        steps = steps[:keep]
        for i, token in enumerate(forced):
            logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(llm.ctx, i), shape=(n_vocab,))
            _, lse, top_ids, top_logits = step(logits)
            steps.append((float(logits[token]), lse, top_ids, top_logits))
        return smpl, generated[:keep] + forced, steps

    def _pick(self, smpl, logits) -> int:
        """The most likely token the grammar allows. Like llama.cpp's common sampler: try the unconstrained
        argmax against the grammar first (one candidate); masking all 49k candidates on every step costs
        about as much as the decode. When the grammar rejects it (about one step in five), the
        ``TOP_CANDIDATES`` most likely tokens are tried next: every other token scores at most as high
        as the least of them, so the best one the grammar allows among them is the best it allows at
        all, the token masking the whole vocabulary would pick. Only when none is allowed (or the best
        allowed one ties with the least of them) is the whole vocabulary masked."""
        import numpy as np

        lib = self._lib
        best = int(np.argmax(logits))
        if self._allows(smpl, best):
            return best
        n, k = logits.shape[0], self.top_candidates
        if 0 < k < n:
            top = np.argpartition(logits, n - k)[n - k:]
            view = self._top_view[:k]  # the candidate array's memory, as numpy columns
            view["id"], view["logit"], view["p"] = top, logits[top], 0.0
            self._top.size, self._top.selected, self._top.sorted = k, -1, False
            lib.llama_sampler_apply(smpl, ctypes.byref(self._top))
            masked = view["logit"]
            allowed = np.flatnonzero(masked != -np.inf)
            if allowed.size:
                peak = masked[allowed].max()
                if peak > logits[top].min():
                    return int(view["id"][allowed[masked[allowed] == peak]].min())
        full = self._full
        full.copy_logits(logits)
        full.candidates.selected = -1
        lib.llama_sampler_apply(smpl, ctypes.byref(full.candidates))
        masked = full.candidates_data.logit[: full.candidates.size]
        i = int(np.argmax(masked))
        if masked[i] == -math.inf:
            raise BackendError("the grammar allows no next token (schema and output disagree)")
        return int(full.candidates_data.id[i])

    def _tokens(self, generated: list[int], steps) -> list[Token]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        texts = [decoder.decode(self.piece(t)) for t in generated]
        if texts:
            texts[-1] += decoder.decode(b"", final=True)
        out: list[Token] = []
        for text, (logit, lse, top_ids, top_logits) in zip(texts, steps):
            top: dict[str, float] = {}
            for tid, tlogit in zip(top_ids, top_logits):
                top.setdefault(self.piece(tid).decode("utf-8", errors="replace"), tlogit - lse)
            out.append(Token(text, logit - lse, top))
        return out

    def close(self) -> None:
        with self._lock:
            llm = getattr(self, "llm", None)
            self.llm = None
            if llm is not None:
                llm.close()


def _complete_words(text: str) -> str:
    """``text`` without a word still being written at its end."""
    end = len(text)
    while end and (text[end - 1].isalnum() or text[end - 1] == "_"):
        end -= 1
    return text[:end]


def _common_prefix(a, b: list[int]) -> int:
    """Length of the common prefix of token sequences ``a`` (numpy ids) and ``b``."""
    import numpy as np

    m = min(len(a), len(b))
    if m == 0:
        return 0
    eq = np.asarray(a[:m]) == np.asarray(b[:m], dtype=np.asarray(a).dtype)
    return m if eq.all() else int(np.argmin(eq))


def create(config: LlamaCppConfig, model) -> LlamaCppBackend:
    """Load ``model`` (a ResolvedModel, or anything with ``.path`` and optionally ``.name``/``.sha256``)."""
    if model is None or getattr(model, "path", None) is None:
        raise ModelUnavailable("the llama_cpp backend needs a model file: set [model] name or [model] path")
    path = Path(model.path)
    return LlamaCppBackend(
        config,
        path,
        model_name=path.name,
        model_sha256=getattr(model, "sha256", None),
    )


Config = LlamaCppConfig  # the registry (edged.backends) builds the [backend] union from these
