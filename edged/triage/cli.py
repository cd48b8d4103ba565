"""``edged learn`` and the triage parts of ``edged eval``."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Callable

from edged.analysis.evaluate import EvalError, load_csv
from edged.config.load import LoadedConfig
from edged.config.settings import Settings
from edged.store.database import connect, open_database, write_transaction
from edged.triage import labels as label_store
from edged.triage.learn import LearnReport, NotEnoughLabels, learn
from edged.triage.measure import Judge, lazy
from edged.triage.router import Router
from edged.triage.runtime import RuntimeMissing


def stored_router(settings: Settings, taxonomy: list[str], *, triage: bool = True, examples: bool = True) -> Router | None:
    """A router over the store's active triage model and labels, for ``edged eval`` (None: no store)."""
    path = settings.store.path
    if not path.exists():
        return None
    router = Router(settings.triage.model_copy(update={} if examples else {"examples": 0}), taxonomy)
    db = connect(path, readonly=True)
    try:
        router.refresh(db)
    finally:
        db.conn.close()
    if not triage:
        router.model = None  # no triage decisions: every row goes to the model, with the whole taxonomy
    return router


def import_file(settings: Settings, args: argparse.Namespace) -> dict:
    """Import the labeled CSV of ``--data`` into the store, less the held-out rows (written to a file)."""
    if not args.text_col or not args.label_col:
        raise EvalError("--data needs --text-col and --label-col")
    if not 0 <= args.holdout < 1:
        raise EvalError(f"--holdout must be a fraction from 0 to below 1, not {args.holdout}")
    data = load_csv(args.data, args.text_col, args.label_col)
    taxonomy = list(settings.analysis.labels)
    outside = sorted(set(data.labels) - set(taxonomy))
    if outside:
        raise EvalError(
            f"labels in {data.path} that are not in the taxonomy ([analysis] labels = {', '.join(taxonomy)}): "
            + ", ".join(outside[:20]) + (f" and {len(outside) - 20} more" if len(outside) > 20 else "")
            + ". Add them to [analysis] labels in the config file first"
        )
    percent = round(args.holdout * 100)
    rows = list(zip(data.texts, data.labels))
    held = [r for r in rows if percent and label_store.is_heldout(r[0], percent, salt="evaluation")]
    kept = [r for r in rows if not (percent and label_store.is_heldout(r[0], percent, salt="evaluation"))]
    held_path = None
    if held:
        held_path = args.holdout_out or args.data.with_name(args.data.stem + ".holdout.csv")
        with held_path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow([args.text_col, args.label_col])
            writer.writerows(held)
    db = open_database(settings.store.path)
    try:
        with write_transaction(db):
            new, changed = label_store.add_imported(db, kept)
    finally:
        db.conn.close()
    labels_of: dict[str, set[str]] = {}
    for text, label in kept:
        labels_of.setdefault(label_store.text_key(text), set()).add(label)
    return {"file": str(data.path), "rows": len(rows), "skipped": data.skipped_total, "imported": len(kept),
            "distinct_texts": len(labels_of), "new": new, "changed": changed,
            "texts_with_conflicting_labels": sum(1 for ls in labels_of.values() if len(ls) > 1), "held_out": len(held),
            "held_out_file": str(held_path) if held_path else None}


def _write(db):
    def run(fn):
        with write_transaction(db):
            return fn(db)
    return run


def format_learn(imported: dict | None, report: LearnReport | None, problem: str | None) -> str:
    lines = []
    if imported:
        lines.append(
            f"imported    {imported['imported']} of {imported['rows']} rows from {imported['file']}:"
            f" {imported['distinct_texts']} distinct texts, {imported['new']} new to the store, {imported['changed']}"
            f" relabeled; {imported['skipped']} rows skipped as empty"
        )
        if imported["texts_with_conflicting_labels"]:
            lines.append(f"conflicts   {imported['texts_with_conflicting_labels']} texts have more than one label in"
                         " the file; the last one was kept")
        if imported["held_out"]:
            lines.append(f"held out    {imported['held_out']} rows, written to {imported['held_out_file']}")
    if problem:
        lines.append(f"not trained {problem}")
    if report:
        lines += [
            f"version     {report.version} ({'active' if report.active else 'not active'}): {report.decision}",
            f"labels      {report.labels} ({', '.join(f'{k} {v}' for k, v in sorted(report.label_sources.items()))});"
            f" trained on {report.train_size}, scored on {report.heldout_size} held out",
            f"classes     {len(report.classes)}: {', '.join(report.classes[:12])}"
            + (" ..." if len(report.classes) > 12 else ""),
            f"model       {report.tflite_bytes / 1024:.0f} KiB .tflite, run with {report.runtime};"
            f" {report.seconds:.1f} s",
        ]
        if report.routing is not None:
            r = report.routing
            lines.append(f"routing     unsure records go to {'the model' if r['route_to_model'] else 'the guess, for review'}"
                         f" below {r['threshold']}: {r['reason']}")
    return "\n".join(lines)


def run_learn(loaded: LoadedConfig, args: argparse.Namespace, judge: Callable[[], Judge] | None = None) -> int:
    """``judge`` loads the language model that measures the new version's routing (None: not measured)."""
    settings = loaded.settings
    imported = None
    try:
        if args.data is not None:
            imported = import_file(settings, args)
        elif args.text_col or args.label_col or args.holdout:
            raise EvalError("--text-col, --label-col and --holdout go with --data")
    except EvalError as exc:
        print(f"edged learn: {exc}", file=sys.stderr)
        return 2
    report, problem = None, None
    if not args.import_only:
        db = open_database(settings.store.path)
        try:
            report = learn(db, _write(db), settings.triage, list(settings.analysis.labels),
                           judge=lazy(judge) if judge is not None else None)
        except NotEnoughLabels as exc:
            problem = str(exc)
        except RuntimeMissing as exc:
            print(f"edged learn: {exc}", file=sys.stderr)
            return 2
        finally:
            db.conn.close()
    if args.json:
        print(json.dumps({"import": imported, "training": report.as_dict() if report else None, "problem": problem},
                         indent=2, ensure_ascii=False))
    else:
        print(format_learn(imported, report, problem))
    return 1 if problem else 0
