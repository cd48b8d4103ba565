"""Analysis with the real default model: edged against raw llama-cpp-python, all in one run.

- (a) ``throughput``: records/s of edged's analyzer (a real StoreWriter on a temp SQLite file, records
  inserted, ``Analyzer.run_once`` until the inbox is empty; classify + extract per new template) over
  ~40 Loghub lines that are each a new template, against a raw loop calling
  ``llama_cpp.Llama.create_chat_completion`` with the same messages, grammar, max_tokens, order,
  threads and n_ctx. The two run interleaved batch by batch, so load from other work hits both alike.
- (b) ``templates``: model calls per template. First every Loghub system (2,000 lines each) through the
  real pipeline with a call-counting scripted backend (the routing does not depend on the answers);
  then three systems with the real model, for effective lines/s with the template cache against one
  model analysis per line (estimated from the measured per-record model time: running the model on
  all 6,000 lines would take over an hour on the dev box).
- (c) ``generation``: decode tokens/s of edged's backend against raw llama-cpp-python on the same
  summarize request (max_tokens 64), with the same grammar and without any.
- (d) ``cold_start``: ``python -m edged run`` as a subprocess with a temp config (default model,
  llama_cpp): seconds until the "ready" log line, and peak RSS (VmHWM) after a few records are analyzed.
- (e) ``bgl_eval``: ``edged eval`` on BGL 2k, alert (first field not ``-``) vs normal, with the configured
  taxonomy mapped to alert/normal and with the binary taxonomy (``--labels-from-data``).

Loghub is read at run time from ../shared/data/loghub (never copied here); without it (a) and (b) use
synthetic lines and (e) is skipped. Run: ``python -m bench.analysis [--quick] [--parts a,b,c,d,e]``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/analysis.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import LOGHUB_DIR, REPO, synthetic_lines, write_result
from edged.analysis.analyzer import Analyzer
from edged.analysis.tasks import CLASSIFY, EXTRACT, build_specs, request_for, summarize_spec
from edged.analysis.templates import TemplateStore
from edged.backends.base import Backend, Completion, CompletionRequest
from edged.backends.fake import FakeBackend
from edged.backends.grammar import schema_key, schema_to_gbnf
from edged.backends.llama_cpp import LlamaCppBackend, LlamaCppConfig
from edged.config.settings import AnalysisSettings, ModelSettings
from edged.priority import log_priority
from edged.store.database import connect, open_database
from edged.store.records import NewRecord
from edged.store.writer import StoreWriter, WriteBatch

LABELLED = ("BGL", "Thunderbird")  # systems whose raw lines start with an alert-label field
MODEL_SYSTEMS = ("HDFS", "OpenSSH", "Apache")  # (b) with the real model: few templates, three log styles
ALERT_MAP = "fault=alert,safety=alert,security=alert,normal=normal,warning=normal"
INCIDENT = (
    "Operator report, line 3, CNC mill M-204: at 14:20 the spindle stopped with alarm E1042 (spindle overtemp, "
    "91 C). Coolant flow looked low and the filter was clogged with chips. Machine restarted after 20 minutes "
    "of cooling; the same alarm came back at 15:05. Parts 1180-1186 need inspection."
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- data -------------------------------------------------------------------------------------------
def loghub_system(name: str) -> tuple[list[str], list[str]]:
    """A system's raw lines and each line's ground-truth event id (corrected templates where present)."""
    folder = LOGHUB_DIR / name
    structured = folder / f"{name}_2k.log_structured_corrected.csv"
    if not structured.exists():
        structured = folder / f"{name}_2k.log_structured.csv"
    with (folder / f"{name}_2k.log").open(encoding="utf-8", errors="replace", newline="") as f:
        raw = [ln.rstrip("\r\n").replace("\r", " ") for ln in f]
    with structured.open(encoding="utf-8", errors="replace", newline="") as f:
        events = [row["EventId"] for row in csv.DictReader(f)]
    if name in LABELLED:  # the dataset's alert label, not part of what the machine logged
        raw = [t.partition(" ")[2] for t in raw]
    pairs = [(t, e) for t, e in zip(raw, events) if t.strip()]
    return [t for t, _ in pairs], [e for _, e in pairs]


def loghub_systems() -> list[str]:
    return sorted(p.parent.name for p in LOGHUB_DIR.glob("*/*_2k.log")) if LOGHUB_DIR.is_dir() else []


def distinct_template_lines(n: int) -> tuple[list[tuple[str, str]], str]:
    """Up to n (machine, line) pairs in the analyzer's claim order (alert-looking first), each a new
    template for edged's miner when mined in that order, so every one of them reaches the model."""
    systems = loghub_systems()
    queues: dict[str, list[str]] = {}
    if systems:
        for s in systems:
            seen_events: set[str] = set()
            texts, events = loghub_system(s)
            queues[s] = [t for t, e in zip(texts, events) if not (e in seen_events or seen_events.add(e))]
        what = f"loghub: first line of ground-truth events, round-robin over {len(systems)} systems"
    else:
        queues["synthetic"] = [ln.decode().strip() for ln in synthetic_lines(2000)]
        what = "synthetic industrial lines (../shared/data/loghub not found)"
    candidates: list[tuple[str, str]] = []
    texts_seen: set[str] = set()
    for i in range(max(map(len, queues.values()))):
        for system, queue in queues.items():
            if i < len(queue) and queue[i] not in texts_seen and len(candidates) < 4 * n:
                texts_seen.add(queue[i])
                candidates.append((system, queue[i]))
    candidates.sort(key=lambda c: -log_priority(c[1]))  # stable: the insertion order within a priority
    while True:  # drop lines that share a template with an earlier one, until a fresh miner agrees
        miner, ids, kept = TemplateStore(), set(), []
        for system, text in candidates:
            tid = miner.mine(text).template_id
            if tid not in ids:
                ids.add(tid)
                kept.append((system, text))
        if len(kept) == len(candidates):
            return kept[:n], what
        candidates = kept


# -- edged and raw llama.cpp side by side ------------------------------------------------------------
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
    from edged.models.resolve import resolve_model

    return resolve_model(ModelSettings(dir=REPO / "models"))


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
    ordered = [r for _, r in sorted(enumerate(rows), key=lambda ir: (-log_priority(ir[1][2]), ir[0]))]
    batches = []
    for i in range(0, len(ordered), settings.batch_size):
        chunk = ordered[i:i + settings.batch_size]
        batches.append([request_for(specs[task], t, machine=m) for task in (CLASSIFY, EXTRACT) for _, m, t in chunk])
    return batches


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


# -- (b) model calls per template -----------------------------------------------------------------------
def run_pipeline(
    tmp: Path, backend: Backend, lines: list[tuple[str, str, str]], budget_s: float = float("inf")
) -> tuple[Daemon, float]:
    """lines: (machine, text, ground-truth event). Returns the daemon (done, or out of time) and the seconds
    spent analyzing. A failed record is retried after edged's back-off; the bench sleeps through the
    back-off (a daemon would analyze other records meanwhile) and does not count the sleep."""
    daemon = Daemon(tmp, backend, AnalysisSettings())
    daemon.insert([(f"b:{i}", m, t) for i, (m, t, _) in enumerate(lines)])
    busy = 0.0
    while busy < budget_s:
        t0 = time.perf_counter()
        claimed = daemon.analyzer.run_once()
        busy += time.perf_counter() - t0
        if not claimed:
            (retry_at,) = daemon.query("SELECT min(lease_until) FROM records WHERE status = 'pending'")[0]
            if retry_at is None:
                break
            time.sleep(max(0.0, retry_at - time.time()) + 0.05)
    return daemon, busy


def template_stats(daemon: Daemon, lines: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Over the lines the analyzer finished (stored or parked); all of them unless it ran out of time."""
    finished = {rid for (rid,) in daemon.query("SELECT record_id FROM records WHERE status IN ('done', 'parked')")}
    truth = {f"b:{i}": (m, e) for i, (m, _, e) in enumerate(lines) if f"b:{i}" in finished}
    rows = daemon.query("SELECT record_id, template_id, path, latency_ms FROM results")
    seen_by_model = {tid: truth[rid] for rid, tid, path, _ in rows if path == "model"}
    # A line whose template was classified from a line of another ground-truth event got a borrowed answer.
    borrowed = sum(1 for rid, tid, path, _ in rows if path != "model" and seen_by_model.get(tid) != truth[rid])
    templates = daemon.query("SELECT count(*) FROM templates")[0][0]
    gt = len(set(truth.values()))
    calls = daemon.analyzer.model_calls
    return {
        "lines": len(truth), "completed": len(truth) == len(lines), "edged_templates": templates,
        "ground_truth_templates": gt, "model_calls": calls,
        "calls_per_edged_template": round(calls / 2 / templates, 3) if templates else None,
        "calls_per_ground_truth_template": round(calls / 2 / gt, 3),
        "lines_answered_from_another_event": borrowed,
        "lines_failed_once_or_more":
            daemon.query("SELECT count(*) FROM records WHERE attempts > 1 OR error IS NOT NULL")[0][0],
        "lines_parked": daemon.query("SELECT count(*) FROM records WHERE status = 'parked'")[0][0],
        "_model_latency_ms": [lat for _, _, path, lat in rows if path == "model" and lat],
    }  # fmt: skip


def part_b(model, config: LlamaCppConfig, tmp: Path, quick: bool, budget_s: float) -> dict[str, Any]:
    systems = loghub_systems()
    if not systems:
        synth = [ln.decode().strip() for ln in synthetic_lines(2000)]
        miner = TemplateStore()
        data = {"synthetic": [(f"m{i % 4}", t, str(miner.mine(t).template_id)) for i, t in enumerate(synth)]}
        model_systems = ["synthetic"]
    else:
        data = {}
        for s in systems:
            texts, events = loghub_system(s)
            data[s] = [(s, t, e) for t, e in zip(texts, events)]
        model_systems = [s for s in MODEL_SYSTEMS if s in data][: 1 if quick else 3]
    routing = {}
    for s, lines in data.items():
        d = tmp / f"route-{s}"
        d.mkdir()
        daemon, _ = run_pipeline(d, FakeBackend(), lines)
        routing[s] = template_stats(daemon, lines)
        routing[s].pop("_model_latency_ms")
        daemon.close()
    tot = {k: sum(r[k] for r in routing.values()) for k in ("lines", "edged_templates", "ground_truth_templates",
                                                             "model_calls", "lines_answered_from_another_event")}
    tot["calls_per_ground_truth_template"] = round(tot["model_calls"] / 2 / tot["ground_truth_templates"], 3)
    tot["calls_per_edged_template"] = round(tot["model_calls"] / 2 / tot["edged_templates"], 3)
    log(f"  routing over {len(routing)} systems: {tot}")
    # The real model on a few systems, interleaved as if their machines logged at the same time.
    mixed = [ln for group in zip(*(data[s] for s in model_systems)) for ln in group]
    d = tmp / "model"
    d.mkdir()
    backend = LlamaCppBackend(config, model.path, model_sha256=model.sha256)
    try:
        backend.complete(request_for(build_specs(AnalysisSettings())[CLASSIFY], "warm-up"))
        daemon, seconds = run_pipeline(d, backend, mixed, budget_s)
    finally:
        backend.close()
    stats = template_stats(daemon, mixed)
    daemon.close()
    latencies = stats.pop("_model_latency_ms")
    per_line_ms = statistics.mean(latencies) if latencies else None
    effective = stats["lines"] / seconds
    per_line = 1000 / per_line_ms if per_line_ms else None
    stats.update({
        "systems": model_systems, "seconds": round(seconds, 2), "effective_lines_per_s": round(effective, 1),
        "model_ms_per_new_template_line": round(per_line_ms, 1) if per_line_ms else None,
        "per_line_lines_per_s_estimated": round(per_line, 3) if per_line else None,
        "per_line_is_estimated": True,
        "per_line_estimate": "1000 / mean model time (classify + extract) of the lines that went to the model "
                             "in this run; store overhead left out, which favours the per-line figure",
        "ratio_effective/per_line": round(effective / per_line, 1) if per_line else None,
    })  # fmt: skip
    return {
        "routing_all_systems": {"backend": "call-counting scripted backend (routing does not depend on answers)",
                                "per_system": routing, "total": tot},
        "real_model": stats,
        "calls_per_template_counts": "model calls / 2 (classify + extract per template) / templates",
        "goal": "<= 1.1 calls per ground-truth template",
        "goal_met": stats["calls_per_ground_truth_template"] <= 1.1 and tot["calls_per_ground_truth_template"] <= 1.1,
    }


# -- (c) generation tokens/s ------------------------------------------------------------------------------
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


# -- (d) cold start and RSS of the daemon ------------------------------------------------------------------
def _proc_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def backend_toml(threads: int | None) -> str:
    return f'[model]\ndir = "{REPO / "models"}"\n[backend]\ntype = "llama_cpp"\n' + (
        f"threads = {threads}\n" if threads else "")


def cold_start_once(tmp: Path, lines: list[str], threads: int | None) -> dict[str, Any]:
    (tmp / "logs").mkdir()
    (tmp / "logs" / "m1.log").write_text("".join(ln + "\n" for ln in lines))
    config = tmp / "edged.toml"
    config.write_text(
        f'[store]\npath = "{tmp / "state" / "edged.db"}"\n[logs]\npaths = ["{tmp / "logs"}/*.log"]\n'
        '[analysis]\ndigest_interval_s = 0\n' + backend_toml(threads)
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_") and k != "STATE_DIRECTORY"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "edged", "run", "--config", str(config)], cwd=tmp, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready = threading.Event()
    stderr: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            stderr.append(line)
            if " ready" in line and "edged" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(60):
            raise RuntimeError("edged run did not log 'ready' within 60 s:\n" + "".join(stderr)[-2000:])
        ready_s = time.perf_counter() - t0
        rss_ready = _proc_kib(proc.pid, "VmRSS")
        db, deadline, analyzed = tmp / "state" / "edged.db", time.monotonic() + 180, 0
        while analyzed < len(lines) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            try:
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                analyzed = conn.execute("SELECT count(*) FROM results").fetchone()[0]
                conn.close()
            except sqlite3.Error:
                pass
        hwm = _proc_kib(proc.pid, "VmHWM")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {"ready_s": round(ready_s, 3), "rss_at_ready_mib": round((rss_ready or 0) / 1024, 1),
            "peak_rss_mib": round((hwm or 0) / 1024, 1), "records_analyzed": analyzed, "of": len(lines),
            "exit_code": proc.returncode}


def part_d(runs: int, tmp: Path, threads: int | None) -> dict[str, Any]:
    lines = [
        "2026-11-27 10:00:01 ERROR spindle 2 overtemp 91C",
        "2026-11-27 10:00:02 INFO cycle 1182 completed in 41 s",
        "2026-11-27 10:00:03 WARN coolant pressure low (1.2 bar)",
        "2026-11-27 10:00:04 ERROR light curtain breached while robot arm moving",
        "2026-11-27 10:00:05 INFO operator badge 4411 logged in at HMI 2",
    ]
    results = []
    for i in range(runs):
        d = tmp / f"cold-{i}"
        d.mkdir()
        results.append(cold_start_once(d, lines, threads))
        log(f"  cold start {i + 1}: {results[-1]}")
    ready = statistics.median(r["ready_s"] for r in results)
    peak = max(r["peak_rss_mib"] for r in results)
    return {
        "runs": results, "ready_s_median": round(ready, 3), "peak_rss_mib_max": peak,
        "note": "the model file is normally in the page cache (read by the parts before); a first boot after a "
                "reboot also reads its ~94 MiB from disk",
        "goal": "ready < 3 s, peak RSS < 350 MB", "goal_met": ready < 3 and peak * 1.048576 < 350,
    }  # fmt: skip


# -- (e) edged eval on BGL ---------------------------------------------------------------------------------
def bgl_csv(path: Path) -> dict[str, int]:
    """BGL 2k as text,label (alert/normal), in a stratified order: each class's lines are spread evenly, so
    the first N rows are a systematic sample of both classes at their 2k proportions."""
    rows = []
    with (LOGHUB_DIR / "BGL" / "BGL_2k.log").open(encoding="utf-8", errors="replace", newline="") as f:
        for line in f:
            tag, _, text = line.rstrip("\r\n").partition(" ")
            if text.strip():
                rows.append((text.strip(), "normal" if tag == "-" else "alert"))
    by_class: dict[str, list] = {}
    for row in rows:
        by_class.setdefault(row[1], []).append(row)
    keyed = [((j + 0.5) / len(group), label, row) for label, group in by_class.items() for j, row in enumerate(group)]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(row for _, _, row in sorted(keyed, key=lambda k: (k[0], k[1])))
    return {label: len(group) for label, group in by_class.items()}


def run_eval(path: Path, limit: int, extra: list[str], tmp: Path, threads: int | None) -> dict[str, Any]:
    config = tmp / "eval.toml"
    config.write_text(backend_toml(threads))
    cmd = [sys.executable, "-m", "edged", "eval", "--data", str(path), "--text-col", "text", "--label-col", "label",
           "--limit", str(limit), "--json", "--config", str(config), *extra]
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"edged eval failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout)
    alert = r["per_class"]["alert"]
    return {"command": "edged eval " + " ".join(cmd[4:]), "alert_precision": alert["precision"],
            "alert_recall": alert["recall"], "alert_f1": alert["f1"],
            **{k: r[k] for k in ("n", "accuracy", "micro_f1", "macro_f1", "model_calls", "errors", "latency_ms",
                                 "tokens_per_s", "seconds", "taxonomy", "predicted_model_labels", "confusion")}}


def part_e(limit: int, tmp: Path, threads: int | None) -> dict[str, Any]:
    path = tmp / "bgl_2k_alert.csv"
    counts = bgl_csv(path)
    variants = {
        "mapped_taxonomy": run_eval(path, limit, ["--map", ALERT_MAP], tmp, threads),
        "binary_taxonomy": run_eval(path, limit, ["--labels-from-data"], tmp, threads),
    }
    best = max(variants, key=lambda v: variants[v]["alert_f1"])
    return {
        "data": f"BGL 2k: {counts}; the first {limit} rows of a stratified order (a systematic sample of each "
                "class at its 2k proportion); text = the raw line without its label field",
        "mapping": ALERT_MAP, **variants, "better_by_alert_f1": best,
    }  # fmt: skip


# -- orchestration ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: fewer records, one system, short eval")
    p.add_argument("--parts", default="a,b,c,d,e", help="comma-separated subset of a,b,c,d,e")
    p.add_argument("--records", type=int, default=40, help="(a) distinct-template lines")
    p.add_argument("--eval-limit", type=int, default=250, help="(e) BGL rows per eval")
    p.add_argument("--cold-starts", type=int, default=3, help="(d) daemon starts")
    p.add_argument("--model-budget", type=float, default=300, help="(b) seconds the real-model run may take; "
                   "when it runs out, the figures cover the lines finished by then")
    p.add_argument("--threads", type=int, default=None,
                   help="llama.cpp threads for every part (default: edged's default, the CPU count)")
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
        ("b", "templates", lambda tmp: part_b(model, config, tmp, args.quick, args.model_budget)),
        ("c", "generation", lambda tmp: part_c(model, config, 2 if args.quick else 3)),
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
    log(f"  -> {out.relative_to(REPO)}")
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


if __name__ == "__main__":
    main()
