"""Model seconds per new template, classify + extract, with the llama_cpp backend's savings and without.

A trickle of new lines makes the tasks alternate (a line is classified, then extracted, then the next
line classified): the previous call always had the other task's system prompt. Each line here is the
first line of a new template from Loghub's held-out rows (1001-2000 of each system), analysed alone
through the daemon's pipeline (classify + extract; ``[analysis] levels`` empty so that the level does
not answer the classification and both calls are made). Three variants, each its own backend on the
default model with the same threads, take turns line by line, so load from other work hits all alike:

- ``before``: no saved system-prompt states (``[backend] prefix_states = 0``), and the whole vocabulary
  masked whenever the grammar rejects the most likely token: the decode path as it was.
- ``states``: edged's default: saved KV states of each task's system prompt, and the most likely
  tokens tried against the grammar before the whole vocabulary is masked. Its answers must be the
  same as ``before``'s (``identical_to_before``).
- ``cut``: saved states and ``[analysis] cut_ungrounded_values``: ``null`` written at once for a value
  string that stops occurring in the line (grounding would drop it anyway); the fields after it can
  differ (``cut_vs_before_fields``: values kept, lost, gained, changed).

Model seconds are the pipeline's own per-call timing (``latency_ms`` of each result). Beside them, the
answers: labels and every extracted field compared with ``before``'s, values the model returned that
grounding dropped (``ungrounded_dropped``; the final results hold none). Writes bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.common import LOGHUB_DIR, Unavailable, write_result
from bench.extract import new_template_lines

NEEDS_MODEL = True
VARIANTS = ("before", "states", "cut")
RECEIVED_AT = 1796000000.0


def _backends(threads: int) -> dict:
    from edged.backends.llama_cpp import LlamaCppBackend, LlamaCppConfig
    from edged.config.settings import Settings
    from edged.models.resolve import resolve_model

    model = resolve_model(Settings().model)
    make = lambda states: LlamaCppBackend(LlamaCppConfig(threads=threads, prefix_states=states), model.path)  # noqa: E731
    before = make(0)
    before.top_candidates = 0  # as it was: the whole vocabulary masked whenever the grammar rejects the argmax
    return {"before": before, "states": make(4), "cut": make(4)}


def _analyse(backend, settings, system: str, text: str, parsed):
    from edged.analysis.pipeline import Pipeline, ResultCache
    from edged.analysis.tasks import CLASSIFY, EXTRACT
    from edged.analysis.templates import TemplateStore
    from edged.store.inbox import Claimed

    pipe = Pipeline(settings, backend, TemplateStore(), ResultCache(lambda k: None), None, timezone="UTC",
                    tasks=(CLASSIFY, EXTRACT))
    header, message = (None, None) if parsed.unparsed else (parsed.header, parsed.message)
    record = Claimed(0, "r", f"file:{system}.log", None, "log", text, "", 1, RECEIVED_AT, 0, header, message)
    return pipe.analyze([record])


def run(threads: int, per_system: int, limit: int) -> dict:
    from edged.analysis.structured_fields import MODEL
    from edged.config.settings import AnalysisSettings

    settings = {name: AnalysisSettings(levels={}, cut_ungrounded_values=name == "cut") for name in VARIANTS}
    lines = new_template_lines(per_system, limit)
    backends = _backends(threads)
    seconds = dict.fromkeys(VARIANTS, 0.0)
    calls = dict.fromkeys(VARIANTS, 0)
    ungrounded = dict.fromkeys(VARIANTS, 0)
    model_values = dict.fromkeys(VARIANTS, 0)
    failures = dict.fromkeys(VARIANTS, 0)
    same_label = dict.fromkeys(VARIANTS, 0)
    same_fields = dict.fromkeys(VARIANTS, 0)
    kept = {"kept": 0, "lost": 0, "gained": 0, "changed": 0}
    examples = []
    try:
        for i, (system, text, parsed) in enumerate(lines):
            results = {}
            for name in VARIANTS:
                outcome = _analyse(backends[name], settings[name], system, text, parsed)
                calls[name] += outcome.model_calls
                ungrounded[name] += sum(outcome.ungrounded.values())
                failures[name] += len(outcome.failures)
                result = outcome.results[0] if outcome.results else None
                results[name] = result
                if result is not None:
                    seconds[name] += (result.latency_ms or 0) / 1000
                    model_values[name] += sum(1 for s in (result.fields_source or {}).values() if s == MODEL)
            base = results["before"]
            for name in VARIANTS:
                r = results[name]
                if base is not None and r is not None:
                    same_label[name] += r.label == base.label
                    same_fields[name] += r.fields == base.fields
            a = results["cut"]
            if base is not None and a is not None:
                for field, value in (base.fields or {}).items():
                    other = (a.fields or {}).get(field)
                    if value is None and other is None:
                        continue
                    kept["kept" if value == other else "lost" if other is None else "gained" if value is None
                         else "changed"] += 1
                if a.fields != base.fields and len(examples) < 10:
                    examples.append({"text": text, "before": base.fields, "cut": a.fields})
            print(f"  {i + 1}/{len(lines)} {system}: " + ", ".join(
                f"{n} {((results[n].latency_ms or 0) / 1000 if results[n] else 0):.2f} s" for n in VARIANTS),
                file=sys.stderr, flush=True)
    finally:
        for b in backends.values():
            b.close()
    n = len(lines)
    per = {name: round(seconds[name] / n, 3) if n else None for name in VARIANTS}
    return {
        "threads": threads,
        "templates": n,
        "model_s_per_template": per,
        "over_before": {name: round(seconds[name] / seconds["before"], 3) if seconds["before"] else None
                        for name in VARIANTS},
        "model_calls": calls,
        "failures": failures,
        "identical_to_before": {"labels": same_label, "fields": same_fields, "of": n},
        "model_values_kept": model_values,
        "ungrounded_dropped": ungrounded,
        "cut_vs_before_fields": kept,
        "examples_fields_differ": examples,
    }


SMOKE_ARGS = ["--limit", "2", "--name", "extract_speed_smoke"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads of every variant (1: comparable on a"
                   " shared machine; the ratios matter more than the seconds)")
    p.add_argument("--templates", type=int, default=2, help="new templates per Loghub system")
    p.add_argument("--limit", type=int, default=0, help="at most this many lines in all (0 = no limit)")
    p.add_argument("--name", default="extract_speed")
    args = p.parse_args(argv)
    if not LOGHUB_DIR.exists():
        raise Unavailable(f"needs Loghub in {LOGHUB_DIR}")
    started = time.perf_counter()
    out = {"speed": run(args.threads, args.templates, args.limit)}
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(write_result(args.name, out))
    return out


if __name__ == "__main__":
    main()
