"""(e) ``bgl_eval``: ``edged eval`` on BGL 2k, alert vs normal, with the configured taxonomy mapped to
alert/normal and with the binary taxonomy. Skipped without ../shared/data/loghub/BGL."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.analysis.cold_start import backend_toml
from bench.common import LOGHUB_DIR

ALERT_MAP = "fault=alert,safety=alert,security=alert,normal=normal,warning=normal"


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
