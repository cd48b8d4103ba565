"""Runs the parts of the analysis benchmark and writes bench/results/analysis.json."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.analysis.bgl_eval import part_e
from bench.analysis.calls_per_template import part_b
from bench.analysis.cold_start import part_d
from bench.analysis.generation import part_c
from bench.analysis.harness import default_model, log
from bench.analysis.throughput import part_a
from bench.common import LOGHUB_DIR, REPO, write_result
from edged.backends.llama_cpp import LlamaCppConfig

# The smallest run: a few records per part, one short cold start, a tiny eval (bench/README.md, "Smoke runs").
# One llama.cpp thread: on a busy 2-core box two threads spin-wait on each other and run far slower.
# (e) needs at least 8 rows of its stratified order to hold an alert as well as normal lines.
SMOKE_ARGS = ["--records", "2", "--lines-per-system", "8", "--model-systems", "1", "--model-budget", "5",
              "--generation-repeat", "1", "--cold-starts", "1", "--eval-limit", "10", "--threads", "1",
              "--name", "analysis_smoke"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.analysis", description="analysis with the real default model")
    p.add_argument("--quick", action="store_true", help="a smoke run: fewer records, one system, short eval")
    p.add_argument("--parts", default="a,b,c,d,e", help="comma-separated subset of a,b,c,d,e")
    p.add_argument("--records", type=int, default=40, help="(a) distinct-template lines")
    p.add_argument("--eval-limit", type=int, default=250, help="(e) BGL rows per eval")
    p.add_argument("--cold-starts", type=int, default=3, help="(d) daemon starts")
    p.add_argument("--model-budget", type=float, default=300, help="(b) seconds the real-model run may take; "
                   "when it runs out, the figures cover the lines finished by then")
    p.add_argument("--threads", type=int, default=None,
                   help="llama.cpp threads for every part (default: edged's default, the CPU count)")
    p.add_argument("--lines-per-system", type=int, default=None,
                   help="(b) first lines of each system (default: all 2,000)")
    p.add_argument("--model-systems", type=int, default=None,
                   help="(b) systems run with the real model (default 3, --quick 1)")
    p.add_argument("--generation-repeat", type=int, default=None, help="(c) measured rounds (default 3, --quick 2)")
    p.add_argument("--name", default="analysis", help="result file name (bench/results/<name>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.records, args.eval_limit, args.cold_starts, args.model_budget = 12, 40, 1, 60
    parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    model = default_model()
    config = LlamaCppConfig() if args.threads is None else LlamaCppConfig(threads=args.threads)
    result: dict[str, Any] = {
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "model": {"file": model.path.name, "sha256": model.sha256, "backend": "llama_cpp",
                  "threads": config.threads, "n_ctx": config.n_ctx, "n_batch": config.n_batch},
        "quick": args.quick,
    }
    steps = [
        ("a", "throughput", lambda tmp: part_a(model, config, args.records, tmp)),
        ("b", "templates", lambda tmp: part_b(model, config, tmp, args.quick, args.model_budget,
                                              args.lines_per_system, args.model_systems)),
        ("c", "generation", lambda tmp: part_c(model, config, args.generation_repeat or (2 if args.quick else 3))),
        ("d", "cold_start", lambda tmp: part_d(args.cold_starts, tmp, args.threads)),
        ("e", "bgl_eval", lambda tmp: part_e(args.eval_limit, tmp, args.threads) if (LOGHUB_DIR / "BGL").is_dir()
         else {"skipped": f"{LOGHUB_DIR / 'BGL'} not found"}),
    ]  # fmt: skip
    started = time.perf_counter()
    seconds = {}
    for key, name, fn in steps:
        if key not in parts:
            continue
        log(f"analysis ({key}) {name} ...")
        t0 = time.perf_counter()
        load = [round(x, 2) for x in os.getloadavg()]
        with tempfile.TemporaryDirectory(prefix=f"edged-bench-analysis-{key}-") as tmp:
            try:
                result[name] = {"load_average_at_start": load, **fn(Path(tmp))}
            except Exception as exc:  # one broken part must not lose the others' figures
                import traceback

                traceback.print_exc()
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
        seconds[name] = round(time.perf_counter() - t0, 1)
        log(f"  ({key}) took {seconds[name]} s: {json.dumps(result[name])[:600]}")
    result["seconds"] = {**seconds, "total": round(time.perf_counter() - started, 1)}
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = write_result(args.name, result)
    log(f"  -> {out}")
    return result


def summary_lines(r: dict[str, Any]) -> list[str]:
    """One line per part, for ``python -m bench``."""
    out = []
    a, b, c, d, e = (r.get(k) or {} for k in ("throughput", "templates", "generation", "cold_start", "bgl_eval"))
    if "ratio_edged/raw" in a:
        out.append(f"analysis (a): edged {a['edged']['records_per_s']} records/s, raw llama-cpp-python "
                   f"{a['raw']['records_per_s']}; edged/raw {a['ratio_edged/raw']} (goal >= 0.95)")
    if "real_model" in b:
        m, t = b["real_model"], b["routing_all_systems"]["total"]
        out.append(f"analysis (b): calls per ground-truth template {t['calls_per_ground_truth_template']} over "
                   f"{t['lines']} lines (per edged template {t['calls_per_edged_template']}); real model on "
                   f"{'+'.join(m['systems'])}: {m['calls_per_ground_truth_template']}, effective "
                   f"{m['effective_lines_per_s']} lines/s = {m['ratio_effective/per_line']}x per-line calls"
                   " (estimated)")
    if "edged" in c:
        out.append(f"analysis (c): generation edged {c['edged']['tokens_per_s_wall']} tokens/s, raw "
                   f"{c['raw']['tokens_per_s_wall']}; edged/raw {c['ratio_edged/raw (wall)']}")
    if "ready_s_median" in d:
        out.append(f"analysis (d): ready in {d['ready_s_median']} s (goal < 3), peak RSS {d['peak_rss_mib_max']} MiB "
                   "(goal < 350 MB)")
    for v in ("mapped_taxonomy", "binary_taxonomy"):
        if v in e:
            out.append(f"analysis (e) BGL {v}: alert precision {e[v]['alert_precision']}, recall "
                       f"{e[v]['alert_recall']} (n={e[v]['n']})")
    for name in ("throughput", "templates", "generation", "cold_start", "bgl_eval"):
        if "error" in (r.get(name) or {}):
            out.append(f"analysis {name}: FAILED {r[name]['error']}")
    return out
