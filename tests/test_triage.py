"""The triage classifier: features, the .tflite file run by the real LiteRT interpreter, training,
versions in a real SQLite store, and the labels it learns from."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edged.config.settings import TriageSettings
from edged.store.database import open_database, write_transaction
from edged.triage import labels as label_store
from edged.triage import runtime, versions
from edged.triage.features import FeatureSpec, dense, sparse
from edged.triage.learn import NotEnoughLabels, due, learn
from edged.triage.retrieval import ExampleIndex
from edged.triage.router import Router
from edged.triage.runtime import RuntimeMissing, TriageModel
from edged.triage.tflite_export import export_linear_softmax, read_metadata
from tests.support.labeled_texts import make

TAXONOMY = ["normal", "warning", "fault", "safety", "security"]
SMALL = TriageSettings(hash_buckets=4096, epochs=20, min_labels=20)


def writer_for(db):
    def write(fn):
        with write_transaction(db):
            return fn(db)
    return write


def import_rows(db, rows):
    with write_transaction(db):
        return label_store.add_imported(db, rows)


# -- features ----------------------------------------------------------------------------------------
def test_features_are_unit_length_stable_and_blind_to_digit_values():
    spec = FeatureSpec(dim=1024)
    i1, v1 = sparse("Spindle 2 overtemp 91C", spec)
    i2, v2 = sparse("spindle 7 OVERTEMP 88C", spec)
    assert np.array_equal(i1, i2) and np.allclose(v1, v2)
    assert abs(float(np.linalg.norm(v1)) - 1.0) < 1e-6
    assert list(i1) == sorted(set(i1))
    # Fixed across processes: CRC-32, not Python's salted hash (known value for this text).
    assert sparse("ab", FeatureSpec(dim=1 << 20, min_n=2, max_n=2, words=False))[0].tolist() == sorted(
        __import__("zlib").crc32(g.encode()) % (1 << 20) for g in (" a", "ab", "b ")
    )
    assert dense(["", "x"], spec).shape == (2, 1024)
    assert sparse("", spec)[0].size == 0


# -- the .tflite file -----------------------------------------------------------------------------------
def test_the_exported_tflite_runs_in_litert_and_matches_numpy():
    rng = np.random.default_rng(1)
    classes, dim = 5, 512
    w = rng.normal(size=(classes, dim)).astype(np.float32)
    b = rng.normal(size=classes).astype(np.float32)
    meta = {"classes": TAXONOMY, "features": FeatureSpec(dim=dim).as_dict()}
    blob = export_linear_softmax(w, b, meta)
    assert blob[4:8] == b"TFL3"
    assert read_metadata(blob) == meta
    model = TriageModel(blob)
    assert model.runtime == "ai-edge-litert"
    texts = ["spindle overtemp", "E-STOP pressed", "", "failed password for admin"]
    x = dense(texts, model.features)
    logits = x @ w.T + b
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    got = model.probabilities(texts)  # a batch: the interpreter's input is resized
    assert np.allclose(got, expected, atol=1e-5)
    assert np.allclose(model.probabilities(texts[:1]), expected[:1], atol=1e-5)  # and back to one
    assert [p.label for p in model.predict(texts)] == [TAXONOMY[i] for i in expected.argmax(1)]


def test_a_file_that_is_not_tflite_or_is_damaged_is_refused():
    with pytest.raises(ValueError, match="TFL3"):
        read_metadata(b"\0" * 64)
    blob = export_linear_softmax(np.zeros((2, 8), np.float32), np.zeros(2, np.float32), {"classes": ["a", "b"]})
    with pytest.raises(ValueError, match="damaged"):
        read_metadata(blob[:40])


def test_a_damaged_active_model_is_logged_and_not_used(tmp_path, caplog):
    db = open_database(tmp_path / "edged.db")
    import_rows(db, make(8, seed=13))
    learn(db, writer_for(db), SMALL, TAXONOMY)
    with write_transaction(db):
        db.conn.execute("UPDATE triage_models SET tflite = substr(tflite, 1, 40)")
    router = Router(SMALL, TAXONOMY)
    router.refresh(db)
    assert router.model is None and "not used" in caplog.text
    assert all(d.label is None for d in router.decide(["E-STOP pressed"]))  # the model decides everything


def test_without_any_tflite_runtime_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(RuntimeMissing, match="pip install ai-edge-litert"):
        runtime.interpreter_class()


# -- training and versions --------------------------------------------------------------------------------
def test_learn_trains_scores_on_held_out_labels_and_activates_the_first_good_model(tmp_path):
    db = open_database(tmp_path / "edged.db")
    rows = make(40, seed=1)
    import_rows(db, rows)
    distinct = len({" ".join(t.lower().split()) for t, _ in rows})  # one label per distinct text
    report = learn(db, writer_for(db), SMALL, TAXONOMY)
    assert report.active and report.version == 1
    assert report.labels == distinct and report.train_size + report.heldout_size == distinct
    assert 0.1 * distinct <= report.heldout_size <= 0.3 * distinct  # ~20% by hash
    assert report.heldout_micro_f1 >= 0.9 > report.baseline_micro_f1
    assert report.runtime == "ai-edge-litert" and report.classes == sorted(TAXONOMY)
    stored, blob = versions.active(db)
    assert stored.version == 1 and stored.train_size == report.train_size
    assert stored.heldout_micro_f1 == report.heldout_micro_f1 and TriageModel(blob).classes == sorted(TAXONOMY)


def test_a_new_version_replaces_the_active_one_only_when_it_scores_better(tmp_path):
    db = open_database(tmp_path / "edged.db")
    import_rows(db, make(6, seed=2))  # 30 labels: a weak first model
    first = learn(db, writer_for(db), SMALL, TAXONOMY)
    again = learn(db, writer_for(db), SMALL, TAXONOMY)  # the same labels: not better, not activated
    assert not again.active and again.previous_micro_f1 == again.heldout_micro_f1
    assert versions.active(db)[0].version == first.version
    import_rows(db, make(60, seed=3))
    better = learn(db, writer_for(db), SMALL, TAXONOMY)
    assert better.previous_micro_f1 is not None
    assert better.active == (better.heldout_micro_f1 > better.previous_micro_f1)
    assert "held-out micro-F1" in better.decision
    listed = versions.versions(db)
    assert [v.version for v in listed] == [3, 2, 1] and sum(v.active for v in listed) == 1


def test_too_few_labels_or_one_kind_of_label_is_a_clear_refusal(tmp_path):
    db = open_database(tmp_path / "edged.db")
    import_rows(db, make(2, seed=4))
    with pytest.raises(NotEnoughLabels, match="min_labels is 20"):
        learn(db, writer_for(db), SMALL, TAXONOMY)
    import_rows(db, make(30, seed=5, labels=["fault"]))
    with pytest.raises(NotEnoughLabels, match="two or more"):
        learn(db, writer_for(db), SMALL, ["fault"])


def test_automatic_training_is_due_after_retrain_after_new_labels(tmp_path):
    db = open_database(tmp_path / "edged.db")
    settings = SMALL.model_copy(update={"retrain_after": 50})
    import_rows(db, make(4, seed=6))
    assert not due(db, settings)  # 20 labels: enough to train, not 50 new ones
    import_rows(db, make(8, seed=7))
    assert due(db, settings)
    learn(db, writer_for(db), settings, TAXONOMY)
    assert not due(db, settings)
    assert not due(db, settings.model_copy(update={"retrain_after": 0}))


# -- labels ------------------------------------------------------------------------------------------------
def test_corrections_win_over_imports_and_labels_outside_the_taxonomy_are_left_out(tmp_path):
    db = open_database(tmp_path / "edged.db")
    with write_transaction(db):
        db.conn.execute(
            "INSERT INTO records (record_id, source, kind, text, flags, received_at, priority)"
            " VALUES ('r1', 'test', 'log', 'pump 3 noisy', '', 0, 0)"
        )
        label_store.add_imported(db, [("pump 3 noisy", "normal"), ("door ajar", "retired-label")])
        label_store.add_correction(db, "r1", "warning")
        label_store.add_correction(db, "r1", "fault")  # a newer correction of the same record replaces it
        label_store.add_correction(db, "no-such-record", "fault")  # nothing to copy: ignored
    rows, outside = label_store.load(db, TAXONOMY, limit=100)
    assert outside == 1
    assert [(r.text, r.label, r.source) for r in rows] == [("pump 3 noisy", "fault", "correction")]
    assert db.execute("SELECT count(*) FROM training_labels WHERE source = 'correction'").fetchone()[0] == 1


def test_importing_the_same_file_twice_changes_nothing(tmp_path):
    db = open_database(tmp_path / "edged.db")
    rows = make(5, seed=8)
    assert import_rows(db, rows) == (len(rows), 0)
    generation = label_store.generation(db)
    assert import_rows(db, rows) == (0, 0)
    assert label_store.generation(db) == generation
    assert import_rows(db, [(rows[0][0], "security" if rows[0][1] != "security" else "normal")]) == (0, 1)
    assert label_store.generation(db) != generation


def test_the_evaluation_holdout_and_the_version_holdout_are_independent_splits():
    texts = [t for t, _ in make(100, seed=9)]
    a = {t for t in texts if label_store.is_heldout(t, 20, salt="evaluation")}
    b = {t for t in texts if label_store.is_heldout(t, 20)}
    assert 0.1 < len(a) / len(texts) < 0.3 and 0.1 < len(b) / len(texts) < 0.3
    assert 0 < len(a & b) < len(a)  # overlapping by chance only


# -- retrieval -----------------------------------------------------------------------------------------------
def test_retrieval_returns_the_most_similar_labeled_texts_first():
    rows = make(20, seed=10)
    index = ExampleIndex([t for t, _ in rows], [l for _, l in rows], FeatureSpec(dim=4096))
    found = index.nearest("E-STOP pressed at station 9", 3)
    estops = [t for t, _ in rows if "e-stop" in t.lower()]
    assert len(estops) >= 2 and {e.text for e in found[:2]} <= set(estops)
    assert found[0].similarity >= found[1].similarity >= found[2].similarity > 0
    assert index.nearest("", 3) == [] and index.nearest("anything", 0) == []
    assert index.contains(rows[0][0].upper())


def test_confident_model_answers_become_labels_only_when_configured_and_never_triage_ones(tmp_path):
    db = open_database(tmp_path / "edged.db")
    with write_transaction(db):
        for i, (text, by, conf) in enumerate([("pump 1 leaking oil", "slm", 0.97), ("valve 2 stuck", "slm", 0.4),
                                              ("E-STOP pressed", "triage", 0.99)]):
            db.conn.execute(
                "INSERT INTO records (record_id, source, kind, text, flags, received_at) VALUES (?, 't', 'log', ?, '', 0)",
                (f"r{i}", text))
            db.conn.execute(
                "INSERT INTO results (record_id, label, confidence, path, analyzed_at, classified_by)"
                " VALUES (?, 'fault', ?, 'model', 0, ?)", (f"r{i}", conf, by))
        label_store.add_imported(db, make(8, seed=12))
    learn(db, writer_for(db), SMALL, TAXONOMY)  # off by default: no model answers taken
    assert db.execute("SELECT count(*) FROM training_labels WHERE source = 'model'").fetchone()[0] == 0
    learn(db, writer_for(db), SMALL.model_copy(update={"learn_from_model_confidence": 0.9}), TAXONOMY)
    assert db.execute("SELECT text FROM training_labels WHERE source = 'model'").fetchall() == [("pump 1 leaking oil",)]
