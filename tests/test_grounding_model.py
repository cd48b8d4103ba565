"""Grounded extraction with the real default model (SmolLM2-135M-Instruct, llama.cpp): kept small.

A 135M model copies badly: on a BlueGene line without a parsed header it answers with values that
are not in the line, or not of the field's kind (a date as the error code). Those are dropped and
counted, and every value the model keeps is in the line. A line whose header and patterns fill
every field makes no extraction call at all.
"""

from __future__ import annotations

import pytest

from edged.analysis.grounding import grounded
from edged.analysis.pipeline import Pipeline, ResultCache
from edged.analysis.tasks import CLASSIFY, EXTRACT
from edged.analysis.templates import TemplateStore
from edged.app import build_backend
from edged.backends.base import Backend, Completion, CompletionRequest
from edged.config.settings import AnalysisSettings, ModelSettings, Settings
from edged.store.inbox import Claimed
from tests.support.daemon import REPO

MODEL_DIR = REPO / "models"
NOW = 1796000000.0


class Recording(Backend):
    """The real backend, with every request kept."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.requests = inner, []
        self.name, self.model_name, self.model_sha256 = inner.name, inner.model_name, inner.model_sha256

    def complete(self, request: CompletionRequest) -> Completion:
        self.requests.append(request)
        return self.inner.complete(request)


@pytest.fixture(scope="module")
def real_backend():
    if not (MODEL_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf").exists():
        pytest.fail("the default model is missing: run `make model` (make test does it)", pytrace=False)
    backend = build_backend(Settings(model=ModelSettings(dir=MODEL_DIR)))
    yield backend
    backend.close()


def _pipeline(backend: Backend, tasks) -> Pipeline:
    return Pipeline(AnalysisSettings(), backend, TemplateStore(), ResultCache(lambda k: None), None, timezone="UTC", tasks=tasks)


def test_values_the_model_invents_are_dropped_and_counted(real_backend):
    recording = Recording(real_backend)
    line = ("- 1117842440 2005.06.03 R23-M0-NE-C:J05-U01 2005-06-03-16.47.20.730545 R23-M0-NE-C:J05-U01 RAS KERNEL"
            " INFO 63543 double-hummer alignment exceptions")
    outcome = _pipeline(recording, (EXTRACT,)).analyze([Claimed(1, "bgl:1", "test", None, "log", line, "", 1, NOW, 0)])
    assert len(recording.requests) == 1
    asked = list(recording.requests[0].schema["properties"])
    assert "event_time" not in asked and "level" not in asked  # never asked of the model
    result = outcome.results[0]
    assert result.fields["event_time"] == "2005-06-03T16:47:20.730545+00:00"  # from the line itself
    assert result.fields_source["event_time"] == "header"  # the parsed header's time, never the model
    assert outcome.ungrounded, "the model kept every value: nothing to show here"
    for name in outcome.ungrounded:
        assert result.fields[name] is None
    for name, source in result.fields_source.items():
        if source == "model":
            assert grounded(result.fields[name], line), (name, result.fields[name])


def test_a_line_whose_structure_fills_every_field_makes_no_extraction_call(real_backend):
    recording = Recording(real_backend)
    text = "Jun 14 15:16:01 plc-04 hydraulics[812]: ERROR ALM 203 pressure below limit: 4.2 bar"
    header = {"format": "syslog", "time": "Jun 14 15:16:01", "host": "plc-04", "component": "hydraulics", "pid": "812"}
    record = Claimed(1, "h:1", "test", None, "log", text, "", 1, NOW, 0, header, "ERROR ALM 203 pressure below limit: 4.2 bar")
    outcome = _pipeline(recording, (CLASSIFY, EXTRACT)).analyze([record])
    assert [list(r.schema["properties"]) for r in recording.requests] == [["label", "severity"]]
    assert outcome.results[0].fields == {
        "machine": "plc-04", "component": "hydraulics", "error_code": "ALM 203", "value": 4.2, "unit": "bar",
        "event_time": "2026-06-14T15:16:01+00:00", "level": "ERROR",
    }


def test_llama_cpp_stops_a_summary_where_it_starts_repeating(real_backend):
    import dataclasses
    import json

    from edged.analysis.tasks import SUMMARIZE, build_specs, request_for
    from edged.backends.repetition import first_repeat

    report = ("pump 3 leaking oil at the seal, pump 3 leaking oil at the seal, pump 3 leaking oil at the seal,"
              " pump 3 leaking oil at the seal")
    request = request_for(build_specs(AnalysisSettings())[SUMMARIZE], report, kind="incident")
    free = json.loads(real_backend.complete(request).text)["summary"]
    assert first_repeat(free, 4) is not None, f"the model did not loop on this report: {free!r}"
    stopped = real_backend.complete(dataclasses.replace(request, stop_repeat_ngram=4))
    summary = json.loads(stopped.text)["summary"]  # the document was closed where decoding stopped
    assert stopped.repetition_cut
    assert first_repeat(summary, 4) is None
    assert free.startswith(summary.rstrip(" ,"))
