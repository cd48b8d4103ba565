"""Offline experiment: does the default model's sentence embedding make the triage classifier better?

Data: real maintenance work orders (../shared/data/incidents, read at run time, never copied here).
Each of ``--tasks`` is one classification task:

- ``MajorSystem``, ``FM`` (failure mode), ``Action``: the excavator work orders' columns
  (nist_excavators; the text is ``OriginalShorttext``; rows labelled NA or empty dropped). These
  labels come from keyword rules (Hodkiewicz & Ho 2016), not from a person reading each row;
- ``maintie_state``: MaintIE's expert-annotated gold texts (maintie/gold_release.json): whether a
  text reports an undesirable state (an entity typed ``State/UndesirableState...``: failed, degraded,
  ...) or not.

The rows of a task are split by a salted hash of the normalised text (``--seed`` is the salt;
equal texts fall on the same side), ``--heldout-percent`` held out. Nothing is tuned:
the classifier's settings are the triage defaults, and the held-out rows are only scored.

The classifier is the triage trainer's own (``edged.triage.train.fit``: multinomial logistic
regression, lazy Adam, L2, the daemon's epochs), on three feature sets:

- ``ngrams``: the hashed character n-grams the daemon uses (unit length);
- ``ngrams+embedding``: the same, joined with the default model's mean-pooled sentence embedding
  (llama-cpp-python ``Llama(embedding=True, pooling_type=MEAN)``, ``embed()``), scaled to unit length,
  so each half weighs the same;
- ``embedding``: the embedding alone (for reference).

Reported per task: train and held-out row counts, held-out micro-F1 of each, and, between ``ngrams``
and ``ngrams+embedding``, the held-out rows only one of the two got right and a one-sided sign test on
them. The embedding's cost: milliseconds per text at ``--threads`` (default 1), measured on texts not
yet in the cache (the cache holds one vector per distinct text and model file).

Usage: python -m bench.triage_embedding [--tasks MajorSystem,FM,Action,maintie_state] [--rows N] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, Unavailable, write_result
from edged.analysis.evaluate import classification_metrics
from edged.config.settings import TriageSettings
from edged.triage.features import FeatureSpec
from edged.triage.labels import is_heldout
from edged.triage.measure import sign_test
from edged.triage.train import SparseRows, TrainParams, fit

INCIDENTS = REPO.parent / "shared" / "data" / "incidents"
DATA = INCIDENTS / "nist_excavators" / "excavators-cleaned.csv"
MAINTIE = INCIDENTS / "maintie" / "gold_release.json"
MAINTIE_TASK = "maintie_state"
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_DIR = REPO / "var" / "bench-embeddings"
NEEDS_MODEL = True
SMOKE_ARGS = ["--rows", "80", "--tasks", "MajorSystem", "--no-cache"]


def log(msg: str) -> None:
    print(f"[triage_embedding] {msg}", file=sys.stderr, flush=True)


def load(task: str, limit: int) -> list[tuple[str, str]]:
    """(text, label) of a task's labelled rows (the first ``limit`` rows of its file; 0: all)."""
    if task == MAINTIE_TASK:
        if not MAINTIE.exists():
            raise Unavailable(f"{MAINTIE} not found")
        items = json.loads(MAINTIE.read_text(encoding="utf-8"))
        items = items[:limit] if limit else items
        return [(x["text"].strip(), "undesirable_state" if any(e["type"].startswith("State/UndesirableState")
                                                               for e in x["entities"]) else "other")
                for x in items if x["text"].strip()]
    if not DATA.exists():
        raise Unavailable(f"{DATA} not found: the {task} task needs the excavator work orders")
    with DATA.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if (r.get("OriginalShorttext") or "").strip()]
    if rows and task not in rows[0]:
        raise SystemExit(f"{DATA} has no column {task}")
    rows = rows[:limit] if limit else rows
    data = [(r["OriginalShorttext"].strip(), (r.get(task) or "").strip()) for r in rows]
    return [(t, y) for t, y in data if y and y != "NA"]


class Embedder:
    """Mean-pooled sentence embeddings of the default model, one per distinct text, cached on disk."""

    def __init__(self, model: Path, threads: int, cache: Path | None) -> None:
        from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama

        self.llm = Llama(str(model), embedding=True, pooling_type=LLAMA_POOLING_TYPE_MEAN, n_ctx=512,
                         n_threads=threads, n_threads_batch=threads, verbose=False)
        self.cache_path = cache
        self.vectors: dict[str, np.ndarray] = {}
        if cache is not None and cache.exists():
            with np.load(cache, allow_pickle=False) as z:
                self.vectors = dict(zip(z["texts"].tolist(), z["vectors"]))
        self.cached_at_start = len(self.vectors)
        self.ms: list[float] = []  # per text embedded in this run
        self.tokens: list[int] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        for text in dict.fromkeys(texts):
            if text not in self.vectors:
                t0 = time.perf_counter()
                vector = np.asarray(self.llm.embed(text), np.float32)
                self.ms.append((time.perf_counter() - t0) * 1000)
                self.tokens.append(len(self.llm.tokenize(text.encode("utf-8"), add_bos=True)))
                self.vectors[text] = vector / (np.linalg.norm(vector) or 1.0)
        return np.stack([self.vectors[t] for t in texts])

    def save(self) -> None:
        if self.cache_path is None or len(self.vectors) == self.cached_at_start:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        texts = list(self.vectors)
        np.savez(self.cache_path, texts=np.array(texts), vectors=np.stack([self.vectors[t] for t in texts]))

    def cost(self) -> dict[str, Any]:
        if not self.ms:
            return {"texts_embedded": 0, "note": "every text came from the cache; run with --no-cache to time"}
        ordered = sorted(self.ms)
        return {"texts_embedded": len(self.ms), "ms_per_text_mean": round(statistics.fmean(self.ms), 2),
                "ms_per_text_p50": round(ordered[len(ordered) // 2], 2),
                "ms_per_text_p95": round(ordered[int(len(ordered) * 0.95)], 2),
                "tokens_per_text_mean": round(statistics.fmean(self.tokens), 1),
                "dim": int(next(iter(self.vectors.values())).shape[0])}


def joined(ngrams: SparseRows | None, dim: int, extra: np.ndarray | None) -> SparseRows:
    """CSR rows of the n-gram columns (0..dim-1) followed by the dense ``extra`` columns."""
    n = len(extra) if extra is not None else len(ngrams.indptr) - 1
    index, values = [], []
    for r in range(n):
        i = np.zeros(0, np.int32) if ngrams is None else ngrams.indices[ngrams.indptr[r]:ngrams.indptr[r + 1]]
        v = np.zeros(0, np.float32) if ngrams is None else ngrams.values[ngrams.indptr[r]:ngrams.indptr[r + 1]]
        if extra is not None:
            i = np.concatenate([i, dim + np.arange(extra.shape[1], dtype=np.int32)])
            v = np.concatenate([v, extra[r]])
        index.append(i.astype(np.int32))
        values.append(v.astype(np.float32))
    indptr = np.zeros(n + 1, np.int64)
    indptr[1:] = np.cumsum([len(i) for i in index])
    return SparseRows(indptr, np.concatenate(index), np.concatenate(values))


def predict(rows: SparseRows, w: np.ndarray, b: np.ndarray, classes: list[str]) -> list[str]:
    out: list[str] = []
    n = len(rows.indptr) - 1
    for lo in range(0, n, 256):
        part = np.arange(lo, min(n, lo + 256))
        logits = rows.dense(part, w.shape[1]) @ w.T + b  # the likeliest class: softmax keeps the order
        out += [classes[i] for i in logits.argmax(axis=1)]
    return out


def one_task(data: list[tuple[str, str]], task: str, embed: Embedder, spec: FeatureSpec, params: TrainParams,
             heldout_percent: int, seed: str) -> dict[str, Any]:
    train = [(t, y) for t, y in data if not is_heldout(t, heldout_percent, salt=seed)]
    held = [(t, y) for t, y in data if is_heldout(t, heldout_percent, salt=seed)]
    classes = sorted({y for _, y in train})
    if len(classes) < 2 or not held:
        return {"error": f"{task}: too few rows ({len(train)} train, {len(held)} held out)"}
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[label] for _, label in train], np.int64)
    gold = [label for _, label in held]
    features = {
        "ngrams": lambda texts: joined(SparseRows.of(texts, spec), spec.dim, None),
        "ngrams+embedding": lambda texts: joined(SparseRows.of(texts, spec), spec.dim, embed(texts)),
        "embedding": lambda texts: joined(None, 0, embed(texts)),
    }
    out: dict[str, Any] = {"train_rows": len(train), "heldout_rows": len(held), "classes": len(classes),
                           "heldout_classes_unseen_in_training": len({*gold} - set(classes))}
    preds: dict[str, list[str]] = {}
    for name, make in features.items():
        train_rows, held_rows = make([t for t, _ in train]), make([t for t, _ in held])
        width = int(max(train_rows.indices.max(initial=0), held_rows.indices.max(initial=0))) + 1
        t0 = time.perf_counter()
        w, b = fit(train_rows, y, len(classes), width, params)
        seconds = time.perf_counter() - t0
        preds[name] = predict(held_rows, w, b, classes)
        m = classification_metrics(gold, preds[name], classes)
        out[name] = {"heldout_micro_f1": m["micro_f1"], "heldout_macro_f1": m["macro_f1"],
                     "train_seconds": round(seconds, 2)}
        log(f"{task} {name}: held-out micro-F1 {m['micro_f1']:.4f} ({len(held)} rows)")
    a, c = preds["ngrams"], preds["ngrams+embedding"]
    wins = sum(1 for g, x, z in zip(gold, a, c) if z == g and x != g)
    losses = sum(1 for g, x, z in zip(gold, a, c) if x == g and z != g)
    out["ngrams+embedding_vs_ngrams"] = {
        "micro_f1_gain": round(out["ngrams+embedding"]["heldout_micro_f1"] - out["ngrams"]["heldout_micro_f1"], 4),
        "only_combined_right": wins, "only_ngrams_right": losses,
        "p_value_combined_better": round(sign_test(wins, losses), 4),
        "p_value_ngrams_better": round(sign_test(losses, wins), 4),
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.triage_embedding", description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=f"MajorSystem,FM,Action,{MAINTIE_TASK}", help="tasks, comma-separated")
    p.add_argument("--rows", type=int, default=0, help="only the first N rows of the file (0: all)")
    p.add_argument("--heldout-percent", type=int, default=30)
    p.add_argument("--seed", default="embedding-experiment-0", help="the split's salt")
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads for the embeddings")
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--no-cache", action="store_true", help="embed every text afresh (and time them all)")
    args = p.parse_args(argv)
    if not args.model.exists():
        raise Unavailable(f"{args.model} not found: `make model` fetches the default model")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    data = {task: load(task, args.rows) for task in tasks}
    sha = hashlib.blake2b(args.model.read_bytes()[:1 << 20] + str(args.model.stat().st_size).encode(),
                          digest_size=6).hexdigest()
    embed = Embedder(args.model, args.threads, None if args.no_cache else CACHE_DIR / f"{args.model.stem}-{sha}.npz")
    triage = TriageSettings()
    spec, params = FeatureSpec(dim=triage.hash_buckets), TrainParams(epochs=triage.epochs)
    result: dict[str, Any] = {"data": str(INCIDENTS.relative_to(REPO.parent)), "model": args.model.name,
                              "threads": args.threads, "heldout_percent": args.heldout_percent, "split_salt": args.seed,
                              "params": {"hash_buckets": spec.dim, "epochs": params.epochs, "l2": params.l2,
                                         "learning_rate": params.learning_rate, "batch_size": params.batch_size}}
    try:
        embed([t for rows in data.values() for t, _ in rows])  # every text once, timed where not cached
        for task in tasks:
            result[task] = one_task(data[task], task, embed, spec, params, args.heldout_percent, args.seed)
    finally:
        embed.save()
    result["embedding_cost"] = embed.cost()
    write_result("triage_embedding", result)
    return result


def summary_lines(r: dict[str, Any]) -> list[str]:
    lines = []
    for task in (k for k, v in r.items() if isinstance(v, dict) and "ngrams" in v):
        t = r[task]
        d = t["ngrams+embedding_vs_ngrams"]
        lines.append(f"{task}: held-out micro-F1 ngrams {t['ngrams']['heldout_micro_f1']:.4f}, ngrams+embedding"
                     f" {t['ngrams+embedding']['heldout_micro_f1']:.4f}, embedding {t['embedding']['heldout_micro_f1']:.4f}"
                     f" ({t['heldout_rows']} held-out rows, {t['train_rows']} train); only combined right"
                     f" {d['only_combined_right']}, only ngrams right {d['only_ngrams_right']}"
                     f" (p combined better {d['p_value_combined_better']})")
    c = r["embedding_cost"]
    if c.get("texts_embedded"):
        lines.append(f"embedding: {c['ms_per_text_mean']} ms per text mean (p50 {c['ms_per_text_p50']}, p95"
                     f" {c['ms_per_text_p95']}), {c['tokens_per_text_mean']} tokens, {c['dim']} dims,"
                     f" threads {r['threads']}")
    return lines


if __name__ == "__main__":
    for line in summary_lines(main()):
        print(line)
