"""Grounded extraction and summaries on real third-party data: accuracy, ungrounded values, model time.

Parts:

- ``loghub``: for each of the 12 Loghub systems, N raw lines (default 100) go through the analysis
  path as the daemon analyses them (``edged eval --task extract``'s evaluate_extract: the daemon's
  own header parsing, auto-detected per file, then patterns, then the model) and are scored against the structured CSV's time, level and component.
  Rows 1-1000 of each system are the development part, rows 1001-2000 the held-out part reported
  by default (``--split dev`` for the other). Also: every non-null value checked against the line
  (``ungrounded``), model calls and model seconds per call (one extraction per new template).
- ``speed``: model seconds per new template for classify + extract, on the first line of new
  templates (held-out part): the baseline (every field asked of the model, as edged did before)
  and edged, alternating on the same lines in the same run, so load on the machine affects both.
- ``incidents``: N reports each (default 50) from MaintIE and the excavator work orders (the second
  half of each file unless ``--split dev``) through extraction and summaries: ungrounded values,
  summaries cut at a repetition, generated again, kept failing their check; and, checked afresh on
  the final summaries, how many still hold a repeated 4-gram or name a number or code not in the report.

``--backend none`` answers every model question with nulls (what structure alone gives, in seconds).
Writes bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

from bench._loghub_truth import TRUTH
from bench.common import LOGHUB_DIR, Unavailable, write_result

INCIDENTS_DIR = LOGHUB_DIR.parent / "incidents"
RECEIVED_AT = 1796000000.0  # 2026-11-29: a fixed "now", so year-less stamps get the same year every run


def _backend(kind: str):
    from edged.backends.fake import FakeBackend

    if kind == "none":
        def nulls(request):
            props = request.schema["properties"]
            if "label" in props:
                return {"label": props["label"]["enum"][0], "severity": 0}
            return {"summary": "no summary"} if "summary" in props else dict.fromkeys(props)

        return FakeBackend(answer=nulls)
    if kind == "invent":
        return FakeBackend(answer=_inventing)
    from edged.app import build_backend
    from edged.config.settings import Settings

    return build_backend(Settings())


def _inventing(request):
    """A model at its worst, to test the guarantee rather than the model: every field filled, half the
    time with a word or number of the text, half the time with one made up (seeded by the text)."""
    import random
    import re

    props = request.schema["properties"]
    if "label" in props:
        return {"label": props["label"]["enum"][0], "severity": 0}
    text = request.user.split(":\n", 1)[-1]
    rng = random.Random(text)
    words = re.findall(r"[\w.-]+", text) or ["x"]
    if "summary" in props:
        return {"summary": " ".join(rng.choice(words) for _ in range(8)) + " on 2022-01-01, part SK-8"}
    out = {}
    for name, prop in props.items():
        kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        made_up = rng.random() < 0.5
        if "number" in kinds or "integer" in kinds:
            nums = [w for w in words if re.fullmatch(r"\d+(?:\.\d+)?", w)]
            out[name] = rng.randint(1, 999) if made_up or not nums else float(rng.choice(nums))
        else:
            out[name] = rng.choice(["2022-01-01T12:30:00Z", "L", "E-4711", "left boom"]) if made_up else rng.choice(words)
    return out


def _structured_csv(system: str) -> Path:
    return LOGHUB_DIR / system / f"{system}_2k.log_structured.csv"


def loghub_rows(system: str, start: int, n: int) -> list[dict[str, str]]:
    raw = (LOGHUB_DIR / system / f"{system}_2k.log").read_text(encoding="utf-8", errors="replace").splitlines()
    with _structured_csv(system).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != len(raw):
        raise SystemExit(f"{system}: {len(raw)} raw lines but {len(rows)} structured rows")
    out = []
    for line, row in list(zip(raw, rows))[start:start + n]:
        out.append({"Text": line, **row})
    return out


def run_loghub(backend, n: int, split: str, headers: bool, classify: bool = False) -> dict:
    from edged.analysis.evaluate_extract import evaluate_extract, load_extract_csv, parse_field_specs
    from edged.config.settings import AnalysisSettings

    start = 0 if split == "dev" else 1000
    per_system, totals = {}, {}
    values = ungrounded = calls = 0
    dropped: dict[str, int] = {}
    model_seconds = 0.0
    asked = 0
    with tempfile.TemporaryDirectory() as tmp:
        for system in TRUTH:
            rows = loghub_rows(system, start, n)
            path = Path(tmp) / f"{system}.csv"
            with path.open("w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
            spec = parse_field_specs([f"{k}={v}" for k, v in TRUTH[system].items()])
            data = load_extract_csv(path, "Text", spec)
            r = evaluate_extract(backend, AnalysisSettings(), data, timezone="UTC", received_at=RECEIVED_AT,
                                 parse_headers=headers,
                                 tasks=("classify", "extract") if classify else ("extract",))
            asked += r["records_asked"]
            for k, v in r["dropped_by_grounding"].items():
                dropped[k] = dropped.get(k, 0) + v
            per_system[system] = {k: r[k] for k in ("fields", "values_returned", "ungrounded", "ungrounded_examples",
                                                    "model_calls", "model_seconds", "model_seconds_per_call")}
            values += r["values_returned"]
            ungrounded += r["ungrounded"]
            calls += r["model_calls"]
            model_seconds += r["model_seconds"]
            for name, f in r["fields"].items():
                t = totals.setdefault(name, {"rows_with_truth": 0, "right": 0, "systems": 0})
                t["rows_with_truth"] += f["rows_with_truth"]
                t["right"] += f["right"]
                t["systems"] += 1
            line = ", ".join(f"{k} {f['accuracy']}" for k, f in r["fields"].items())
            print(f"  {system:<12} {line}; ungrounded {r['ungrounded']}/{r['values_returned']};"
                  f" {r['model_calls']} calls, {r['model_seconds']} s", file=sys.stderr, flush=True)
    for t in totals.values():
        t["accuracy"] = round(t["right"] / t["rows_with_truth"], 4) if t["rows_with_truth"] else None
    return {
        "split": split, "lines_per_system": n, "lines": n * len(TRUTH), "headers": headers,
        "fields": totals, "values_returned": values, "ungrounded": ungrounded, "dropped_by_grounding": dropped,
        "model_calls": calls,
        "model_seconds": round(model_seconds, 2),
        "tasks": "classify+extract" if classify else "extract",
        "templates_asked": asked,
        "model_seconds_per_template": round(model_seconds / asked, 3) if asked else None,
        "model_seconds_per_call": round(model_seconds / calls, 3) if calls else None,
        "systems": per_system,
    }


# The extraction prompt and schema edged used before fields came from structure: every field asked of
# the model, event_time included. The baseline of the speed part.
BASELINE_EXTRACT_SYSTEM = (
    "You extract fields from log lines and incident reports of industrial machines. "
    "Fields: machine, component, error_code, value, unit, event_time. Copy values from the text; use null when a "
    "field is not in the text. Answer only with JSON."
)
BASELINE_FIELDS = {"machine": "string", "component": "string", "error_code": "string", "value": "number",
                   "unit": "string", "event_time": "string"}


def new_template_lines(per_system: int, limit: int = 0) -> list[tuple[str, str, object]]:
    """(system, line, parsed header): the first line of each of the first ``per_system`` templates of each
    system's held-out rows, its header parsed by the daemon's auto-detection (one stream per system)."""
    from edged.analysis.templates import TemplateStore
    from edged.logformats import HeaderParser

    rows = []
    for system in TRUTH:
        seen: set[int] = set()
        parser = HeaderParser()
        store = TemplateStore()
        for row in loghub_rows(system, 1000, 1000):
            mined = store.mine(row["Text"])
            if mined.template_id in seen:
                continue
            seen.add(mined.template_id)
            rows.append((system, row["Text"], parser.parse(f"file:{system}.log", row["Text"])))
            if len(seen) >= per_system:
                break
    return rows[:limit] if limit else rows


def run_speed(backend, per_system: int, limit: int = 0) -> dict:
    """Model seconds per new template, classify + extract: the baseline (every field asked) and edged
    (header and patterns first, the model for the rest), on the same lines, alternating, in one run."""
    from edged.analysis.pipeline import Pipeline, ResultCache
    from edged.analysis.tasks import CLASSIFY, EXTRACT, build_specs, extract_budget, extract_schema, request_for
    from edged.analysis.templates import TemplateStore
    from edged.backends.base import CompletionRequest
    from edged.config.settings import AnalysisSettings
    from edged.store.inbox import Claimed

    base_settings = AnalysisSettings(extract_fields=BASELINE_FIELDS)
    classify = build_specs(AnalysisSettings())[CLASSIFY]
    base_s, edged_s, edged_calls = [], [], 0
    rows = new_template_lines(per_system, limit)
    for system, text, parsed in rows:
        t = time.perf_counter()
        backend.complete(request_for(classify, text))
        backend.complete(CompletionRequest(BASELINE_EXTRACT_SYSTEM, request_for(classify, text).user,
                                           extract_schema(base_settings, list(BASELINE_FIELDS)),
                                           extract_budget(base_settings, list(BASELINE_FIELDS))))
        base_s.append(time.perf_counter() - t)
        header, message = parsed.header, parsed.message
        pipe = Pipeline(AnalysisSettings(), backend, TemplateStore(), ResultCache(lambda k: None), None, timezone="UTC",
                        tasks=(CLASSIFY, EXTRACT))
        t = time.perf_counter()
        outcome = pipe.analyze([Claimed(0, "s", system, None, "log", text, "", 1, RECEIVED_AT, 0, header, message)])
        edged_s.append(time.perf_counter() - t)
        edged_calls += outcome.model_calls
        print(f"  speed {system}: baseline {base_s[-1]:.1f} s, edged {edged_s[-1]:.1f} s", file=sys.stderr, flush=True)
    med = lambda v: sorted(v)[len(v) // 2] if v else None  # noqa: E731
    return {"templates": len(rows), "baseline_s_per_template_mean": round(sum(base_s) / len(base_s), 2),
            "edged_s_per_template_mean": round(sum(edged_s) / len(edged_s), 2),
            "baseline_s_per_template_median": round(med(base_s), 2), "edged_s_per_template_median": round(med(edged_s), 2),
            "edged_over_baseline": round(sum(edged_s) / sum(base_s), 3), "edged_model_calls": edged_calls,
            "baseline_model_calls": 2 * len(rows)}


def incident_texts(n: int, split: str) -> list[tuple[str, str]]:
    maintie = [item["text"] for item in json.loads((INCIDENTS_DIR / "maintie" / "gold_release.json").read_text())]
    with (INCIDENTS_DIR / "nist_excavators" / "excavators-cleaned.csv").open(newline="", encoding="utf-8") as f:
        excavators = [row["OriginalShorttext"] for row in csv.DictReader(f) if row["OriginalShorttext"].strip()]
    out = []
    for name, texts in (("maintie", maintie), ("excavators", excavators)):
        half = len(texts) // 2
        part = texts[:half] if split == "dev" else texts[half:]
        out += [(name, t) for t in part[:n]]
    return out


def run_incidents(backend, n: int, split: str, summaries: int) -> dict:
    from edged.analysis.grounding import grounded
    from edged.analysis.pipeline import Pipeline, ResultCache
    from edged.analysis.structured_fields import RECORD
    from edged.analysis.summary_check import REPEAT_NGRAM, unsupported
    from edged.analysis.tasks import EXTRACT, SUMMARIZE
    from edged.analysis.templates import TemplateStore
    from edged.backends.repetition import first_repeat
    from edged.config.settings import AnalysisSettings
    from edged.store.inbox import Claimed

    texts = incident_texts(n, split)
    summarized = {i for i, (src, _) in enumerate(texts)
                  if sum(1 for s, _ in texts[:i] if s == src) < summaries}  # the first K of each source
    settings = AnalysisSettings()
    both = Pipeline(settings, backend, TemplateStore(), ResultCache(lambda k: None), None, timezone="UTC",
                    tasks=(EXTRACT, SUMMARIZE))
    extract_only = Pipeline(settings, backend, TemplateStore(), ResultCache(lambda k: None), None, timezone="UTC",
                            tasks=(EXTRACT,))
    values = ungrounded = calls = repeated = unsupported_n = review = 0
    dropped: dict[str, int] = {}
    events: dict[str, int] = {}
    examples = []
    started = time.perf_counter()
    for i, (source, text) in enumerate(texts):
        rec = Claimed(i, f"inc:{i}", source, None, "incident", text, "", 1, RECEIVED_AT, 10)
        outcome = (both if i in summarized else extract_only).analyze([rec])
        calls += outcome.model_calls
        for k, v in outcome.ungrounded.items():
            dropped[k] = dropped.get(k, 0) + v
        for k, v in outcome.summaries.items():
            events[k] = events.get(k, 0) + v
        for result in outcome.results:
            for name, value in (result.fields or {}).items():
                if value is None or (result.fields_source or {}).get(name) == RECORD or name == "event_time":
                    continue
                values += 1
                ungrounded += not grounded(value, text)
            if i not in summarized:
                continue
            summary = result.summary or ""
            repeated += first_repeat(summary, REPEAT_NGRAM) is not None
            missing = unsupported(summary, text)
            unsupported_n += bool(missing)
            review += bool(result.review_reason)
            if len(examples) < 12:
                examples.append({"text": text, "summary": summary, "fields": result.fields,
                                 "sources": result.fields_source, "review_reason": result.review_reason})
        if (i + 1) % 10 == 0:
            print(f"  incidents {i + 1}/{len(texts)}", file=sys.stderr, flush=True)
    return {
        "split": split, "reports": len(texts), "summarized": len(summarized), "values_returned": values, "ungrounded": ungrounded,
        "dropped_by_grounding": dropped, "model_calls": calls, "seconds": round(time.perf_counter() - started, 1), "summary_events": events,
        "final_summaries_with_repeated_4gram": repeated, "final_summaries_naming_what_report_does_not": unsupported_n,
        "flagged_for_review": review, "examples": examples,
    }


# Structure alone (no model) on a few lines and reports: every part's plumbing, in seconds.
SMOKE_ARGS = ["--backend", "none", "--lines", "5", "--reports", "3", "--summaries", "1", "--speed-limit", "2",
              "--name", "extract_smoke"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="speed,incidents,loghub")
    p.add_argument("--speed-templates", type=int, default=1, help="new templates per system in the speed part")
    p.add_argument("--speed-limit", type=int, default=0, help="at most this many templates in all (0 = no limit)")
    p.add_argument("--lines", type=int, default=100, help="Loghub lines per system")
    p.add_argument("--reports", type=int, default=50, help="incident reports per source (MaintIE, excavators)")
    p.add_argument("--summaries", type=int, default=10, help="of which this many per source are also summarized")
    p.add_argument("--split", choices=["dev", "heldout"], default="heldout")
    p.add_argument("--backend", choices=["model", "none", "invent"], default="model",
                   help="model: the configured model; none: nulls (structure alone); invent: a scripted model that"
                        " makes up half its values (tests the grounding guarantee, not a model)")
    p.add_argument("--classify", action="store_true",
                   help="loghub: classify too, as the daemon does (model seconds per template = classify + extract)")
    p.add_argument("--no-headers", action="store_true", help="give the analysis no headers (patterns and model only)")
    p.add_argument("--name", default="extract")
    args = p.parse_args(argv)
    if not LOGHUB_DIR.exists():
        raise Unavailable(f"needs the third-party data in {LOGHUB_DIR.parent} (Loghub and the incident texts)")
    backend = _backend(args.backend)
    out: dict = {"backend": args.backend}
    parts = args.parts.split(",")
    try:
        for part in parts:  # in the order given; the file is written after each, so a long run keeps what it did
            if part == "speed":
                out["speed"] = run_speed(backend, args.speed_templates, args.speed_limit)
            elif part == "loghub":
                out["loghub"] = run_loghub(backend, args.lines, args.split, not args.no_headers, args.classify)
            elif part == "incidents":
                out["incidents"] = run_incidents(backend, args.reports, args.split, args.summaries)
            else:
                raise SystemExit(f"unknown part {part!r}: speed, loghub, incidents")
            shown = {k: v for k, v in out[part].items() if k not in ("systems", "examples")}
            print(json.dumps(shown, indent=1), file=sys.stderr, flush=True)
            write_result(args.name, out)
    finally:
        backend.close()
    print(write_result(args.name, out))
    return out


if __name__ == "__main__":
    main()
