"""``edged analyze``: run the tasks on one text and return what the model said."""

from __future__ import annotations

import time
from typing import Any

from edged.analysis.tasks import CLASSIFY, EXTRACT, SUMMARIZE, build_specs, label_confidence, parse_answer, request_for
from edged.backends.base import Backend
from edged.config.settings import AnalysisSettings


def default_tasks(kind: str) -> list[str]:
    return [CLASSIFY, EXTRACT, SUMMARIZE] if kind == "incident" else [CLASSIFY, EXTRACT]


def analyze_text(
    backend: Backend, settings: AnalysisSettings, text: str, *, tasks: list[str], kind: str = "log",
    machine: str | None = None,
) -> dict[str, Any]:
    specs = build_specs(settings)
    out: dict[str, Any] = {"text": text, "kind": kind, "model": backend.model_name, "backend": backend.name}
    latency: dict[str, float] = {}
    for task in tasks:
        spec = specs[task]
        started = time.perf_counter()
        completion = backend.complete(request_for(spec, text, machine=machine, kind=kind))
        latency[task] = round((time.perf_counter() - started) * 1000, 1)
        answer = parse_answer(spec, completion)
        if task == CLASSIFY:
            out["label"] = answer["label"]
            out["severity"] = answer["severity"]
            out["confidence"] = label_confidence(completion, answer["label"], settings.labels)
            out["needs_review"] = out["confidence"] is None or out["confidence"] < settings.confidence_threshold
        elif task == EXTRACT:
            out["fields"] = answer
        else:
            out["summary"] = answer["summary"]
    out["latency_ms"] = latency
    return out


def format_analysis(result: dict[str, Any]) -> str:
    lines = []
    if "label" in result:
        conf = result["confidence"]
        lines.append(
            f"label       {result['label']} (severity {result['severity']}, confidence "
            f"{'n/a' if conf is None else f'{conf:.2f}'}{', needs review' if result['needs_review'] else ''})"
        )
    if "fields" in result:
        lines += [f"{k:<11} {v}" for k, v in result["fields"].items() if v is not None]
    if "summary" in result:
        lines.append(f"summary     {result['summary']}")
    lines.append(f"model       {result['model']} via {result['backend']}; " + ", ".join(
        f"{task} {ms:.0f} ms" for task, ms in result["latency_ms"].items()))
    return "\n".join(lines)
