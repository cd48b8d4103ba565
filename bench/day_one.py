"""Day-one classification: a fresh box (no labels, no triage classifier) on real BGL log lines.

Data: Loghub's BGL 2k sample (../shared/data/loghub/BGL, read at run time, never copied here). The
first field of each raw line is the alert tag (``-`` = not an alert); it is cut off, and the rest
of the line is what the machine logged. Each line's level and message (BGL's own level field and
the text after its header: the structured CSV's ``Level`` and ``Content`` columns) are given to
``edged eval --level-col --message-col``, as a parsed log header gives them to the analyzer. edged's
routing is the daemon's: a register or flag dump line is normal; the level table and the lexicon
decide where they agree; the default model decides the rest.

Scored as "labelled anything but normal" (``--map``: warning, fault, safety and security -> alert):
alert recall and precision; and how many INFO lines were labelled safety or security. Each run is
scored twice: as configured (``with_levels``) and with ``[analysis] dump_lines = false``
(``without_dump_lines``, what edged did before it read dump lines). ``--start`` and ``--lines``
choose a stretch of the 2,000 lines (lines 1-1000 are the half the dump-line rule was developed on;
1001-2000 were held out).

``dump_lines_by_system``: on every Loghub system's structured CSV (its ``Content`` column, the
message), how many lines the dump-line rule marks, by level, and how many of those are alerts where
the system has a ``Label`` column (no model).

``--before`` also runs the same lines without their levels (what edged did before it read levels:
the model decides every line) on a sample of every alert and every 12th routine line (one model call
per line: slow on a small CPU).

Usage: python -m bench.day_one [--before] [--start N] [--lines N] [--threads N]
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
from pathlib import Path
from typing import Any

from bench.common import LOGHUB_DIR, REPO, Unavailable, write_result
from edged.analysis.evidence import Evidence
from edged.config.settings import AnalysisSettings

BGL = LOGHUB_DIR / "BGL"
ALERT_MAP = "normal=normal,warning=alert,fault=alert,safety=alert,security=alert"


def log(msg: str) -> None:
    print(f"[day_one] {msg}", file=sys.stderr, flush=True)


FIELDS = ["text", "level", "message", "label"]


def load_rows() -> list[dict[str, str]]:
    """(text, level, message, label) of every BGL 2k line: the raw line less its alert tag."""
    raw = (BGL / "BGL_2k.log").read_text(encoding="utf-8", errors="replace").splitlines()
    with (BGL / "BGL_2k.log_structured.csv").open(newline="", encoding="utf-8") as f:
        structured = [(r["Level"], r["Content"]) for r in csv.DictReader(f)]
    if len(structured) != len(raw):
        raise SystemExit(f"{BGL}: {len(raw)} raw lines but {len(structured)} structured rows")
    rows = []
    for line, (level, message) in zip(raw, structured):
        tag, _, text = line.partition(" ")
        rows.append({"text": text, "level": level, "message": message, "label": "normal" if tag == "-" else "alert"})
    return rows


def dump_lines_by_system() -> dict[str, Any]:
    """Per Loghub system: lines, lines the dump-line rule marks (by level), alerts among them."""
    evidence = Evidence(AnalysisSettings())
    out: dict[str, Any] = {}
    for path in sorted(LOGHUB_DIR.glob("*/*_2k.log_structured.csv")):
        with path.open(newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.DictReader(f))
        marked = [r for r in rows if evidence.of(r.get("Content") or "").dump]
        by_level: dict[str, int] = {}
        for r in marked:
            by_level[r.get("Level") or "(none)"] = by_level.get(r.get("Level") or "(none)", 0) + 1
        entry: dict[str, Any] = {"lines": len(rows), "marked": len(marked), "marked_by_level": by_level}
        if rows and "Label" in rows[0]:
            entry["alerts"] = sum(r["Label"] != "-" for r in rows)
            entry["alerts_marked"] = sum(r["Label"] != "-" for r in marked)
        out[path.parent.name] = entry
    return out


def eval_json(config: Path, data: Path, cwd: Path, *extra: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    cmd = [sys.executable, "-m", "edged", "eval", "--data", str(data), "--text-col", "text", "--label-col", "label",
           "--map", ALERT_MAP, "--paths", "routed", "--json", "--config", str(config), *extra]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=7200)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def scored(r: dict[str, Any]) -> dict[str, Any]:
    alert = r["per_class"]["alert"]
    by_level = r.get("routed_by_level") or {}
    info = by_level.get("INFO", {})
    return {
        "rows": r["n"], "alert_recall": alert["recall"], "alert_precision": alert["precision"],
        "alerts": alert["support"], "labelled_not_normal": alert["predicted"],
        "info_lines": sum(info.values()) or None,
        "info_labelled_safety_or_security": info.get("safety", 0) + info.get("security", 0) if info else None,
        "routed_by": r["routed_by"], "by_level": by_level or None, "model_labels": r["predicted_model_labels"],
        "model_calls": r["model_calls"], "errors": r["errors"], "seconds": r["seconds"],
    }


NEEDS_MODEL = True  # the model decides where the level and the lexicon disagree
SMOKE_ARGS = ["--lines", "40"]


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.day_one", description=__doc__.split("\n")[0])
    p.add_argument("--before", action="store_true",
                   help="also score the lines without their levels (every alert + every 12th routine line)")
    p.add_argument("--threads", type=int, help="llama.cpp threads (default: edged's default)")
    p.add_argument("--start", type=int, default=1, help="the first line (1-based; default 1)")
    p.add_argument("--lines", type=int, default=0, help="only N lines from --start (0: to the end)")
    args = p.parse_args(argv)
    if not BGL.exists():
        raise Unavailable(f"{BGL} not found: this benchmark needs Loghub's BGL sample")
    rows = load_rows()[max(args.start, 1) - 1:]
    if args.lines:
        rows = rows[: args.lines]
    result: dict[str, Any] = {"data": f"{BGL.relative_to(REPO.parent)}/BGL_2k.log", "start": max(args.start, 1),
                              "lines": len(rows)}
    with tempfile.TemporaryDirectory(prefix="edged-bench-day-one-") as tmp_name:
        tmp = Path(tmp_name)
        threads = f"\n[backend]\nthreads = {args.threads}\n" if args.threads else ""
        base = f'[store]\npath = "{tmp / "edged.db"}"\n[model]\ndir = "{REPO / "models"}"\n{threads}'
        config = tmp / "edged.toml"  # a fresh store: no labels, no classifier
        config.write_text(base)
        no_dumps = tmp / "edged-no-dump-lines.toml"
        no_dumps.write_text(f"[analysis]\ndump_lines = false\n{base}")
        data = tmp / "bgl.csv"
        write_csv(data, rows)
        with_levels = ("--level-col", "level", "--message-col", "message")
        for name, cfg in (("with_levels", config), ("without_dump_lines", no_dumps)):
            t0 = time.perf_counter()
            result[name] = scored(eval_json(cfg, data, tmp, *with_levels))
            result[name]["wall_s"] = round(time.perf_counter() - t0, 1)
            log(f"{name}: {result[name]}")
        if args.before:
            routine = [r for r in rows if r["label"] == "normal"][::12]
            sample = [r for r in rows if r["label"] == "alert"] + routine
            small = tmp / "bgl_sample.csv"
            write_csv(small, sample)
            for name, extra in (("sample_with_levels", with_levels), ("sample_without_levels", ())):
                t0 = time.perf_counter()
                result[name] = scored(eval_json(config, small, tmp, *extra))
                result[name]["wall_s"] = round(time.perf_counter() - t0, 1)
                log(f"{name}: {result[name]}")
    result["dump_lines_by_system"] = dump_lines_by_system()
    write_result("day_one", result)
    return result


def summary_lines(r: dict[str, Any]) -> list[str]:
    span = f"BGL lines {r['start']}-{r['start'] + r['lines'] - 1}"
    lines = []
    for name, what in (("without_dump_lines", "without dump lines"), ("with_levels", "as configured")):
        w = r[name]
        lines.append(f"day one ({span}, no labels), {what}: alert recall {w['alert_recall']:.3f} at precision"
                     f" {w['alert_precision']:.3f} ({w['labelled_not_normal']} labelled not normal, {w['alerts']}"
                     f" alerts); INFO lines labelled safety/security: {w['info_labelled_safety_or_security']};"
                     f" {w['model_calls']} model calls")
    marked = ", ".join(f"{k} {v['marked']}/{v['lines']}" + (f" ({v['alerts_marked']} alerts)" if "alerts" in v else "")
                       for k, v in r["dump_lines_by_system"].items())
    lines.append(f"dump lines marked per Loghub system: {marked}")
    if "sample_without_levels" in r:
        b = r["sample_without_levels"]
        lines.append(f"day one, without levels ({b['rows']}-line sample): alert recall {b['alert_recall']:.3f} at"
                     f" precision {b['alert_precision']:.3f}; {b['model_calls']} model calls")
    return lines


if __name__ == "__main__":
    for line in summary_lines(main()):
        print(line)
