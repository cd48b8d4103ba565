"""``edged analyze``: run the tasks on one text, the way the daemon would, and return the result.

It goes through the same pipeline as the daemon (fields from structure first, the model only for
the rest, values kept only when in the text, summaries checked), so what it shows is what edged
would publish.
"""

from __future__ import annotations

import time
from typing import Any

from edged.analysis.pipeline import Pipeline, ResultCache
from edged.analysis.tasks import CLASSIFY, EXTRACT, SUMMARIZE
from edged.analysis.templates import TemplateStore
from edged.backends.base import Backend, Completion, CompletionRequest
from edged.config.settings import AnalysisSettings
from edged.store.inbox import Claimed


def default_tasks(kind: str) -> list[str]:
    return [CLASSIFY, EXTRACT, SUMMARIZE] if kind == "incident" else [CLASSIFY, EXTRACT]


class _Timed(Backend):
    """The backend, with the time of each task's calls added up."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name, self.model_name, self.model_sha256 = inner.name, inner.model_name, inner.model_sha256
        self.ms: dict[str, float] = {}

    def complete(self, request: CompletionRequest) -> Completion:
        props = request.schema.get("properties", {})
        task = CLASSIFY if "label" in props else SUMMARIZE if "summary" in props else EXTRACT
        started = time.perf_counter()
        try:
            return self.inner.complete(request)
        finally:
            self.ms[task] = round(self.ms.get(task, 0.0) + (time.perf_counter() - started) * 1000, 1)


def analyze_text(
    backend: Backend, settings: AnalysisSettings, text: str, *, tasks: list[str], kind: str = "log",
    machine: str | None = None, timezone: str = "local", header: dict[str, str] | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    timed = _Timed(backend)
    pipeline = Pipeline(settings, timed, TemplateStore(), ResultCache(lambda key: None), None, timezone=timezone,
                        tasks=tuple(tasks))
    record = Claimed(0, "analyze", "cli", machine, kind, text, "", 1, time.time(), 0, header, message)
    outcome = pipeline.analyze([record])
    if outcome.failures:
        from edged.backends.base import BackendError

        raise BackendError(outcome.failures[0][1])
    result = outcome.results[0]
    out: dict[str, Any] = {"text": text, "kind": kind, "model": backend.model_name, "backend": backend.name}
    if CLASSIFY in tasks:
        out.update(label=result.label, severity=result.severity, confidence=result.confidence)
    out["needs_review"] = result.needs_review
    if EXTRACT in tasks:
        out["fields"] = result.fields
        out["fields_source"] = result.fields_source
        out["ungrounded"] = outcome.ungrounded
    if SUMMARIZE in tasks:
        out["summary"] = result.summary
    if result.review_reason:
        out["review_reason"] = result.review_reason
    out["latency_ms"] = timed.ms
    return out


def format_analysis(result: dict[str, Any]) -> str:
    lines = []
    if "label" in result:
        conf = result["confidence"]
        lines.append(
            f"label       {result['label']} (severity {result['severity']}, confidence "
            f"{'n/a' if conf is None else f'{conf:.2f}'}{', needs review' if result['needs_review'] else ''})"
        )
    if result.get("fields"):
        sources = result.get("fields_source") or {}
        lines += [f"{k:<11} {v}  ({sources.get(k, '?')})" for k, v in result["fields"].items() if v is not None]
    if result.get("ungrounded"):
        lines.append("dropped     " + ", ".join(f"{k} ({n})" for k, n in result["ungrounded"].items())
                     + ": the model's value was not in the text")
    if "summary" in result:
        lines.append(f"summary     {result['summary']}")
    if result.get("review_reason"):
        lines.append(f"review      {result['review_reason']}")
    lines.append(f"model       {result['model']} via {result['backend']}; " + ", ".join(
        f"{task} {ms:.0f} ms" for task, ms in result["latency_ms"].items()))
    return "\n".join(lines)
