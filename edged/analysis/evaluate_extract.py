"""``edged eval --task extract``: score extracted fields against true values in a CSV.

The rows go through the analysis path the daemon uses (edged.analysis.pipeline, extraction only):
header and patterns first, the model once per log template for the fields they left empty, its
values kept only when they occur in the text. So the report measures edged, template reuse
included, and the model calls it makes.

- A field's truth is one column (``--field component=Component``) or several joined by a space
  (``--field event_time=Date+Time``). Rows with an empty truth do not count for that field.
- Exact match after normalisation: ``event_time`` both sides read by edged.analysis.timestamps
  (ISO-8601 in ``[logs] timezone``; a truth that does not parse is compared as written); numbers
  as numbers; strings case-folded with whitespace collapsed.
- ``accuracy`` = right / rows with a truth; ``coverage`` = rows with a truth where edged gave any
  value; ``wrong`` = a value that is not the truth; ``by_source`` = where the values came from.
- ``ungrounded_rate``: non-null values edged returned that do not occur in the text / all non-null
  values (``event_time`` is checked through its header or pattern text, which is in the line; the
  machine from a file name or topic is not in the text and is left out).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edged.analysis.evaluate import EvalError
from edged.analysis.grounding import grounded
from edged.analysis.pipeline import Pipeline, ResultCache
from edged.analysis.structured_fields import RECORD
from edged.analysis.tasks import EXTRACT
from edged.analysis.templates import TemplateStore
from edged.analysis.timestamps import normalize_time, zone
from edged.backends.base import Backend
from edged.config.settings import AnalysisSettings
from edged.logformats import HeaderParser
from edged.store.inbox import Claimed

BATCH = 64


@dataclass
class ExtractDataset:
    path: Path
    texts: list[str]
    truths: list[dict[str, str]]  # per row: field -> true value ("" = none)
    fields: dict[str, list[str]]  # field -> columns joined for its truth
    skipped_empty_text: int = 0


def parse_field_specs(items: list[str] | None) -> dict[str, list[str]]:
    """``["event_time=Date+Time", "level=Level"]`` -> {"event_time": ["Date", "Time"], "level": ["Level"]}."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        name, sep, cols = item.partition("=")
        columns = [c.strip() for c in cols.split("+") if c.strip()]
        if not sep or not name.strip() or not columns:
            raise EvalError(f"--field takes FIELD=COLUMN (or FIELD=COL1+COL2), not {item!r}")
        out[name.strip()] = columns
    if not out:
        raise EvalError("--task extract needs at least one --field FIELD=COLUMN")
    return out


def load_extract_csv(path: Path | str, text_col: str, fields: dict[str, list[str]], limit: int | None = None) -> ExtractDataset:
    path = Path(path)
    texts, truths, skipped = [], [], 0
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            missing = [c for c in [text_col, *(c for cols in fields.values() for c in cols)] if c not in columns]
            if missing:
                raise EvalError(f"{path} has no column {', '.join(repr(c) for c in dict.fromkeys(missing))}; its columns"
                                f" are: {', '.join(columns) or '(none)'}")
            for row in reader:
                if limit is not None and len(texts) + skipped >= limit:
                    break
                text = row.get(text_col) or ""
                if not text.strip():
                    skipped += 1
                    continue
                texts.append(text)
                truths.append({name: " ".join((row.get(c) or "").strip() for c in cols).strip()
                               for name, cols in fields.items()})
    except FileNotFoundError:
        raise EvalError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise EvalError(f"{path} is not UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise EvalError(f"{path}: malformed CSV: {exc}") from None
    if not texts:
        raise EvalError(f"{path} has no row with a {text_col!r} text")
    return ExtractDataset(path, texts, truths, fields, skipped)


def _norm(name: str, value: Any, tz, received_at: float) -> Any:
    if value is None or value == "":
        return None
    if name == "event_time":
        text = str(value)
        return normalize_time(text, tz, received_at) or text.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = " ".join(str(value).split()).casefold()
    try:
        return float(text)
    except ValueError:
        return text


@dataclass
class _Tally:
    truth: int = 0
    right: int = 0
    given: int = 0
    wrong: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    examples_wrong: list[dict[str, Any]] = field(default_factory=list)


def evaluate_extract(
    backend: Backend,
    settings: AnalysisSettings,
    data: ExtractDataset,
    *,
    kind: str = "log",
    timezone: str = "local",
    headers: HeaderParser | None = None,
    parse_headers: bool = True,
    received_at: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    tasks: tuple[str, ...] = (EXTRACT,),
) -> dict[str, Any]:
    received_at = time.time() if received_at is None else received_at
    tz = zone(timezone)
    unknown = [name for name in data.fields if name not in settings.extract_fields]
    if unknown:
        raise EvalError(f"fields not in [analysis.extract_fields] ({', '.join(settings.extract_fields)}): "
                        + ", ".join(unknown))
    pipeline = Pipeline(settings, backend, TemplateStore(), ResultCache(lambda key: None), None, headers=headers, timezone=timezone,
                        tasks=tasks)
    tallies = {name: _Tally() for name in data.fields}
    values = ungrounded = model_calls = 0
    dropped: dict[str, int] = {}
    ungrounded_examples: list[dict[str, Any]] = []
    model_seconds = 0.0
    asked = 0  # records that reached the model: one per new template (log lines)
    started = time.perf_counter()
    total = len(data.texts)
    source = f"file:{data.path}"
    for start in range(0, total, BATCH):
        records = []
        for i in range(start, min(start + BATCH, total)):
            text = data.texts[i]
            # The daemon's own header parsing (the pipeline's, per stream: the data file is one stream);
            # without it, an empty header: fields from patterns and the model only.
            header = None if parse_headers else {}
            records.append(Claimed(i, f"eval:{i}", source, None, kind, text, "", 1, received_at, 0, header, None))
        outcome = pipeline.analyze(records)
        model_calls += outcome.model_calls
        for name, n in outcome.ungrounded.items():
            dropped[name] = dropped.get(name, 0) + n
        by_id = {r.record_id: r for r in outcome.results}
        for rec in records:
            result = by_id.get(rec.record_id)
            fields = (result.fields or {}) if result else {}
            sources = (result.fields_source or {}) if result else {}
            if result and result.latency_ms:
                model_seconds += result.latency_ms / 1000
                asked += 1
            for name, value in fields.items():
                if value is None or sources.get(name) == RECORD or name == "event_time":
                    continue
                values += 1
                if not grounded(value, rec.text):
                    ungrounded += 1
                    if len(ungrounded_examples) < 5:
                        ungrounded_examples.append({"field": name, "value": value, "text": rec.text[:200]})
            for name, tally in tallies.items():
                truth = _norm(name, data.truths[rec.id].get(name), tz, received_at)
                pred = _norm(name, fields.get(name), tz, received_at)
                if pred is not None:
                    src = sources.get(name, "?")
                    tally.by_source[src] = tally.by_source.get(src, 0) + 1
                if truth is None:
                    continue
                tally.truth += 1
                if pred is not None:
                    tally.given += 1
                if pred == truth:
                    tally.right += 1
                elif pred is not None:
                    tally.wrong += 1
                if pred != truth and len(tally.examples_wrong) < 3:
                    tally.examples_wrong.append({"truth": data.truths[rec.id].get(name), "got": fields.get(name),
                                                 "text": rec.text[:160]})
        if progress:
            progress(min(start + BATCH, total), total)
    elapsed = time.perf_counter() - started
    return {
        "task": "extract",
        "data": str(data.path),
        "rows": total,
        "skipped_empty_text": data.skipped_empty_text,
        "header_parser": parse_headers,
        "fields": {
            name: {
                "rows_with_truth": t.truth,
                "accuracy": round(t.right / t.truth, 4) if t.truth else None,
                "coverage": round(t.given / t.truth, 4) if t.truth else None,
                "right": t.right,
                "wrong": t.wrong,
                "by_source": t.by_source,
                "examples_not_right": t.examples_wrong,
            }
            for name, t in tallies.items()
        },
        "values_returned": values,
        "ungrounded": ungrounded,
        "ungrounded_rate": round(ungrounded / values, 4) if values else 0.0,
        "ungrounded_examples": ungrounded_examples,
        "dropped_by_grounding": dropped,  # model values edged dropped (not in the text, or not the field's shape)
        "model_calls": model_calls,
        "model_seconds": round(model_seconds, 2),
        "model_seconds_per_call": round(model_seconds / model_calls, 3) if model_calls else None,
        "records_asked": asked,
        "model_seconds_per_record_asked": round(model_seconds / asked, 3) if asked else None,
        "seconds": round(elapsed, 2),
        "model": getattr(backend, "model_name", None),
    }


def format_extract_report(r: dict[str, Any]) -> str:
    lines = [f"{r['data']}: {r['rows']} rows; {r['model_calls']} model calls ({r['model_seconds']} s of model time),"
             f" {r['seconds']} s in all; header parser: {'yes' if r['header_parser'] else 'none'}"]
    lines.append(f"{'field':<14}{'truth rows':>11}{'accuracy':>10}{'coverage':>10}{'wrong':>7}  sources")
    for name, f in r["fields"].items():
        acc = "-" if f["accuracy"] is None else f"{f['accuracy']:.3f}"
        cov = "-" if f["coverage"] is None else f"{f['coverage']:.3f}"
        src = ", ".join(f"{k} {v}" for k, v in sorted(f["by_source"].items()))
        lines.append(f"{name:<14}{f['rows_with_truth']:>11}{acc:>10}{cov:>10}{f['wrong']:>7}  {src}")
    lines.append(f"ungrounded     {r['ungrounded']} of {r['values_returned']} values returned"
                 f" (rate {r['ungrounded_rate']:.4f}); the model's values dropped by the check: "
                 + (", ".join(f"{k} {v}" for k, v in sorted(r["dropped_by_grounding"].items())) or "none"))
    return "\n".join(lines)
