"""Does the language model beat the triage classifier's own guess where the classifier is unsure?

Measured once for each trained version, on its own held-out labels (never trained on), and stored
with the version (``triage_models.routing``). The router then sends a record the classifier is
unsure of to the model only when that version's figures say the model does better there; otherwise
the classifier's guess stands and the result is flagged for review. So on a version's held-out
labels, routed micro-F1 is never below the classifier's alone: either routing picked a threshold
where the model's answers raised it, or nothing is routed and the two are the same.

The model is asked about the held-out texts the classifier is least sure of first, at most
``[triage] routing_sample`` of them, exactly as the daemon would ask it (the classifier's likeliest
labels as the choice, similar labeled texts as examples, from the training labels only: a held-out
text must not find itself among the examples). A threshold is scored only when every held-out text
below it was asked, so each figure is exact, not an estimate. The model counts as better only when
it is also unlikely to be luck: on the texts where exactly one of the two was right, a one-sided sign
test must give p <= ``SIGNIFICANCE`` (two right answers against one is not evidence). With
``[triage] confidence_threshold`` unset, the threshold is the one of ``THRESHOLDS`` with the best
routed micro-F1 among those (the lowest of equals: fewest model calls).
"""

from __future__ import annotations

from typing import Any, Callable

import math

import numpy as np

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
DEFAULT_THRESHOLD = 0.8  # where a version was not measured and no threshold is configured
SIGNIFICANCE = 0.05  # the sign test's p-value at most, for the model to count as better than the guess

# (texts, labels each may be chosen from ([] = all), labeled examples for each) -> the model's label
# for each text (None where the call failed: counted as wrong).
Judge = Callable[[list[str], list[list[str]], list[list[tuple[str, str]]]], list[str | None]]


class JudgeUnavailable(RuntimeError):
    """The language model could not be loaded to measure routing: the version is stored unmeasured."""


def lazy(load: Callable[[], Judge]) -> Judge:
    """A judge whose model is loaded at its first question (a training may end before any is asked)."""
    loaded: list[Judge] = []

    def judge(texts: list[str], choices: list[list[str]], examples: list[list[tuple[str, str]]]) -> list[str | None]:
        if not loaded:
            loaded.append(load())
        return loaded[0](texts, choices, examples)

    return judge


def ranked(probs: np.ndarray, classes: list[str], taxonomy: list[str]) -> list[str]:
    """The classifier's labels for one text, likeliest first, less those no longer in the taxonomy."""
    allowed = set(taxonomy)
    return [classes[i] for i in np.argsort(probs)[::-1] if classes[i] in allowed]


def candidates(order: list[str], taxonomy: list[str], k: int) -> list[str]:
    """The ``k`` likeliest labels in taxonomy order (the same set always makes the same schema); [] = all."""
    if not k or len(order) < 2:
        return []
    top = set(order[:k])
    return [label for label in taxonomy if label in top]


def sign_test(wins: int, losses: int) -> float:
    """One-sided p-value of ``wins`` or more among ``wins + losses`` fair coin flips."""
    n = wins + losses
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n if n else 1.0


def not_measured(reason: str, threshold: float | None) -> dict[str, Any]:
    return {"measured": False, "route_to_model": False, "threshold": threshold or DEFAULT_THRESHOLD,
            "reason": reason}


def measure(
    probs: np.ndarray,
    classes: list[str],
    texts: list[str],
    gold: list[str],
    taxonomy: list[str],
    *,
    judge: Judge | None,
    sample: int,
    k: int,
    examples_for: Callable[[str], list[tuple[str, str]]],
    threshold: float | None = None,
) -> dict[str, Any]:
    """The routing figures of one version: ``probs`` are its class probabilities on the held-out ``texts``."""
    if judge is None:
        return not_measured("no language model to ask", threshold)
    if sample == 0:
        return not_measured("[triage] routing_sample is 0", threshold)
    n = len(texts)
    if n == 0:
        return not_measured("no held-out labels", threshold)
    orders = [ranked(p, classes, taxonomy) for p in probs]
    guess = [o[0] if o else None for o in orders]
    best = [float(p.max()) for p in probs]
    guess_right = [g == t for g, t in zip(guess, gold)]
    considered = (threshold,) if threshold is not None else THRESHOLDS
    unsure = sorted((i for i in range(n) if best[i] < max(considered)), key=lambda i: best[i])
    asked = unsure[:sample]
    try:
        answers = judge([texts[i] for i in asked], [candidates(orders[i], taxonomy, k) for i in asked],
                        [examples_for(texts[i]) for i in asked]) if asked else []
    except JudgeUnavailable as exc:
        return not_measured(f"the language model could not be loaded: {exc}", threshold)
    model_right = dict(zip(asked, (a == gold[i] for i, a in zip(asked, answers))))
    triage_right = sum(guess_right)
    rows = []
    for t in considered:
        below = [i for i in range(n) if best[i] < t]
        if any(i not in model_right for i in below):
            continue  # not every unsure text was asked: no exact figure at this threshold
        m = sum(model_right[i] for i in below)
        g = sum(guess_right[i] for i in below)
        wins = sum(model_right[i] and not guess_right[i] for i in below)
        losses = sum(guess_right[i] and not model_right[i] for i in below)
        rows.append({"threshold": t, "unsure": len(below), "model_right": m, "guess_right": g,
                     "routed_micro_f1": round((triage_right - g + m) / n, 4), "p_value": round(sign_test(wins, losses), 4)})
    better = [r for r in rows if r["model_right"] > r["guess_right"] and r["p_value"] <= SIGNIFICANCE]
    chosen = max(better, key=lambda r: (r["routed_micro_f1"], -r["threshold"])) if better else None
    triage_f1 = round(triage_right / n, 4)
    if chosen is not None:
        reason = (f"on {chosen['unsure']} unsure held-out labels below {chosen['threshold']} the model was right on"
                  f" {chosen['model_right']}, the classifier's guess on {chosen['guess_right']}")
    elif any(r["model_right"] > r["guess_right"] for r in rows):
        r = max(rows, key=lambda r: r["model_right"] - r["guess_right"])
        reason = (f"the model was right more often than the classifier's guess only by chance (on {r['unsure']} unsure"
                  f" held-out labels below {r['threshold']}: {r['model_right']} against {r['guess_right']},"
                  f" sign test p = {r['p_value']})")
    elif rows:
        reason = "the model was never right more often than the classifier's guess on unsure held-out labels"
    else:
        reason = f"more unsure held-out labels than [triage] routing_sample ({sample}) at every threshold"
    return {
        "measured": True,
        "route_to_model": chosen is not None,
        "threshold": chosen["threshold"] if chosen else (threshold or DEFAULT_THRESHOLD),
        "heldout": n,
        "asked": len(asked),
        "triage_micro_f1": triage_f1,
        "routed_micro_f1": chosen["routed_micro_f1"] if chosen else triage_f1,
        "by_threshold": rows,
        "reason": reason,
    }
