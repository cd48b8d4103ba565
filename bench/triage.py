"""Triage benchmark: learning on the box from a labeled maintenance set, then routed classification.

Data: real excavator maintenance work orders (../shared/data/incidents/nist_excavators, read at run
time, never copied here), labeled with their MajorSystem (rows labeled NA dropped, systems with at
least --min-class rows kept). The rows are split by a hash of the text: ~30% are held out for
evaluation and never imported. Without the data, made-up shop-floor texts are used (and the
result says so).

1. ``edged learn --data train.csv`` (the CLI, on a temp store): training size, held-out score, time.
2. ``edged eval`` on the evaluation rows: micro-F1 of the triage, slm and routed paths and the share
   of rows that never reached the model (slm = the model with retrieved examples).
3. Throughput on the same records, in one process: routed classification (triage, then the model
   with examples for the rest) against SLM-only (the model with examples for every record); ratio.
4. Triage latency per record on the CPU: one record per call (features + LiteRT), and in batches of 64.

Usage: python -m bench.triage [--quick] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import REPO, write_result

DATA = REPO.parent / "shared" / "data" / "incidents" / "nist_excavators" / "excavators-cleaned.csv"
NEEDS_MODEL = True  # edged eval and the throughput part run the default model
# The smallest run (bench/README.md, "Smoke runs"): a handful of evaluation rows and records.
SMOKE_ARGS = ["--limit", "6", "--throughput-records", "4", "--other-thresholds", "", "--threads", "1"]


def log(msg: str) -> None:
    print(f"[triage] {msg}", file=sys.stderr, flush=True)


def load_rows(column: str, min_class: int) -> tuple[list[tuple[str, str]], str]:
    if DATA.exists():
        with DATA.open(newline="", encoding="utf-8") as f:
            rows = [(r["OriginalShorttext"].strip(), r[column].strip()) for r in csv.DictReader(f)]
        rows = [(t, l) for t, l in rows if t and l and l != "NA"]
        counts = Counter(l for _, l in rows)
        rows = [(t, l) for t, l in rows if counts[l] >= min_class]
        return rows, f"{DATA.relative_to(REPO.parent)} ({column}, classes with >= {min_class} rows)"
    sys.path.insert(0, str(REPO))
    from tests.support.labeled_texts import make

    return make(200, seed=42), "made-up shop-floor texts (../shared/data/incidents not found)"


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


def edged(args: list[str], config: Path, cwd: Path, **overrides: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")} | overrides
    cmd = [sys.executable, "-m", "edged", *args, "--json", "--config", str(config)]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def throughput(config_path: Path, texts: list[str], threads: int | None) -> dict[str, Any]:
    """Routed vs SLM-only classification of the same records, measured in this process. Routed is the
    analyzer's own routing (edged.analysis.routing), candidates and the measured choice included."""
    import dataclasses

    from edged.analysis.evidence import Evidence
    from edged.analysis.routing import Subject, route
    from edged.analysis.tasks import among, classify_spec, parse_answer, request_for
    from edged.app import build_backend
    from edged.config import load_config
    from edged.store.database import connect
    from edged.triage.router import Router

    settings = load_config(config_path).settings
    router = Router(settings.triage, list(settings.analysis.labels))
    db = connect(settings.store.path, readonly=True)
    router.refresh(db)
    spec = classify_spec(settings.analysis)
    backend = build_backend(settings)
    try:
        backend.complete(request_for(spec, "warm-up"))

        def ask(text: str, examples, candidates=()) -> str:
            request = request_for(spec, text, kind="incident", examples=[(e.text, e.label) for e in examples])
            if candidates:
                request = dataclasses.replace(request, schema=among(spec, list(candidates)))
            return parse_answer(spec, backend.complete(request), request.schema)["label"]

        t0 = time.perf_counter()
        slm_labels = [ask(t, router.index.nearest(t, router.settings.examples) if router.index else []) for t in texts]
        slm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        routed_labels, asked = [], []
        evidence = Evidence(settings.analysis)
        for lo in range(0, len(texts), 16):  # the analyzer's default batch size
            subjects = [Subject(t) for t in texts[lo : lo + 16]]
            for i, r in enumerate(route(subjects, evidence, router, settings.triage.severities), lo):
                if not r.ask_model:
                    routed_labels.append(r.label)
                else:
                    asked.append(i)
                    routed_labels.append(ask(texts[i], r.examples, r.candidates))
        routed_s = time.perf_counter() - t0
    finally:
        backend.close()
    return {
        "records": len(texts),
        "slm_only": {"seconds": round(slm_s, 2), "records_per_s": round(len(texts) / slm_s, 2), "model_calls": len(texts)},
        "routed": {"seconds": round(routed_s, 2), "records_per_s": round(len(texts) / routed_s, 2),
                   "model_calls": len(asked)},
        "ratio_routed_over_slm_only": round(slm_s / routed_s, 2),
        # Where both asked the model: how often they agree (routed chooses among the classifier's candidates,
        # so they may differ).
        "agreement_where_both_asked_the_model": round(
            sum(slm_labels[i] == routed_labels[i] for i in asked) / len(asked), 3) if asked else None,
    }


def triage_latency(config_path: Path, texts: list[str]) -> dict[str, Any]:
    from edged.config import load_config
    from edged.store.database import connect
    from edged.triage import versions
    from edged.triage.runtime import TriageModel

    settings = load_config(config_path).settings
    version, blob = versions.active(connect(settings.store.path, readonly=True))
    model = TriageModel(blob, version.version)
    model.predict(texts[:1])
    one = []
    for t in texts:
        t0 = time.perf_counter()
        model.predict([t])
        one.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for lo in range(0, len(texts), 64):
        model.predict(texts[lo : lo + 64])
    batched = (time.perf_counter() - t0) / len(texts)
    one.sort()
    return {
        "runtime": model.runtime, "records": len(texts), "classes": len(model.classes),
        "buckets": model.features.dim, "tflite_bytes": len(blob),
        "one_per_call_ms": {"p50": round(one[len(one) // 2] * 1000, 3), "p95": round(one[int(len(one) * 0.95)] * 1000, 3)},
        "batch_of_64_ms_per_record": round(batched * 1000, 4),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.triage", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="evaluate 150 rows, throughput on 60")
    p.add_argument("--limit", type=int, help="evaluation rows (default: all held-out rows)")
    p.add_argument("--throughput-records", type=int, default=200)
    p.add_argument("--min-class", type=int, default=20)
    p.add_argument("--column", default="MajorSystem",
                   help="label column of the work orders (MajorSystem, FM, Action...); results of another"
                        " column than MajorSystem go to triage_<column>.json")
    p.add_argument("--threads", type=int, help="llama.cpp threads (default: edged's default)")
    p.add_argument("--other-thresholds", default="0.5",
                   help="comma-separated [triage] confidence_threshold values to score the routed path at too")
    p.add_argument("--routing-sample", type=int,
                   help="[triage] routing_sample: held-out labels the model is asked about to measure routing")
    p.add_argument("--paths", default="triage,slm,routed", help="paths edged eval scores")
    p.add_argument("--no-throughput", action="store_true", help="skip the routed vs SLM-only throughput run")
    args = p.parse_args(argv)
    limit = 150 if args.quick and args.limit is None else args.limit
    records = 60 if args.quick else args.throughput_records

    sys.path.insert(0, str(REPO))
    from edged.triage.labels import is_heldout

    rows, source = load_rows(args.column, args.min_class)
    held = [r for r in rows if is_heldout(r[0], 30, salt="evaluation")]
    train = [r for r in rows if not is_heldout(r[0], 30, salt="evaluation")]
    labels = sorted({l for _, l in rows})
    log(f"{len(rows)} rows from {source}: {len(train)} to learn from, {len(held)} held out; {len(labels)} labels")
    with tempfile.TemporaryDirectory(prefix="edged-bench-triage-") as tmp_name:
        tmp = Path(tmp_name)
        write_csv(tmp / "train.csv", train)
        write_csv(tmp / "test.csv", held)
        config = tmp / "edged.toml"
        threads = f"\n[backend]\nthreads = {args.threads}\n" if args.threads else ""
        sample = f"\n[triage]\nrouting_sample = {args.routing_sample}\n" if args.routing_sample is not None else ""
        config.write_text(
            f'[store]\npath = "{tmp / "edged.db"}"\n[model]\ndir = "{REPO / "models"}"\n'
            f"[analysis]\nlabels = {json.dumps(labels)}\n{threads}{sample}"
        )
        t0 = time.perf_counter()
        learned = edged(["learn", "--data", str(tmp / "train.csv"), "--text-col", "text", "--label-col", "label"],
                        config, tmp)
        learn_s = time.perf_counter() - t0
        log(f"learned: {learned['training']['decision']} ({learn_s:.1f} s)")
        eval_args = ["eval", "--data", str(tmp / "test.csv"), "--text-col", "text", "--label-col", "label",
                     "--paths", args.paths]
        if limit:
            eval_args += ["--limit", str(limit)]
        evaluation = edged(eval_args, config, tmp)
        log("eval: " + ", ".join(f"{k} micro-F1 {v['micro_f1']}" for k, v in evaluation["paths"].items())
            + f"; skipped the model: {evaluation['skipped_model_share']}")
        other = {}
        for threshold in [t for t in args.other_thresholds.split(",") if t.strip()]:
            r = edged([*eval_args[:-2], "--paths", "routed"], config, tmp, EDGED_TRIAGE__CONFIDENCE_THRESHOLD=threshold)
            other[threshold] = {"routed_micro_f1": r["paths"]["routed"]["micro_f1"],
                                "skipped_model_share": r["skipped_model_share"], "model_calls": r["model_calls"]}
            log(f"eval at threshold {threshold}: routed micro-F1 {other[threshold]['routed_micro_f1']},"
                f" skipped the model: {other[threshold]['skipped_model_share']}")
        texts = [t for t, _ in held]
        speed = None if args.no_throughput else throughput(config, texts[:records], args.threads)
        if speed:
            log(f"throughput: routed/slm-only {speed['ratio_routed_over_slm_only']}")
        latency = triage_latency(config, texts[:1000])
    result = {
        "data": source,
        "rows": len(rows), "learned_from": len(train), "held_out": len(held), "labels": labels,
        "learn": {**learned["training"], "wall_s": round(learn_s, 2)},
        "eval": {
            "rows": evaluation["n"],
            "paths": {k: {m: v[m] for m in ("micro_f1", "macro_f1", "records_per_s")}
                      for k, v in evaluation["paths"].items()},
            "skipped_model_share": evaluation["skipped_model_share"],
            "routed_by": evaluation["routed_by"],
            "triage": evaluation["triage"],
            "examples": evaluation["examples"],
            "model_calls": evaluation["model_calls"],
            "routed_at_other_thresholds": other,
        },
        "throughput": speed,
        "triage_latency": latency,
    }
    write_result("triage" if args.column == "MajorSystem" else f"triage_{args.column}", result)
    return result


def summary_lines(r: dict[str, Any]) -> list[str]:
    e, t, lat = r["eval"], r["throughput"], r["triage_latency"]
    paths = ", ".join(f"{k} {v['micro_f1']:.3f}" for k, v in e["paths"].items())
    speed = [] if t is None else [
        f"triage: routed {t['routed']['records_per_s']} records/s vs SLM-only {t['slm_only']['records_per_s']}"
        f" (ratio {t['ratio_routed_over_slm_only']})"]
    return speed + [
        f"triage: learned from {r['learned_from']} labels in {r['learn']['wall_s']} s (held-out micro-F1"
        f" {r['learn']['heldout_micro_f1']}); eval on {e['rows']} unseen rows: micro-F1 {paths};"
        f" {e['skipped_model_share']:.1%} skipped the model",
        f"triage: routing of the version: {(r['learn'].get('routing') or {}).get('reason', 'not measured')}",
        f"triage: latency p50 {lat['one_per_call_ms']['p50']} ms per record"
        f" ({lat['batch_of_64_ms_per_record']} ms in batches of 64, {lat['runtime']})",
    ]


if __name__ == "__main__":
    for line in summary_lines(main()):
        print(line)
