"""A log backlog through the real daemon: how long until every line has a result, and how right they are.

The daemon runs as ``python -m edged run`` (a subprocess) with the default model (``llama_cpp``) and
embedded defaults, except the store, the watched directory and ``[backend] threads``. A Loghub
system's raw 2k log (../shared/data/loghub, read at run time, never copied here) is written into
the watched directory before the daemon starts: a backlog, as after a box was off for a while.

Reported: seconds from "ready" until every line has a result (the issue's goal for BGL 2k: 120 s on
2 cores), model calls and model seconds (``edged status --json``), results by path (template cache,
model, ...) and by deciding part (``classified_by``), distinct templates, and seconds per template
(wall time / templates, ingest included).

Correctness beside the speed, from the daemon's own stored results: for BGL, whose raw lines carry an
alert tag as their first field (``-`` = routine; the tag is cut off before the line is written, so the
daemon never sees it), alert recall and precision scored as "labelled anything but normal"; for every
system, the model values the daemon dropped because they did not occur in their line
(``analysis.ungrounded``). Field accuracy against Loghub's truth is ``bench.extract``'s.

Usage: python -m bench.backlog [--system BGL] [--lines N] [--threads N] [--deadline S]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import LOGHUB_DIR, REPO, Unavailable, analyzed_count, machine_info, write_result
from tests.support.daemon import Daemon

NEEDS_MODEL = True
SMOKE_ARGS = ["--lines", "40", "--threads", "1", "--deadline", "600"]
MODEL_DIR = REPO / "models"
NOT_ALERT = {"normal"}


def log(msg: str) -> None:
    print(f"[backlog] {msg}", file=sys.stderr, flush=True)


def raw_lines(system: str, count: int) -> tuple[list[str], list[str | None]]:
    """The first ``count`` lines of the system's raw 2k log, and each line's alert tag (BGL only)."""
    path = LOGHUB_DIR / system / f"{system}_2k.log"
    if not path.exists():
        raise Unavailable(f"{path} is missing (../shared/data/loghub)")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[:count]
    if system != "BGL":
        return lines, [None] * len(lines)
    tags, texts = [], []
    for line in lines:
        tag, _, text = line.partition(" ")
        tags.append(tag)
        texts.append(text)
    return texts, tags


def write_config(tmp: Path, threads: int | None) -> Path:
    config = tmp / "edged.toml"
    config.write_text(
        f'[store]\npath = "{tmp / "state" / "edged.db"}"\n'
        f'[logs]\npaths = ["{tmp / "logs"}/*.log"]\n'
        f'[model]\ndir = "{MODEL_DIR}"\n'
        '[backend]\ntype = "llama_cpp"\n' + (f"threads = {threads}\n" if threads else "")
        + "[web]\nenabled = false\n"
    )
    return config


def run_daemon(tmp: Path, config: Path, expected: int, deadline_s: float) -> dict[str, Any]:
    daemon = Daemon(tmp, config)
    started = time.perf_counter()
    daemon.start()
    ready_at = time.perf_counter()
    db = tmp / "state" / "edged.db"
    try:
        done, finished_at = 0, None
        stop_at = time.monotonic() + deadline_s
        while time.monotonic() < stop_at and daemon.alive():
            time.sleep(0.5)
            done = analyzed_count(db)
            if done >= expected:
                finished_at = time.perf_counter()
                break
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")}
        status = subprocess.run([sys.executable, "-m", "edged", "status", "--json", "--config", str(config)],
                                cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    finally:
        code = daemon.terminate(60)
    return {
        "ready_s": round(ready_at - started, 2),
        "results": done,
        "all_done": finished_at is not None,
        "seconds_to_all_results": round(finished_at - ready_at, 1) if finished_at else None,
        "status": json.loads(status.stdout) if status.returncode == 0 and status.stdout.strip() else None,
        "exit_code": code,
        "log_tail": daemon.log_text()[-1500:] if code != 0 else "",
    }


def stored_results(db: Path) -> list[dict[str, Any]]:
    """Every result in the order its line was written (file offset), with the line's text."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT r.label, r.path, r.classified_by, r.model_calls, r.latency_ms, rec.text FROM results r"
            " JOIN records rec ON rec.record_id = r.record_id ORDER BY rec.id"
        ).fetchall()
    finally:
        conn.close()
    return [dict(r) for r in rows]


def alert_scores(results: list[dict[str, Any]], tags: list[str | None], texts: list[str]) -> dict[str, Any] | None:
    if not tags or tags[0] is None:
        return None
    tag_of = {}
    for text, tag in zip(texts, tags):
        tag_of.setdefault(text, []).append(tag)
    tp = fp = fn = tn = unmatched = 0
    for r in results:
        queue = tag_of.get(r["text"])
        if not queue:
            unmatched += 1
            continue
        alert = queue.pop(0) != "-"
        flagged = r["label"] not in NOT_ALERT
        tp += alert and flagged
        fp += flagged and not alert
        fn += alert and not flagged
        tn += not alert and not flagged
    return {
        "alerts": tp + fn, "flagged": tp + fp, "true_positives": tp,
        "recall": round(tp / (tp + fn), 3) if tp + fn else None,
        "precision": round(tp / (tp + fp), 3) if tp + fp else None,
        "unmatched_results": unmatched,
    }


def counts(results: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        out[str(r[key])] = out.get(str(r[key]), 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.backlog", description=__doc__.split("\n")[0])
    p.add_argument("--system", default="BGL", help="a Loghub system (its raw <system>_2k.log)")
    p.add_argument("--lines", type=int, default=2000, help="first lines of the log")
    p.add_argument("--threads", type=int, default=None, help="[backend] threads (default: edged's, the CPU count)")
    p.add_argument("--deadline", type=float, default=900, help="seconds to wait for all results")
    args = p.parse_args(argv)
    if not (MODEL_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf").exists():
        raise Unavailable("the default model is missing: make model")
    texts, tags = raw_lines(args.system, args.lines)
    with tempfile.TemporaryDirectory(prefix="edged-backlog-") as d:
        tmp = Path(d)
        (tmp / "logs").mkdir()
        (tmp / "logs" / f"{args.system}.log").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        config = write_config(tmp, args.threads)
        log(f"{args.system}: {len(texts)} lines, threads {args.threads or 'default'}")
        run = run_daemon(tmp, config, len(texts), args.deadline)
        results = stored_results(tmp / "state" / "edged.db")
    status = run.pop("status") or {}
    analysis = status.get("analysis", {})
    templates = analysis.get("templates")
    seconds = run["seconds_to_all_results"]
    result = {
        "system": args.system, "lines": len(texts), "threads": args.threads, **run,
        "templates": templates,
        "seconds_per_template": round(seconds / templates, 3) if seconds and templates else None,
        "model_calls": analysis.get("model_calls"),
        # each result's latency_ms is the model time its record took (0 calls: served by a cache or evidence)
        "model_seconds": round(sum(r["latency_ms"] or 0 for r in results if r["model_calls"]) / 1000, 1),
        "ungrounded": analysis.get("ungrounded"),
        "by_path": counts(results, "path"),
        "by_classified_by": counts(results, "classified_by"),
        "by_label": counts(results, "label"),
        "alerts": alert_scores(results, tags, texts),
        "machine": machine_info(),
    }
    log(json.dumps({k: v for k, v in result.items() if k != "machine"}))
    write_result("backlog", result)
    if not run["all_done"]:
        result["run"] = {"error": f"{run['results']} of {len(texts)} results within {args.deadline:.0f} s"}
    return result


if __name__ == "__main__":
    main()
