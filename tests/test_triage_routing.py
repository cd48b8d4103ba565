"""Routing classifications through the triage classifier, in the analyzer with a real store.

The language model here is the scripted fake backend: these tests prove which path each record
takes and what the model is shown, not inference (tests/test_triage_model.py uses the real model).
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from edged.analysis.analyzer import Analyzer
from edged.backends.fake import FakeBackend
from edged.config.settings import AnalysisSettings, TriageSettings
from edged.publish.outbox import OutboxBuilder
from edged.config.settings import UpstreamSettings
from edged.store.database import connect, open_database, write_transaction
from edged.store.records import NewRecord
from edged.store.writer import StoreWriter, WriteBatch
from edged.triage import labels as label_store
from edged.triage import versions
from edged.web.actions import correct_label
from tests.support.labeled_texts import make

# route_unsure = "model": these tests are about what the model is asked (tests/test_routing.py covers the
# measured choice between the model and the classifier's guess).
TRIAGE = TriageSettings(hash_buckets=4096, epochs=20, min_labels=20, confidence_threshold=0.6, retrain_after=50,
                        route_unsure="model")


def scripted(request):
    if "label" in request.schema["properties"]:
        return {"label": request.schema["properties"]["label"]["enum"][-1], "severity": 2}
    if "summary" in request.schema["properties"]:
        return {"summary": "s"}
    return {k: None for k in request.schema["properties"]}


@pytest.fixture
def env(tmp_path):
    path = tmp_path / "edged.db"
    db = open_database(path)
    with write_transaction(db):
        label_store.add_imported(db, make(40, seed=11))
    writer = StoreWriter(db)
    writer.start()
    backend = FakeBackend(answer=scripted)
    analyzer = Analyzer(AnalysisSettings(batch_size=50), backend, writer, connect(path), OutboxBuilder(UpstreamSettings()),
                        TRIAGE)
    yield writer, backend, analyzer, path
    writer.stop()


def put(writer, *texts, kind="log"):
    records = [NewRecord(f"r{i}", "test", "cnc-1", kind, t, "", None, 0.0, 0) for i, t in enumerate(texts)]
    writer.submit(WriteBatch(records=records)).result()


def results(path):
    conn = sqlite3.connect(path)
    try:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT record_id, label, severity, classified_by, triage_version, model_calls, confidence FROM results")}
    finally:
        conn.close()


def classify_calls(backend):
    return [c for c in backend.calls if "label" in c.schema["properties"]]


def test_confident_triage_labels_skip_the_model_and_the_rest_get_examples(env):
    writer, backend, analyzer, path = env
    assert analyzer.learn_if_due(now=1e12)  # 200 labels arrived: an automatic training
    put(writer, "E-STOP pressed at station 12", "failed password for admin from 10.0.3.4",
        "zzqx 1234 ???", kind="incident")
    analyzer.run_once()
    got = results(path)
    assert got["r0"][:4] == ("safety", 5, "triage", 1) and got["r0"][4] == 2  # extract + summarize only
    assert got["r1"][:4] == ("security", 3, "triage", 1)
    assert got["r0"][5] >= TRIAGE.confidence_threshold
    # The unclear text went to the model, with the most similar labeled texts in its prompt.
    asked = classify_calls(backend)
    assert len(asked) == 1 and "zzqx" in asked[0].user
    # It chose among the classifier's three likeliest labels, in taxonomy order.
    candidates = asked[0].schema["properties"]["label"]["enum"]
    assert len(candidates) == TRIAGE.candidates == 3
    assert candidates == [label for label in AnalysisSettings().labels if label in candidates]
    assert got["r2"][:4] == (candidates[-1], 2, "slm", None)
    assert asked[0].user.startswith("Labeled examples like this one:\n")
    assert asked[0].user.count(" -> ") == TRIAGE.examples
    # The system prompt, which llama.cpp caches, is the same as without examples.
    assert "Labeled examples" not in asked[0].system


def test_each_published_result_says_which_path_classified_it(env):
    writer, backend, analyzer, path = env
    analyzer.learn_if_due(now=1e12)
    put(writer, "E-STOP pressed at station 12", "zzqx 1234 ???", kind="incident")
    analyzer.run_once()
    conn = sqlite3.connect(path)
    payloads = {json.loads(p)["record_id"]: json.loads(p) for (p,) in conn.execute("SELECT payload FROM outbox")}
    conn.close()
    assert payloads["r0"]["classified_by"] == "triage" and payloads["r0"]["triage_version"] == 1
    assert payloads["r1"]["classified_by"] == "slm" and payloads["r1"]["triage_version"] is None


def test_without_a_trained_model_every_classification_goes_to_the_model(env):
    writer, backend, analyzer, path = env
    put(writer, "pump 7 noisy since monday", kind="incident")  # no level, no lexicon word: nothing else knows
    analyzer.run_once()
    assert results(path)["r0"][2:4] == ("slm", None)
    asked = classify_calls(backend)
    assert len(asked) == 1 and asked[0].schema["properties"]["label"]["enum"] == list(AnalysisSettings().labels)


def test_a_template_classified_by_triage_passes_its_path_to_later_lines(env):
    writer, backend, analyzer, path = env
    analyzer.learn_if_due(now=1e12)
    put(writer, *[f"E-STOP pressed at station {i}" for i in range(1, 6)])
    analyzer.run_once()
    got = results(path)
    assert {v[2:4] for v in got.values()} == {("triage", 1)} and len(got) == 5
    assert not classify_calls(backend)


def test_a_new_active_version_and_new_labels_are_picked_up_by_the_running_analyzer(env):
    writer, backend, analyzer, path = env
    analyzer.follow_labels(now=0)
    assert analyzer.router.model is None
    examples = len(analyzer.router.index)
    assert examples > 150  # the imported labels (one per distinct text)
    assert analyzer.learn_if_due(now=1e12)
    analyzer.follow_labels(now=1e12)
    assert analyzer.router.model.version == 1
    assert not analyzer.learn_if_due(now=2e12)  # no new labels since
    put(writer, "pump 7 noisy since monday", kind="incident")
    analyzer.run_once()
    # A technician corrects the label on the page: a training label at once, an example next batch.
    correct_label(writer, "r0", "fault", list(AnalysisSettings().labels), "ana", None)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT text, label, source FROM training_labels WHERE ref = 'r0'").fetchone() == (
        "pump 7 noisy since monday", "fault", "correction")
    conn.close()
    analyzer.follow_labels(now=3e12)
    assert len(analyzer.router.index) == examples + 1


def test_disabled_triage_means_no_router(tmp_path):
    path = tmp_path / "edged.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    try:
        off = Analyzer(AnalysisSettings(), FakeBackend(), writer, connect(path), None, TRIAGE.model_copy(update={"enabled": False}))
        assert off.router is None and off.pipeline.router is None and not off.learn_if_due(now=1e12)
        assert versions.active_version(connect(path)) is None
    finally:
        writer.stop()
