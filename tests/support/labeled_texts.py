"""Labeled shop-floor texts made up for the tests, in the default taxonomy.

Each label has a few phrasings with varying machines, numbers, abbreviations and typos, the way
technicians and controllers write. Deterministic for a seed. Not real data: the real evaluation
data lives outside the repository (see the README's evaluation section).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

PHRASES = {
    "normal": [
        "cycle complete part {n} in {f} s",
        "pallet {n} loaded on table {k}",
        "tool change T{k} done",
        "job {n} finished ok, {k} parts",
        "conveyor running at {k} m/min",
        "warm-up program finished on lathe {k}",
    ],
    "warning": [
        "coolant level low ({k}%)",
        "filter pressure high {k} bar, service soon",
        "lubrication due in {k} h on press {k}",
        "vibration rising on axis {ax}",
        "backup battery weak on controller {k}",
        "air pressure dropping {f} bar",
    ],
    "fault": [
        "spindle {k} overtemp {n}C, axis stopped",
        "servo drive {k} fault E{n}",
        "hydraulic pump failed, pressure lost on press {k}",
        "PLC comm timeout to IO module {k}",
        "motor {k} tripped on overload",
        "encoder signal lost axis {ax}",
    ],
    "safety": [
        "E-STOP pressed at station {k}",
        "light curtain interrupted cell {k}",
        "guard door open during run on mill {k}",
        "smoke seen near oven {k}, area cleared",
        "operator hand injury at press {k}",
        "safety relay {k} not reset, robot locked",
    ],
    "security": [
        "failed password for {user} from 10.0.{k}.{n}",
        "certificate expired on gateway {k}",
        "port scan from 10.{k}.0.{n} blocked",
        "unknown USB stick plugged into HMI {k}",
        "new admin account {user} created on historian",
        "ssh login as root from 172.16.{k}.{n}",
    ],
}
USERS = ["admin", "root", "operator", "maint", "guest"]


def _noisy(text: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.2:
        text = text.upper()
    elif roll < 0.3:
        i = rng.randrange(len(text))
        text = text[:i] + text[i + 1 :]  # a typo: one character dropped
    if rng.random() < 0.3:
        text = rng.choice(["WO: ", "note: ", "", "shift B - "]) + text
    return text


def make(n_per_label: int, seed: int = 0, labels: list[str] | None = None) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label in labels or list(PHRASES):
        for _ in range(n_per_label):
            phrase = rng.choice(PHRASES[label])
            text = phrase.format(
                n=rng.randint(1, 9999), k=rng.randint(1, 40), f=round(rng.uniform(0.5, 99), 1),
                ax=rng.choice("XYZABC"), user=rng.choice(USERS),
            )
            rows.append((_noisy(text, rng), label))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], text_col: str = "text", label_col: str = "label") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([text_col, label_col])
        w.writerows(rows)
    return path
