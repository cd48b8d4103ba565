"""``edged eval``: score classifications against a labelled CSV, along each path edged can take.

The paths (see ``evaluate``): the triage classifier alone, the language model alone (with the
labeled examples retrieval puts in its prompt), and routed (the triage label when it is confident,
else the model), plus the share of rows that never reached the model. Users pick a model and a
threshold for their box with this, so it measures them, not edged's caches: every row the model
is asked about is sent on its own (no template or exact-text cache), and the report says how many
distinct texts there were (a file with many repeats would be far cheaper for the daemon).

Metrics are single-label multiclass, computed here in plain Python (the same definitions as
scikit-learn's defaults):

- accuracy: correct / rows scored. A row whose model call failed counts as wrong.
- micro-F1: from the summed true positives, false positives and false negatives of all classes.
  When every call succeeds it equals accuracy; a failed call is a false negative without a false
  positive, so then they differ.
- macro-F1: the unweighted mean of the per-class F1 over the classes that occur in the data or in
  the predictions (a taxonomy label that is neither true nor predicted anywhere is left out);
  precision or recall with a zero denominator is 0.
- confusion: rows are true labels, columns predicted labels (plus "(error)" when calls failed).
- latency: wall time of each backend call; p50/p95 by linear interpolation between ranks.
- tokens/s: completion tokens of the successful calls / the wall time of those calls (prompt
  evaluation included: it is what a user waits for).

The taxonomy the model chooses from is ``[analysis] labels``. ``labels_from_data`` replaces it with
the data's own distinct labels (sorted). ``label_map`` keeps the configured taxonomy and maps each
predicted label to a data label (e.g. fault/safety/security -> alert, normal/warning -> normal).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edged.analysis.evidence import Evidence
from edged.analysis.routing import SLM, Route, Subject, route
from edged.analysis.tasks import CLASSIFY, InvalidAnswer, among, classify_spec, parse_answer, request_for
from edged.backends.base import Backend, BackendError
from edged.config.settings import AnalysisSettings
from edged.triage.measure import THRESHOLDS
from edged.triage.router import Router

ERROR_LABEL = "(error)"  # the confusion-matrix column of rows whose model call failed
MAX_ERRORS_KEPT = 5  # error messages kept in the report (the count is always complete)


class EvalError(ValueError):
    """The data or the options cannot be evaluated; the message says what to fix."""


@dataclass
class Dataset:
    path: Path
    texts: list[str]
    labels: list[str]
    rows_read: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    levels: list[str | None] | None = None  # each row's level (--level-col), as a parsed header gives it
    messages: list[str | None] | None = None  # each row's message (--message-col), as a parsed header splits it off

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def load_csv(path: Path | str, text_col: str, label_col: str, limit: int | None = None,
             level_col: str | None = None, message_col: str | None = None) -> Dataset:
    """The first ``limit`` data rows of a CSV file (all without a limit); rows with an empty text or
    an empty label are skipped and counted. ``level_col`` holds each line's level and ``message_col``
    its message (the text after its header), as a parsed header would give them to the analyzer
    (empty = none)."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise EvalError(f"--limit must be at least 1, not {limit}")
    texts: list[str] = []
    labels: list[str] = []
    levels: list[str | None] = []
    messages: list[str | None] = []
    skipped = {"empty_text": 0, "empty_label": 0}
    rows_read = 0
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames
            if not columns:
                raise EvalError(f"{path} is empty: expected a header row with columns {text_col!r} and {label_col!r}")
            missing = [c for c in (text_col, label_col, level_col, message_col) if c is not None and c not in columns]
            if missing:
                raise EvalError(
                    f"{path} has no column {' or '.join(repr(c) for c in missing)}; its columns are: "
                    + ", ".join(columns)
                )
            for row in reader:
                if limit is not None and rows_read >= limit:
                    break
                rows_read += 1
                text = (row.get(text_col) or "").strip()
                label = (row.get(label_col) or "").strip()
                if not text:
                    skipped["empty_text"] += 1
                elif not label:
                    skipped["empty_label"] += 1
                else:
                    texts.append(text)
                    labels.append(label)
                    levels.append((row.get(level_col) or "").strip() or None if level_col else None)
                    messages.append((row.get(message_col) or "").strip() or None if message_col else None)
    except FileNotFoundError:
        raise EvalError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EvalError(f"{path} is a directory, not a CSV file") from None
    except UnicodeDecodeError as exc:
        raise EvalError(f"{path} is not UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise EvalError(f"{path}: malformed CSV: {exc}") from None
    except OSError as exc:
        raise EvalError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not texts:
        raise EvalError(f"{path} has no row with both a {text_col!r} text and a {label_col!r} label")
    return Dataset(path, texts, labels, rows_read, {k: v for k, v in skipped.items() if v},
                   levels if level_col else None, messages if message_col else None)


def resolve_labels(
    data: Dataset, configured: list[str], *, labels_from_data: bool = False, label_map: dict[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """(labels the model chooses from, labels the data is scored in). Raises EvalError when the data's
    labels cannot be scored against the taxonomy."""
    in_data = sorted(set(data.labels))
    if labels_from_data and label_map:
        raise EvalError("use either --labels-from-data or --map, not both")
    if labels_from_data:
        if len(in_data) < 2:
            raise EvalError(f"{data.path} has only one distinct label ({in_data[0]!r}): a taxonomy needs two or more")
        return in_data, in_data
    if label_map:
        unknown = sorted(set(label_map) - set(configured))
        if unknown:
            raise EvalError(
                f"--map names labels that are not in the taxonomy ([analysis] labels = {', '.join(configured)}): "
                + ", ".join(unknown)
            )
        unmapped = [label for label in configured if label not in label_map]
        if unmapped:
            raise EvalError("--map must map every label of the taxonomy; unmapped: " + ", ".join(unmapped))
        targets = sorted(set(label_map.values()))
        outside = [label for label in in_data if label not in targets]
        if outside:
            raise EvalError(
                f"labels in {data.path} that no --map target produces ({', '.join(targets)}): " + ", ".join(outside)
            )
        return list(configured), targets
    outside = [label for label in in_data if label not in configured]
    if outside:
        raise EvalError(
            f"labels in {data.path} that are not in the taxonomy ([analysis] labels = {', '.join(configured)}): "
            + ", ".join(outside)
            + ". Use --labels-from-data to score with the data's own labels, or --map MODEL=DATA to map them"
        )
    return list(configured), list(configured)


def parse_label_map(items: list[str] | None) -> dict[str, str] | None:
    """``["fault=alert", "normal=normal"]`` -> {"fault": "alert", "normal": "normal"}."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        for pair in item.split(","):
            model_label, sep, data_label = pair.partition("=")
            if not sep or not model_label.strip() or not data_label.strip():
                raise EvalError(f"--map takes MODEL_LABEL=DATA_LABEL pairs, not {pair!r}")
            out[model_label.strip()] = data_label.strip()
    return out


# -- metrics ------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def classification_metrics(gold: list[str], pred: list[str | None], labels: list[str]) -> dict[str, Any]:
    """Accuracy, micro/macro F1, a per-class report and a confusion matrix. ``pred`` None = failed call."""
    if len(gold) != len(pred):
        raise ValueError("gold and pred differ in length")
    order = list(labels) + sorted({*gold, *(p for p in pred if p is not None)} - set(labels))
    per_class: dict[str, dict[str, float | int]] = {}
    f1s: dict[str, float] = {}  # unrounded, for macro-F1
    tp_sum = fp_sum = fn_sum = 0
    for label in order:
        tp = sum(1 for g, p in zip(gold, pred) if g == label and p == label)
        fp = sum(1 for g, p in zip(gold, pred) if g != label and p == label)
        fn = sum(1 for g, p in zip(gold, pred) if g == label and p != label)
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        f1s[label] = _f1(precision, recall)
        per_class[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1s[label], 4),
            "support": tp + fn,
            "predicted": tp + fp,
        }
        tp_sum, fp_sum, fn_sum = tp_sum + tp, fp_sum + fp, fn_sum + fn
    present = [c for c in order if per_class[c]["support"] or per_class[c]["predicted"]]
    micro_p, micro_r = _ratio(tp_sum, tp_sum + fp_sum), _ratio(tp_sum, tp_sum + fn_sum)
    columns = order + ([ERROR_LABEL] if any(p is None for p in pred) else [])
    matrix = [[0] * len(columns) for _ in order]
    for g, p in zip(gold, pred):
        matrix[order.index(g)][columns.index(ERROR_LABEL if p is None else p)] += 1
    return {
        "accuracy": round(_ratio(tp_sum, len(gold)), 4),
        "micro_f1": round(_f1(micro_p, micro_r), 4),
        "macro_f1": round(_ratio(sum(f1s[c] for c in present), len(present)), 4),
        "per_class": per_class,
        "confusion": {"rows": "true label", "columns": "predicted label",
                      "true_labels": order, "predicted_labels": columns, "matrix": matrix},
    }


# -- the run ------------------------------------------------------------------------------------
PATHS = ("triage", "slm", "routed")


@dataclass
class _SlmRun:
    """The language model's answers, one call per row (None where the row was not asked)."""

    predictions: list[str | None]
    seconds: list[float | None]
    answers: list[str | None] = field(default_factory=list)  # the model's own labels (before --map)
    raw: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # of every call, in order
    ok_seconds: float = 0.0
    completion_tokens: int = 0
    errors: list[str] = field(default_factory=list)
    calls: int = 0

    @classmethod
    def empty(cls, n: int) -> "_SlmRun":
        return cls([None] * n, [None] * n, [None] * n)

    def add(self, other: "_SlmRun") -> None:
        """Count ``other``'s calls in this run's totals (not its predictions)."""
        for label, count in other.raw.items():
            self.raw[label] = self.raw.get(label, 0) + count
        self.latencies += other.latencies
        self.ok_seconds += other.ok_seconds
        self.completion_tokens += other.completion_tokens
        self.errors += other.errors
        self.calls += other.calls


def _mapped(label: str | None, label_map: dict[str, str] | None) -> str | None:
    """A model label as the data label it is scored as (itself without a map)."""
    return label_map.get(label, label) if label_map and label is not None else label


def _ask_model(backend: Backend, spec: Any, data: Dataset, rows: list[int], kind: str,
               label_map: dict[str, str] | None, examples: list[list[tuple[str, str]]],
               candidates: list[list[str]], progress: Callable[[int, int], None] | None) -> _SlmRun:
    run = _SlmRun.empty(len(data.texts))
    for done, i in enumerate(rows, 1):
        request = request_for(spec, data.texts[i], kind=kind, examples=examples[i])
        if candidates[i]:
            request = dataclasses.replace(request, schema=among(spec, candidates[i]))
        t0 = time.perf_counter()
        run.calls += 1
        try:
            completion = backend.complete(request)
            label = parse_answer(spec, completion, request.schema)["label"]
        except (BackendError, InvalidAnswer) as exc:
            run.errors.append(f"row {i + 1}: {exc}")
        else:
            run.ok_seconds += time.perf_counter() - t0
            run.completion_tokens += completion.completion_tokens
            run.raw[label] = run.raw.get(label, 0) + 1
            run.predictions[i], run.answers[i] = _mapped(label, label_map), label
        run.seconds[i] = time.perf_counter() - t0
        run.latencies.append(run.seconds[i])
        if progress is not None:
            progress(done, len(rows))
    return run


def _path_report(gold: list[str], pred: list[str | None], labels: list[str], seconds: float) -> dict[str, Any]:
    metrics = classification_metrics(gold, pred, labels)
    return {
        **{k: metrics[k] for k in ("accuracy", "micro_f1", "macro_f1")},
        "n": len(gold),
        "seconds": round(seconds, 3),
        "records_per_s": round(len(gold) / seconds, 2) if seconds > 0 else None,
        "per_class": metrics["per_class"],
        "confusion": metrics["confusion"],
    }


def _share(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


def evaluate(
    backend: Backend | None,
    settings: AnalysisSettings,
    data: Dataset,
    *,
    kind: str = "log",
    labels_from_data: bool = False,
    label_map: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    router: Router | None = None,
    paths: tuple[str, ...] = PATHS,
    severities: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Classify every row of ``data`` along each path and score each path.

    - triage: the triage classifier's most probable label for every row (needs a trained model).
    - slm: the language model alone for every row, one call per row, choosing from the whole
      taxonomy, with the most similar labeled examples from the store in the prompt when ``router``
      has an example index.
    - routed: what edged does, through the analyzer's own routing (edged.analysis.routing): a
      confident classifier label, else the row's evidence (a dump line is normal; else its level and
      lexicon words), else the model or the classifier's guess as the active version's routing says. A row routed to the model with the
      whole taxonomy and the slm path's examples is the slm path's own call (greedy decoding gives
      the same answer to the same prompt), so it is made once. Routed time is the triage time of
      every row plus the time of the model calls it made.

    Where the classifier was unsure, the model is asked also when routing kept the guess, so that
    ``triage.sent_to_model`` shows whether it would have done better (those calls are not routed time).
    The top-level metrics are those of the routed path (with no triage model, the model's).
    """
    model_labels, eval_labels = resolve_labels(
        data, list(settings.labels), labels_from_data=labels_from_data, label_map=label_map
    )
    unknown = [p for p in paths if p not in PATHS]
    if unknown or not paths:
        raise EvalError(f"paths must be some of {', '.join(PATHS)}; not: {', '.join(unknown) or '(none)'}")
    triage_model = router.model if router is not None else None
    if paths == ("triage",) and triage_model is None:
        raise EvalError("no trained triage model in the store: run edged learn first")
    n = len(data.texts)
    texts = data.texts
    started = time.perf_counter()

    # The triage classifier on every row, in batches as the analyzer does.
    triage_pred: list[str | None] = [None] * n
    triage_prob = [0.0] * n
    triage_seconds = 0.0
    if triage_model is not None:
        t0 = time.perf_counter()
        for lo in range(0, n, 64):
            for j, p in enumerate(triage_model.predict(texts[lo : lo + 64])):
                triage_pred[lo + j], triage_prob[lo + j] = p.label, p.probability
        triage_seconds = time.perf_counter() - t0
    # The analyzer's routing of every row, in its batches.
    evidence = Evidence(settings, model_labels)
    levels = data.levels or [None] * n
    messages = data.messages or [None] * n
    routes: list[Route] = []
    for lo in range(0, n, 64):
        subjects = [Subject(t, lv, m) for t, lv, m in zip(texts[lo : lo + 64], levels[lo : lo + 64],
                                                           messages[lo : lo + 64])]
        routes += route(subjects, evidence, router if triage_model is not None else None, severities)
    if router is not None and triage_model is None and router.index is not None:
        for r, t in zip(routes, texts):  # no classifier, but retrieval: the model sees examples, as in the daemon
            if r.ask_model:
                r.examples = router.index.nearest(t, router.settings.examples)
    confident = [r.by == "triage" and not r.review for r in routes]
    unsure = [i for i in range(n) if triage_model is not None and not confident[i]]
    asked = sorted({*unsure, *(i for i in range(n) if routes[i].ask_model)}) if "routed" in paths else []
    if (("slm" in paths) or asked) and backend is None:
        raise EvalError("the slm and routed paths need the model")

    spec = classify_spec(settings.model_copy(update={"labels": model_labels}))
    index = router.index if router is not None else None
    k = router.settings.examples if router is not None else 0
    calls = _SlmRun.empty(n)  # every model call made, for the totals
    slm = _SlmRun.empty(n)
    slm_examples = [[(e.text, e.label) for e in index.nearest(t, k)] if index is not None else [] for t in texts]
    if "slm" in paths:
        slm = _ask_model(backend, spec, data, list(range(n)), kind, label_map, slm_examples, [[] for _ in texts],
                         progress)
        calls.add(slm)
    # Each row asked on the routed path gets the route's question: its candidates and examples (for a
    # guess that stood, what the model would have been asked). The slm path's identical prompts are reused.
    questions = [r.candidates for r in routes]
    examples = [[(e.text, e.label) for e in r.examples] for r in routes]
    reuse = [i for i in asked if "slm" in paths and not questions[i] and examples[i] == slm_examples[i]]
    fresh = [i for i in asked if i not in set(reuse)]
    routed_model = _SlmRun.empty(n)
    for i in reuse:
        routed_model.predictions[i], routed_model.seconds[i] = slm.predictions[i], slm.seconds[i]
        routed_model.answers[i] = slm.answers[i]
    if fresh:
        run = _ask_model(backend, spec, data, fresh, kind, label_map, examples, questions, progress)
        calls.add(run)
        for i in fresh:
            routed_model.predictions[i], routed_model.seconds[i] = run.predictions[i], run.seconds[i]
            routed_model.answers[i] = run.answers[i]

    gold = data.labels
    reports: dict[str, Any] = {}
    if triage_model is not None and "triage" in paths:
        reports["triage"] = _path_report(gold, [_mapped(p, label_map) for p in triage_pred], eval_labels, triage_seconds)
    if "slm" in paths:
        reports["slm"] = _path_report(gold, slm.predictions, eval_labels, sum(x for x in slm.seconds if x is not None))
    routed_pred = [routed_model.predictions[i] if r.ask_model else _mapped(r.label, label_map)
                   for i, r in enumerate(routes)]
    model_rows = [i for i in range(n) if routes[i].ask_model]
    routed_seconds = triage_seconds + sum(routed_model.seconds[i] or 0.0 for i in model_rows)
    if "routed" in paths:
        reports["routed"] = _path_report(gold, routed_pred, eval_labels, routed_seconds)
    headline = reports.get("routed") or reports.get("slm") or reports.get("triage")
    wall = time.perf_counter() - started
    lat = calls.latencies
    p50, p95 = percentile(lat, 50), percentile(lat, 95)
    by: dict[str, int] = {}
    for r in routes:
        name = (r.by + "_guess" if r.review else r.by) if r.by else SLM
        by[name] = by.get(name, 0) + 1
    skipped = n - len(model_rows)
    # What each level was labelled on the routed path (in the taxonomy, before --map), with --level-col.
    by_level: dict[str, dict[str, int]] = {}
    if data.levels is not None and "routed" in paths:
        for i, r in enumerate(routes):
            got = (routed_model.answers[i] if r.ask_model else r.label) or ERROR_LABEL
            counts = by_level.setdefault(levels[i] or "(none)", {})
            counts[got] = counts.get(got, 0) + 1
    triage_report = None
    if triage_model is not None:
        right = [_mapped(triage_pred[i], label_map) == gold[i] for i in range(n)]
        decided = sum(confident)
        triage_report = {
            "version": triage_model.version,
            "runtime": triage_model.runtime,
            "classes": triage_model.classes,
            "confidence_threshold": router.threshold,
            "candidates": router.settings.candidates,
            "route_unsure": router.settings.route_unsure,
            "unsure_to_model": router.route_to_model,
            "routing": router.routing,
            "decided": decided,
            "accuracy_when_decided": _share(sum(right[i] for i in range(n) if confident[i]), decided),
            # Where the classifier was unsure: was the model better than the classifier's own guess?
            "sent_to_model": {
                "n": len(unsure),
                "model_accuracy": _share(sum(routed_model.predictions[i] == gold[i] for i in unsure), len(unsure))
                if "routed" in paths else None,
                "triage_accuracy": _share(sum(right[i] for i in unsure), len(unsure)),
            },
            # What other thresholds would do (the classifier's side only; no model calls needed).
            "by_threshold": [
                {"threshold": t, "skipped_model_share": _share(sum(p >= t for p in triage_prob), n),
                 "accuracy_when_decided": _share(sum(r for r, p in zip(right, triage_prob) if p >= t),
                                                 sum(p >= t for p in triage_prob))}
                for t in THRESHOLDS
            ],
            "latency_ms_per_record": round(triage_seconds / n * 1000, 4) if n else None,
        }
    overlap = sum(1 for t in texts if index.contains(t)) if index is not None else 0
    return {
        "data": str(data.path),
        "task": CLASSIFY,
        "kind": kind,
        "model": backend.model_name if backend is not None else None,
        "backend": backend.name if backend is not None else None,
        "n": n,
        "rows_read": data.rows_read,
        "skipped": data.skipped_total,
        "skipped_by_reason": data.skipped,
        "distinct_texts": len(set(texts)),
        "label_source": "data" if labels_from_data else "map" if label_map else "config",
        "taxonomy": model_labels,
        "labels": eval_labels,
        "label_map": label_map,
        **{key: headline[key] for key in ("accuracy", "micro_f1", "macro_f1", "per_class", "confusion")},
        "paths": reports,
        # Rows the routed path classified without a model call, and who classified each row there.
        "skipped_model_share": round(skipped / n, 4) if n else 0.0,
        "routed_by": by,
        "routed_by_level": by_level or None,
        "triage": triage_report,
        "examples": {
            "per_prompt": k if index is not None else 0,
            "index_size": len(index) if index is not None else 0,
            # Rows whose text is also a stored label: the model may see its own answer among the examples.
            "eval_texts_in_store": overlap,
        },
        "predicted_model_labels": calls.raw,
        "model_calls": calls.calls,
        "errors": len(calls.errors),
        "error_examples": calls.errors[:MAX_ERRORS_KEPT],
        "latency_ms": {
            "p50": round(p50 * 1000, 1) if p50 is not None else None,
            "p95": round(p95 * 1000, 1) if p95 is not None else None,
            "mean": round(sum(lat) / len(lat) * 1000, 1) if lat else None,
        },
        "completion_tokens": calls.completion_tokens,
        "tokens_per_s": round(calls.completion_tokens / calls.ok_seconds, 1) if calls.ok_seconds > 0 else None,
        "seconds": round(wall, 3),
        "records_per_s": headline["records_per_s"],
    }


# -- the human report -----------------------------------------------------------------------------
def format_report(r: dict[str, Any]) -> str:
    source = {"data": "the data's own labels", "map": "the configured taxonomy, mapped", "config": "config"}
    lines = [
        f"data        {r['data']}: {r['n']} rows scored, {r['skipped']} skipped, {r['distinct_texts']} distinct texts",
        f"model       {r['model'] or '(not loaded)'} via {r['backend'] or '-'}; task {r['task']}, kind {r['kind']}",
        f"taxonomy    {', '.join(r['taxonomy'])} (from {source[r['label_source']]})",
    ]
    if r["label_map"]:
        lines.append("mapping     " + ", ".join(f"{k} -> {v}" for k, v in r["label_map"].items()))
    lat = r["latency_ms"]
    tps = "n/a" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:.1f}"
    t = r["triage"]
    if t is not None:
        when = "n/a" if t["accuracy_when_decided"] is None else f"{t['accuracy_when_decided']:.3f}"
        lines.append(
            f"triage      version {t['version']} ({t['runtime']}), threshold {t['confidence_threshold']}: confident"
            f" on {t['decided']} of {r['n']} rows, right on {when} of them; {t['latency_ms_per_record']} ms per record"
        )
        routing = t["routing"] or {}
        lines.append(
            f"unsure rows go to {'the model' if t['unsure_to_model'] else 'the classifier guess, for review'}"
            f" ([triage] route_unsure = {t['route_unsure']}"
            + (f"; version {t['version']}: {routing['reason']})" if routing.get("reason") else ")")
        )
        sent = t["sent_to_model"]
        if sent["n"] and sent["model_accuracy"] is not None:
            lines.append(
                f"unsure      on the {sent['n']} rows the classifier was unsure of (the model choosing among its"
                f" {t['candidates'] or 'all'} likeliest labels) the model was right on {sent['model_accuracy']:.3f},"
                f" the classifier's own guess on {sent['triage_accuracy']:.3f}"
            )
        lines.append("thresholds  " + "; ".join(
            f"{x['threshold']}: {x['skipped_model_share']:.0%} decided, right on "
            + ("n/a" if x["accuracy_when_decided"] is None else f"{x['accuracy_when_decided']:.3f}")
            for x in t["by_threshold"]))
    else:
        lines.append("triage      no trained triage model in the store (edged learn)")
    lines.append(f"routed      {r['skipped_model_share']:.1%} never reached the model; classified by "
                 + ", ".join(f"{k} {v}" for k, v in sorted(r["routed_by"].items())))
    ex = r["examples"]
    lines.append(
        f"examples    {ex['per_prompt']} per prompt from {ex['index_size']} stored labels"
        + (f"; {ex['eval_texts_in_store']} evaluated texts are stored labels too" if ex["eval_texts_in_store"] else "")
    )
    lines += ["", f"{'path':<8}  micro-F1  macro-F1  records/s"]
    for name, p in r["paths"].items():
        rps = "n/a" if p["records_per_s"] is None else f"{p['records_per_s']:.2f}"
        lines.append(f"{name:<8}  {p['micro_f1']:8.3f}  {p['macro_f1']:8.3f}  {rps:>9}")
    lines += [
        "",
        f"accuracy {r['accuracy']:.3f}   micro-F1 {r['micro_f1']:.3f}   macro-F1 {r['macro_f1']:.3f}"
        f"   (path {next(iter(p for p in ('routed', 'slm', 'triage') if p in r['paths']), '-')})",
        f"model calls {r['model_calls']} ({r['errors']} failed); latency p50 {lat['p50']} ms, p95 {lat['p95']} ms;"
        f" {tps} tokens/s; {r['seconds']:.1f} s in all",
        "",
    ]
    width = max([len("label")] + [len(k) for k in r["per_class"]])
    lines.append(f"{'label':<{width}}  precision  recall     f1  support")
    for label, row in r["per_class"].items():
        lines.append(
            f"{label:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}"
        )
    conf = r["confusion"]
    cols = conf["predicted_labels"]
    cw = [max(len(c), len(str(max((row[j] for row in conf["matrix"]), default=0)))) for j, c in enumerate(cols)]
    lines += ["", "confusion (rows: true label, columns: predicted)"]
    lines.append(" " * width + "  " + "  ".join(f"{c:>{w}}" for c, w in zip(cols, cw)))
    for label, row in zip(conf["true_labels"], conf["matrix"]):
        lines.append(f"{label:<{width}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(row, cw)))
    if r["error_examples"]:
        lines += ["", "failed calls (first few):"] + [f"  {e}" for e in r["error_examples"]]
    return "\n".join(lines)
