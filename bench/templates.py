"""Template quality on the 12 Loghub systems: edged's miner against the one it replaced, in one run.

For each system (2,000 lines, ground-truth event ids from the ``*_structured`` CSVs, the corrected ones
where present; BGL's and Thunderbird's alert-label column removed, as real logs do not have it):

- ``grouping_accuracy``: Loghub's definition, the share of lines whose predicted group holds exactly
  the lines of their true event;
- ``templates`` against ``true_events``;
- ``borrowed_share``: the share of lines served a cached answer computed for a line of another true
  event (a template cache hit whose answered line, or an exact-text hit whose first line, has another
  event id);
- ``answered_lines_per_true_event``: lines whose answer the model was asked for (classify + extract
  are two calls for one such line), per true event; ``calls_per_true_event`` counts backend calls / 2;
- ``lines_per_s``: through the pipeline with a scripted backend (mining, headers and caches only).

``edged`` runs the daemon's own code path: ``Pipeline.analyze`` in batches of ``[analysis] batch_size``
with the default settings and header auto-detection, a call-counting backend. ``before`` is the miner
edged used before (whole raw lines into drain3, the answer cached by cluster id), replayed with the
same cache rules. ``--model-systems`` also runs those systems with the real default model and counts
its calls. Systems marked held-out were not looked at while choosing formats and miner parameters.

Run: ``python -m bench.templates [--systems A,B] [--model-systems HDFS,BGL,OpenSSH] [--name templates]``.
Writes bench/results/templates.json.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import LOGHUB_DIR, REPO, Unavailable, write_result
from bench._legacy_miner import TemplateStore as LegacyMiner
from bench.analysis.data import loghub_system
from edged.analysis.pipeline import Pipeline, ResultCache
from edged.analysis.templates import TemplateStore
from edged.backends.base import Backend, Completion, CompletionRequest
from edged.backends.fake import FakeBackend
from edged.config.settings import AnalysisSettings, ModelSettings
from edged.logformats import HeaderParser
from edged.store.inbox import Claimed

# HPC's lines were read to find the numbered-name rule (edged.analysis.templates), so it is a dev system now.
DEV = ("Android", "BGL", "HDFS", "HPC", "Hadoop", "Linux", "OpenSSH", "Spark", "Zookeeper")
HELD_OUT = ("Apache", "Thunderbird", "Windows")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def grouping_accuracy(predicted: list[Any], truth: list[str]) -> float:
    """Loghub: a line is right when its predicted group is exactly the set of its true event's lines."""
    by_pred: dict[Any, set[int]] = {}
    by_true: dict[str, set[int]] = {}
    for i, (p, t) in enumerate(zip(predicted, truth)):
        by_pred.setdefault(p, set()).add(i)
        by_true.setdefault(t, set()).add(i)
    right = sum(len(lines) for lines in by_pred.values() if by_true[truth[next(iter(lines))]] == lines)
    return round(right / len(truth), 4)


class Counting(Backend):
    """Counts the calls that reach a backend."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.calls = inner, 0
        self.name, self.model_name = inner.name, inner.model_name
        self.model_sha256 = getattr(inner, "model_sha256", None)

    def complete(self, request: CompletionRequest) -> Completion:
        self.calls += 1
        return self.inner.complete(request)


def run_edged(system: str, texts: list[str], events: list[str], backend: Backend) -> dict[str, Any]:
    settings = AnalysisSettings()
    counting = Counting(backend)
    pipeline = Pipeline(settings, counting, TemplateStore(), ResultCache(lambda key: None), None, headers=HeaderParser())
    source = f"file:/var/log/{system.lower()}.log"
    records = [
        Claimed(i, f"r{i}", source, None, "log", text, "", 1, float(i), 0)
        for i, text in enumerate(texts)
    ]
    tids: dict[str, int | None] = {}
    borrowed = answered = unparsed = refreshes = carried = 0
    first_of_text: dict[str, int] = {}
    event_of = {f"r{i}": e for i, e in enumerate(events)}
    formats: dict[str, int] = {}
    started = time.perf_counter()
    for start in range(0, len(records), settings.batch_size):
        outcome = pipeline.analyze(records[start : start + settings.batch_size])
        unparsed += outcome.unparsed_lines
        refreshes += outcome.template_refreshes
        carried += outcome.template_carried
        for r in outcome.results:
            tids[r.record_id] = r.template_id
            rec = outcome.records[r.record_id]
            fmt = (rec.header or {}).get("format", "-")
            formats[fmt] = formats.get(fmt, 0) + 1
            i = int(r.record_id[1:])
            if r.path == "model":
                answered += 1
                first_of_text.setdefault(texts[i], i)
            elif r.path == "template_cache":
                borrowed += event_of[outcome.served_from[r.record_id]] != events[i]
            elif r.path == "exact_cache":
                borrowed += events[first_of_text.get(texts[i], i)] != events[i]
    seconds = time.perf_counter() - started
    predicted = [pipeline.templates.resolve(tids[f"r{i}"]) for i in range(len(texts))]  # as the miner ends up
    true_events = len(set(events))
    return {
        "grouping_accuracy": grouping_accuracy(predicted, events),
        "templates": len(set(predicted)),
        "borrowed_share": round(borrowed / len(texts), 4),
        "answered_lines_per_true_event": round(answered / true_events, 3),
        "calls_per_true_event": round(counting.calls / 2 / true_events, 3),
        "backend_calls": counting.calls,
        "template_refreshes": refreshes,
        "template_carried": carried,  # generalised templates that kept their earlier text's answer
        "unparsed_lines": unparsed,
        "formats": formats,
        "lines_per_s": round(len(texts) / seconds, 1),
    }


def miner_only_rate(system: str, texts: list[str]) -> float:
    """Lines/s of header parsing and mining alone (no caches, no pipeline), to compare with the earlier miner."""
    parser, miner = HeaderParser(), TemplateStore()
    source = f"file:/var/log/{system.lower()}.log"
    started = time.perf_counter()
    for text in texts:
        parsed = parser.parse(source, text)
        header = parsed.header or {}
        miner.mine(parsed.message if parsed.message is not None else text, header.get("level"), header.get("component"))
    return round(len(texts) / (time.perf_counter() - started), 1)


def run_before(texts: list[str], events: list[str]) -> dict[str, Any]:
    """The earlier miner and cache rules: raw lines into drain3; a template's first line answers the rest."""
    miner = LegacyMiner()
    first_of_cluster: dict[int, int] = {}
    first_of_text: dict[str, int] = {}
    predicted, borrowed, answered = [], 0, 0
    started = time.perf_counter()
    for i, text in enumerate(texts):
        tid = miner.mine(text).template_id
        predicted.append(tid)
        if text in first_of_text:
            borrowed += events[first_of_text[text]] != events[i]
        elif tid in first_of_cluster:
            borrowed += events[first_of_cluster[tid]] != events[i]
        else:
            first_of_cluster[tid] = first_of_text[text] = i
            answered += 1
    seconds = time.perf_counter() - started
    true_events = len(set(events))
    return {
        "grouping_accuracy": grouping_accuracy(predicted, events),
        "templates": len(set(predicted)),
        "borrowed_share": round(borrowed / len(texts), 4),
        "answered_lines_per_true_event": round(answered / true_events, 3),
        "lines_per_s_miner_only": round(len(texts) / seconds, 1),
    }


def real_backend(threads: int | None = None) -> Backend:
    from edged.backends.llama_cpp import LlamaCppBackend, LlamaCppConfig
    from edged.models.resolve import resolve_model

    model = resolve_model(ModelSettings(dir=REPO / "models"))
    config = LlamaCppConfig(threads=threads) if threads else LlamaCppConfig()
    return LlamaCppBackend(config, model.path, model_sha256=model.sha256)


def summarize(systems: dict[str, dict[str, Any]], side: str, names: tuple[str, ...]) -> dict[str, Any]:
    rows = [systems[s][side] for s in names if s in systems]
    if not rows:
        return {}
    return {
        "systems": len(rows),
        "grouping_accuracy_mean": round(sum(r["grouping_accuracy"] for r in rows) / len(rows), 4),
        "grouping_accuracy_min": min(r["grouping_accuracy"] for r in rows),
        "borrowed_share_max": max(r["borrowed_share"] for r in rows),
        "answered_lines_per_true_event_max": max(r["answered_lines_per_true_event"] for r in rows),
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    if not result:
        return ["templates: skipped, no Loghub data"]
    out = []
    for side in ("edged_all", "before_all", "edged_held_out"):
        s = result["summary"][side]
        out.append(
            f"templates {side}: grouping accuracy mean {s['grouping_accuracy_mean']} (min {s['grouping_accuracy_min']}),"
            f" borrowed answers at most {s['borrowed_share_max']:.2%}, answered lines per true event at most"
            f" {s['answered_lines_per_true_event_max']} over {s['systems']} systems"
        )
    for name, r in result["real_model"].items():
        out.append(f"templates {name} with the real model: {r['calls_per_true_event']} calls per true event"
                   f" (classify + extract = 1), borrowed {r['borrowed_share']:.2%}")
    return out


SMOKE_ARGS = ["--systems", "Apache", "--name", "templates_smoke"]  # one small system, no model


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.templates", description=__doc__.split("\n")[0])
    p.add_argument("--systems", default="", help="comma-separated systems (default: every Loghub system found)")
    p.add_argument("--model-systems", default="", help="also run these with the real default model, e.g. HDFS,BGL,OpenSSH")
    p.add_argument("--threads", type=int, help="llama.cpp threads for --model-systems (default: every CPU)")
    p.add_argument("--name", default="templates", help="result file name (bench/results/<name>.json)")
    args = p.parse_args(argv)
    found = sorted(q.parent.name for q in LOGHUB_DIR.glob("*/*_2k.log")) if LOGHUB_DIR.is_dir() else []
    if not found:
        raise Unavailable(f"no Loghub data under {LOGHUB_DIR} (the 12 Loghub 2k systems; see its README)")
    names = [s for s in (args.systems.split(",") if args.systems else found) if s]
    systems: dict[str, dict[str, Any]] = {}
    for name in names:
        texts, events = loghub_system(name)
        row = {
            "held_out": name in HELD_OUT,
            "lines": len(texts),
            "true_events": len(set(events)),
            "edged": run_edged(name, texts, events, FakeBackend()) | {"lines_per_s_miner_only": miner_only_rate(name, texts)},
            "before": run_before(texts, events),
        }
        systems[name] = row
        e, b = row["edged"], row["before"]
        log(
            f"{name:12} events {row['true_events']:4}  GA {e['grouping_accuracy']:.3f} (before {b['grouping_accuracy']:.3f})"
            f"  templates {e['templates']:4} (before {b['templates']:4})  borrowed {e['borrowed_share']:.2%}"
            f" (before {b['borrowed_share']:.2%})  answered/event {e['answered_lines_per_true_event']:.2f}"
            f" (before {b['answered_lines_per_true_event']:.2f})  unparsed {e['unparsed_lines']}  {e['lines_per_s']:.0f} lines/s"
            f"  miner only {e['lines_per_s_miner_only']:.0f} (before {b['lines_per_s_miner_only']:.0f})"
        )
    model_runs: dict[str, Any] = {}
    model_names = [s for s in args.model_systems.split(",") if s]
    if model_names:
        backend = real_backend(args.threads)
        for name in model_names:
            texts, events = loghub_system(name)
            log(f"{name}: with the real model ...")
            model_runs[name] = run_edged(name, texts, events, backend)
            log(f"  {name}: {model_runs[name]}")
    result = {
        "what": __doc__.split("\n\n")[0],
        "dev_systems": [s for s in DEV if s in systems],
        "held_out_systems": [s for s in HELD_OUT if s in systems],
        "summary": {
            "edged_all": summarize(systems, "edged", tuple(systems)),
            "before_all": summarize(systems, "before", tuple(systems)),
            "edged_held_out": summarize(systems, "edged", HELD_OUT),
            "before_held_out": summarize(systems, "before", HELD_OUT),
            "edged_dev": summarize(systems, "edged", DEV),
        },
        "systems": systems,
        "real_model": model_runs,
    }
    path = write_result(args.name, result)
    log(f"summary: {result['summary']}\nwritten to {path}")
    return result


if __name__ == "__main__":
    main()
