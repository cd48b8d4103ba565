"""(c) ``generation``: decode tokens/s of edged's backend against raw llama-cpp-python on one summarize request."""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

from bench.analysis.harness import Raw
from edged.analysis.tasks import request_for, summarize_spec
from edged.backends.llama_cpp import LlamaCppBackend, LlamaCppConfig
from edged.config.settings import AnalysisSettings

INCIDENT = (
    "Operator report, line 3, CNC mill M-204: at 14:20 the spindle stopped with alarm E1042 (spindle overtemp, "
    "91 C). Coolant flow looked low and the filter was clogged with chips. Machine restarted after 20 minutes "
    "of cooling; the same alarm came back at 15:05. Parts 1180-1186 need inspection."
)


def part_c(model, config: LlamaCppConfig, repeat: int) -> dict[str, Any]:
    # A summary of at most 96 characters fits in 64 tokens for this text (about 50 with the default model).
    spec = summarize_spec(AnalysisSettings(summary_max_chars=96))
    request = dataclasses.replace(request_for(spec, INCIDENT, machine="M-204", kind="incident"), max_tokens=64)
    edged = LlamaCppBackend(config, model.path, model_sha256=model.sha256)
    raw = Raw(model.path, config)
    runs: dict[str, list[dict]] = {"edged": [], "raw": [], "raw_no_grammar": []}
    try:
        for i in range(repeat + 1):  # the first round warms up (grammar, KV cache of the prompt): dropped
            c = edged.complete(request)
            st = edged.last_stats
            e = {"tokens": c.completion_tokens, "seconds": c.latency_s, "eval_ms": st["eval_ms"],
                 "eval_tokens": st["eval_tokens"], "text": c.text}
            r = raw.complete(request)
            n = raw.complete(request, grammar=False)
            if i:
                runs["edged"].append(e)
                runs["raw"].append({**r, "tokens": r["completion_tokens"]})
                runs["raw_no_grammar"].append({**n, "tokens": n["completion_tokens"]})
    finally:
        edged.close()
        raw.close()
    out: dict[str, Any] = {"request": {"task": "summarize", "max_tokens": request.max_tokens, "repeat": repeat}}
    for name, rs in runs.items():
        out[name] = {
            "tokens": rs[-1]["tokens"],
            # wall: completion tokens / whole call (the prompt is in the KV cache after the warm-up round)
            "tokens_per_s_wall": round(statistics.median(r["tokens"] / r["seconds"] for r in rs), 1),
            # decode: llama.cpp's own eval timer (one token per decode step)
            "tokens_per_s_decode": round(statistics.median(r["eval_tokens"] / r["eval_ms"] * 1000 for r in rs), 1),
            "text": rs[-1]["text"],
        }
    out["same_text_edged_raw"] = out["edged"]["text"] == out["raw"]["text"]
    out["ratio_edged/raw (wall)"] = round(out["edged"]["tokens_per_s_wall"] / out["raw"]["tokens_per_s_wall"], 3)
    out["ratio_edged/raw_no_grammar (wall)"] = round(
        out["edged"]["tokens_per_s_wall"] / out["raw_no_grammar"]["tokens_per_s_wall"], 3)
    return out
