"""(a) ``throughput``: records/s of edged's analyzer against raw llama-cpp-python, interleaved batch by batch."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.analysis.data import distinct_template_lines
from bench.analysis.harness import Daemon, Raw, Recording, expected_requests
from edged.analysis.tasks import CLASSIFY, EXTRACT, build_specs, request_for
from edged.backends.llama_cpp import LlamaCppBackend, LlamaCppConfig
from edged.config.settings import AnalysisSettings


def part_a(model, config: LlamaCppConfig, n: int, tmp: Path) -> dict[str, Any]:
    chosen, what = distinct_template_lines(n)
    rows = [(f"a:{i}", m, t) for i, (m, t) in enumerate(chosen)]
    settings = AnalysisSettings(max_attempts=1)  # a failed call parks the record: no retry skews the count
    batches = expected_requests(rows, settings)
    edged = Recording(LlamaCppBackend(config, model.path, model_sha256=model.sha256))
    raw = Raw(model.path, config)
    try:
        # Warm-up, the same for both: one call per task on a line that is not in the set.
        for spec in (build_specs(settings)[CLASSIFY], build_specs(settings)[EXTRACT]):
            warm = request_for(spec, "2025-01-01 00:00:00 INFO warm-up line", machine="warmup")
            edged.inner.complete(warm)
            raw.complete(warm)
        daemon = Daemon(tmp, edged, settings)
        daemon.insert(rows)
        edged_s = raw_s = 0.0
        raw_out: list[dict] = []
        for batch in batches:
            t0 = time.perf_counter()
            claimed = daemon.analyzer.run_once()
            edged_s += time.perf_counter() - t0
            if not claimed:
                break
            for request in batch:
                raw_out.append(raw.complete(request))
                raw_s += raw_out[-1]["seconds"]
        while daemon.analyzer.run_once():  # nothing should be left; if something is, it counts for edged
            pass
        done = daemon.query("SELECT count(*) FROM results")[0][0]
        parked = daemon.query("SELECT count(*) FROM records WHERE status = 'parked'")[0][0]
        daemon.close()
    finally:
        edged.inner.close()
        raw.close()
    flat = [r for b in batches for r in b]
    recorded = [req for req, _ in edged.calls]
    same_text = sum(1 for (_, c), r in zip(edged.calls, raw_out) if c.text == r["text"])
    e_rps, r_rps = len(rows) / edged_s, len(rows) / raw_s
    return {
        "input": {"records": len(rows), "data": what, "systems": sorted({m for _, m, _ in rows})},
        "edged": {"records_per_s": round(e_rps, 3), "seconds": round(edged_s, 2), "model_calls": len(edged.calls),
                  "results": done, "parked": parked},
        "raw": {"records_per_s": round(r_rps, 3), "seconds": round(raw_s, 2), "model_calls": len(raw_out),
                "prompt_tokens_mean": round(statistics.mean(r["prompt_tokens"] for r in raw_out), 1)},
        "edged_prompt_tokens_mean": round(statistics.mean(c.prompt_tokens for _, c in edged.calls), 1),
        "requests_identical": recorded == flat,
        "answers_identical": f"{same_text}/{min(len(recorded), len(raw_out))}",
        "ratio_edged/raw": round(e_rps / r_rps, 3),
        "goal": ">= 0.95",
        "goal_met": e_rps / r_rps >= 0.95,
    }
