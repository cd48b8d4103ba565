"""edged's analyzer and raw llama-cpp-python side by side: the pieces every part of the bench uses."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from bench.analysis.data import claim_priority
from bench.common import REPO, Unavailable
from edged.analysis.analyzer import Analyzer
from edged.analysis.tasks import CLASSIFY, EXTRACT, build_specs, request_for
from edged.backends.base import Backend, Completion, CompletionRequest, ModelUnavailable
from edged.backends.grammar import schema_key, schema_to_gbnf
from edged.backends.llama_cpp import LlamaCppConfig
from edged.config.settings import AnalysisSettings
from edged.models.resolve import ModelSettings
from edged.store.database import connect, open_database
from edged.store.records import NewRecord
from edged.store.writer import StoreWriter, WriteBatch


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Recording(Backend):
    """Passes calls through to edged's backend and keeps each request and answer (one list append)."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.name = inner, inner.name
        self.model_name, self.model_sha256 = inner.model_name, inner.model_sha256
        self.calls: list[tuple[CompletionRequest, Completion]] = []

    def complete(self, request: CompletionRequest) -> Completion:
        completion = self.inner.complete(request)
        self.calls.append((request, completion))
        return completion


class Raw:
    """The baseline: llama-cpp-python's own chat completion, same model/threads/n_ctx/grammar/max_tokens."""

    def __init__(self, path: Path, config: LlamaCppConfig) -> None:
        import llama_cpp

        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=config.n_ctx, n_threads=config.threads, n_threads_batch=config.threads,
            n_batch=config.n_batch, n_gpu_layers=config.n_gpu_layers, verbose=False,
        )  # fmt: skip
        self.grammars: dict[str, Any] = {}

    def complete(self, request: CompletionRequest, grammar: bool = True) -> dict[str, Any]:
        g = None
        if grammar:
            key = schema_key(request.schema)
            if key not in self.grammars:
                gbnf = schema_to_gbnf(request.schema)
                self.grammars[key] = self.lib.LlamaGrammar.from_string(gbnf, verbose=False)
            g = self.grammars[key]
        self.lib.llama_perf_context_reset(self.llm.ctx)
        t0 = time.perf_counter()
        out = self.llm.create_chat_completion(
            messages=[{"role": "system", "content": request.system}, {"role": "user", "content": request.user}],
            grammar=g, max_tokens=request.max_tokens, temperature=0.0,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        perf = self.lib.llama_perf_context(self.llm.ctx)
        return {
            "text": out["choices"][0]["message"]["content"], "seconds": seconds,
            "completion_tokens": out["usage"]["completion_tokens"], "prompt_tokens": out["usage"]["prompt_tokens"],
            "eval_ms": perf.t_eval_ms, "eval_tokens": perf.n_eval,
        }  # fmt: skip

    def close(self) -> None:
        self.llm.close()


def default_model():
    """The default model file, verified; Unavailable (the bench cannot run) when it is missing."""
    from edged.models.resolve import resolve_model

    try:
        return resolve_model(ModelSettings(dir=REPO / "models"))
    except ModelUnavailable as exc:
        raise Unavailable(f"the default model is not usable: {exc}") from None


class Daemon:
    """edged's analyzer on a temp database: insert records, then run_once until nothing is left."""

    def __init__(self, tmp: Path, backend: Backend, settings: AnalysisSettings) -> None:
        self.path = tmp / "edged.db"
        self.writer = StoreWriter(open_database(self.path))
        self.writer.start()
        self.analyzer = Analyzer(settings, backend, self.writer, connect(self.path))

    def insert(self, rows: list[tuple[str, str, str]]) -> None:
        """rows: (record_id, machine, text)."""
        now = time.time()
        records = [NewRecord(rid, "bench", m, "log", t, "", None, now, 0) for rid, m, t in rows]
        for i in range(0, len(records), 1000):
            self.writer.submit(WriteBatch(records=records[i:i + 1000])).result()

    def query(self, sql: str) -> list[tuple]:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        self.writer.stop()


def expected_requests(rows: list[tuple[str, str, str]], settings: AnalysisSettings) -> list[list[CompletionRequest]]:
    """What edged should ask, batch by batch, when every line is a new template: records in claim order
    (alert-looking first), batch_size at a time, all classifications then all extractions."""
    specs = build_specs(settings)
    ordered = [r for _, r in sorted(enumerate(rows), key=lambda ir: (-claim_priority(ir[1][2]), ir[0]))]
    batches = []
    for i in range(0, len(ordered), settings.batch_size):
        chunk = ordered[i:i + settings.batch_size]
        batches.append([request_for(specs[task], t, machine=m) for task in (CLASSIFY, EXTRACT) for _, m, t in chunk])
    return batches
