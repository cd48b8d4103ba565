"""The one routing policy (edged.analysis.routing): a record's level and lexicon words, the triage
classifier, the model or the classifier's guess; and the per-version measurement that decides
whether unsure records go to the model (edged.triage.measure).

The language model is the scripted fake backend or a scripted judge: these tests prove who decides
and what the model is asked, not inference.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from edged.analysis.analyzer import Analyzer
from edged.analysis.evaluate import classification_metrics, evaluate, load_csv
from edged.analysis.evidence import Evidence, canonical_level, level_in_text
from edged.analysis.routing import LEVEL, LEXICON, TRIAGE, Subject, route
from edged.backends.fake import FakeBackend
from edged.config import ConfigError, load_config
from edged.config.settings import AnalysisSettings, TriageSettings
from edged.store.database import connect, open_database, write_transaction
from edged.store.inbox import Claimed
from edged.store.status import collect_status
from edged.store.writer import StoreWriter
from edged.triage import labels as label_store
from edged.triage import versions
from edged.triage.learn import learn
from edged.triage.router import Router
from edged.analysis.pipeline import Pipeline, ResultCache
from edged.analysis.templates import TemplateStore
from tests.support.labeled_texts import make

TAXONOMY = list(AnalysisSettings().labels)
EVIDENCE = Evidence(AnalysisSettings())


# -- evidence -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level, label, severity", [
    ("FATAL", "fault", 4), ("error", "fault", 3), ("ERR", "fault", 3), ("SEVERE", "fault", 3),
    ("WARNING", "warning", 2), ("Warn", "warning", 2), ("INFO", "normal", 0), ("notice", "normal", 0),
    ("E", "fault", 3), ("W", "warning", 2), ("I", "normal", 0), ("D", "normal", 0),  # Android letters, level field
    ("3", "fault", 3), (2, "fault", 4), (6, "normal", 0), (50, "fault", 3),  # syslog/journald, pino numbers
])
def test_a_level_field_maps_to_a_label_and_severity_through_the_table(level, label, severity):
    seen = EVIDENCE.of("something happened", level)
    assert (seen.level_label, seen.level_severity) == (label, severity)


def test_a_level_is_read_from_structured_text_only_never_from_free_words():
    assert level_in_text('{"level": "error", "msg": "disk full"}') == "error"
    assert level_in_text('{"PRIORITY": "4", "MESSAGE": "x"}') == "4" and canonical_level("4") == "WARN"
    assert level_in_text("<11>Nov 30 10:00:00 plc1 app: valve stuck") == 3  # facility 1, severity 3
    assert level_in_text("E spindle stopped") is None and level_in_text("ERROR spindle stopped") is None
    assert EVIDENCE.of("<14>Nov 30 10:00:00 plc1 app: cycle done").level_label == "normal"
    assert EVIDENCE.of("I am not a level").level_label is None


def test_lexicon_words_match_whole_words_in_any_case_with_plurals():
    assert EVIDENCE.of("E-STOP pressed at station 3").words == {"safety": "E-STOP"}
    assert EVIDENCE.of("two failed passwords for admin").words == {"security": "passwords"}
    assert EVIDENCE.of("Light  Curtain interrupted").words == {"safety": "Light  Curtain"}
    assert EVIDENCE.of("firewall rule updated; safeguard ok; password_hash").words == {}


def test_the_default_table_leaves_out_labels_another_taxonomy_lacks():
    custom = Evidence(AnalysisSettings(labels=["ok", "fault"]))
    assert custom.of("x", "FATAL").level_label == "fault" and custom.of("x", "INFO").level_label is None
    assert custom.of("E-STOP pressed").words == {}


# -- config ---------------------------------------------------------------------------------------------
def test_a_level_table_naming_an_unknown_label_stops_edged_naming_the_key_and_file(tmp_path):
    config = tmp_path / "edged.toml"
    config.write_text('[analysis]\nlabels = ["ok", "broken"]\n[analysis.levels]\nERROR = "fault 3"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(config)
    assert str(config) in str(exc.value) and "[analysis] levels" in str(exc.value)
    assert "ERROR" in str(exc.value) and "'fault' is not in [analysis] labels" in str(exc.value)
    config.write_text('[analysis.levels]\nERROR = "fault"\n')
    with pytest.raises(ConfigError, match="a label and a severity 0 to 5"):
        load_config(config)
    config.write_text('[analysis]\nlabels = ["ok", "broken"]\n[analysis.lexicon]\nsafety = ["fire"]\n')
    with pytest.raises(ConfigError, match=r"\[analysis\] lexicon: .*safety: not a label"):
        load_config(config)
    config.write_text('[analysis]\nlabels = ["ok", "broken"]\n[analysis.levels]\nERROR = "broken 3"\n')
    assert load_config(config).settings.analysis.levels == {"ERROR": "broken 3"}
    config.write_text('[analysis]\nlabels = ["ok", "broken"]\n')  # the built-in table with other labels: fine
    assert load_config(config).settings.analysis.levels["FATAL"] == "fault 4"


# -- who decides, without a classifier --------------------------------------------------------------------
def test_without_a_classifier_level_and_lexicon_decide_when_they_agree_and_the_model_otherwise():
    got = route([Subject("cycle done", "INFO"), Subject("E-STOP pressed", None), Subject("E-STOP pressed", "FATAL"),
                 Subject("pump noisy", None), Subject("login ok for maint", "INFO")], EVIDENCE, None,
                {"safety": 5, "security": 3})
    assert (got[0].label, got[0].severity, got[0].by, got[0].review) == ("normal", 0, LEVEL, False)
    assert (got[1].label, got[1].severity, got[1].by, got[1].review) == ("safety", 5, LEXICON, False)
    # The level says fault, the words say safety: the model chooses between the two (taxonomy order).
    assert got[2].ask_model and got[2].candidates == ["fault", "safety"]
    assert got[3].ask_model and got[3].candidates == []  # nothing known: the whole taxonomy
    assert got[4].ask_model and got[4].candidates == ["normal", "security"]


def claimed(i, text, level=None, kind="log"):
    header = {"format": "test", "level": level} if level else None
    return Claimed(i, f"r{i}", "test", "m", kind, text, "", 1, 0.0, 0, header, text if header else None)


def pipeline(tmp_path, backend, router=None):
    db = open_database(tmp_path / "edged.db")
    return Pipeline(AnalysisSettings(), backend, TemplateStore.load(db), ResultCache(lambda key: None), router,
                    evidence=EVIDENCE, severities=TriageSettings().severities)


def test_the_pipeline_takes_the_level_from_the_parsed_header_without_asking_the_model(tmp_path):
    backend = FakeBackend(answer=lambda req: {"label": req.schema["properties"]["label"]["enum"][0], "severity": 1}
                          if "label" in req.schema["properties"] else {k: None for k in req.schema["properties"]})
    out = pipeline(tmp_path, backend).analyze([
        claimed(1, "kernel: instruction cache parity error corrected", "INFO"),
        claimed(2, "rts panic! - stopping execution", "FATAL"),
        claimed(3, "guard door open on mill 4", "WARN"),
        claimed(4, "pump 7 noisy"),
    ])
    got = {r.record_id: (r.label, r.severity, r.classified_by, r.needs_review) for r in out.results}
    assert got["r1"] == ("normal", 0, "level", False) and got["r2"] == ("fault", 4, "level", False)
    assert got["r3"] == ("warning", 1, "slm", True)  # warning vs safety: the model chose (the fake: the first)
    assert got["r4"][2] == "slm"
    asked = [c.schema["properties"]["label"]["enum"] for c in backend.calls if "label" in c.schema["properties"]]
    assert asked == [["warning", "safety"], TAXONOMY]


# -- with a classifier: training, measuring, routing ------------------------------------------------------
UNSURE = TriageSettings(hash_buckets=1024, epochs=2, min_labels=20, heldout_percent=40, examples=0, candidates=0)


def trained(tmp_path, judge, settings=UNSURE, rows=None):
    db = open_database(tmp_path / "edged.db")
    with write_transaction(db):
        label_store.add_imported(db, rows or make(12, seed=5))

    def write(fn):
        with write_transaction(db):
            return fn(db)

    report = learn(db, write, settings, TAXONOMY, judge=judge)
    router = Router(settings, TAXONOMY)
    router.refresh(db)
    held = [x for x in label_store.load(db, TAXONOMY, settings.max_labels)[0]
            if label_store.is_heldout(x.text, settings.heldout_percent)]
    return db, report, router, held


def judge_from(gold: dict[str, str], right: bool):
    """A scripted model: the true label where ``right`` and it is a choice, else some other choice."""
    def judge(texts, choices, examples):
        out = []
        for text, labels in zip(texts, choices):
            labels = labels or TAXONOMY
            truth = gold[text]
            out.append(truth if right and truth in labels else next(x for x in labels if x != truth))
        return out
    return judge


def routed_and_triage_f1(router, held, judge):
    routes = route([Subject(x.text) for x in held], Evidence(AnalysisSettings(lexicon={}, levels={})), router)
    asked = [i for i, r in enumerate(routes) if r.ask_model]
    answers = dict(zip(asked, judge([held[i].text for i in asked], [routes[i].candidates for i in asked],
                                    [[] for _ in asked]))) if asked else {}
    routed = [answers[i] if r.ask_model else r.label for i, r in enumerate(routes)]
    gold = [x.label for x in held]
    triage = [p.label for p in router.model.predict([x.text for x in held])]
    return (classification_metrics(gold, routed, TAXONOMY)["micro_f1"],
            classification_metrics(gold, triage, TAXONOMY)["micro_f1"], len(asked))


@pytest.mark.parametrize("right", [True, False])
def test_on_a_versions_held_out_labels_routed_micro_f1_is_never_below_triage_only(tmp_path, right):
    rows = make(12, seed=5)
    gold = {label_store.same_text(t): label for t, label in rows}
    judge = judge_from({t: gold[label_store.same_text(t)] for t, _ in rows}, right)
    db, report, router, held = trained(tmp_path, judge, rows=rows)
    routing = versions.active(db)[0].routing
    assert routing == report.routing and routing["measured"] and routing["asked"] > 0
    status = collect_status(db, tmp_path / "edged.db")["triage"]["active"]["routing"]
    assert status == {k: routing[k] for k in ("route_to_model", "threshold", "reason")}
    routed, triage, asked = routed_and_triage_f1(router, held, judge)
    assert routed >= triage
    assert routing["triage_micro_f1"] == triage and routing["routed_micro_f1"] == routed
    if right:  # a model that knows better gets the unsure records, at the threshold that scored best
        assert routing["route_to_model"] and router.route_to_model and asked > 0 and routed > triage
        assert router.threshold == routing["threshold"] == max(
            routing["by_threshold"], key=lambda r: (r["routed_micro_f1"], -r["threshold"]))["threshold"]
    else:  # a model that is worse: the guess stands, for review
        assert not routing["route_to_model"] and asked == 0 and routed == triage
        r = route([Subject(held[0].text)], Evidence(AnalysisSettings(lexicon={}, levels={})), router)[0]
        assert r.by == TRIAGE and (r.review or r.confidence >= router.threshold)


def test_a_version_trained_without_the_model_is_not_measured_and_keeps_the_guess(tmp_path):
    db, report, router, held = trained(tmp_path, None)
    assert report.routing["measured"] is False and report.routing["threshold"] == 0.8
    routes = route([Subject(x.text) for x in held], Evidence(AnalysisSettings()), router)
    assert not any(r.ask_model for r in routes if r.by != LEXICON and r.by != LEVEL)
    unsure = [r for r in routes if r.unsure and r.by == TRIAGE]
    assert unsure and all(r.review and r.label == r.guess for r in unsure)
    # route_unsure = "model" sends them to the model all the same.
    model = Router(UNSURE.model_copy(update={"route_unsure": "model"}), TAXONOMY)
    model.refresh(db)
    assert all(r.ask_model for r in route([Subject(x.text) for x in held], EVIDENCE, model) if r.unsure
               and r.by is None) and model.route_to_model


def test_a_confident_classifier_overrides_the_level_table(tmp_path):
    settings = TriageSettings(hash_buckets=4096, epochs=20, min_labels=20, confidence_threshold=0.6, examples=0)
    db, report, router, held = trained(tmp_path, None, settings, rows=make(40, seed=11))
    got = route([Subject("E-STOP pressed at station 12", "INFO")], EVIDENCE, router)[0]
    assert (got.label, got.by) == ("safety", TRIAGE) and got.confidence >= 0.6


@contextmanager
def analyzer_answering_first_label(db, path, retrain_after: int):
    """An analyzer on ``db`` with a running writer, whose scripted model always answers the first label
    it is offered."""
    writer = StoreWriter(db)
    writer.start()
    try:
        backend = FakeBackend(answer=lambda req: {"label": req.schema["properties"]["label"]["enum"][0], "severity": 1})
        yield backend, Analyzer(AnalysisSettings(), backend, writer, connect(path), None,
                                UNSURE.model_copy(update={"retrain_after": retrain_after}))
    finally:
        writer.stop()


def test_the_analyzer_measures_a_version_it_trains_with_its_own_model(tmp_path):
    path = tmp_path / "edged.db"
    db = open_database(path)
    with write_transaction(db):
        label_store.add_imported(db, make(12, seed=5))
    with analyzer_answering_first_label(db, path, retrain_after=10) as (backend, analyzer):
        assert analyzer.learn_if_due(now=1e12)
        routing = versions.active(connect(path))[0].routing
        assert routing["measured"] and routing["asked"] == len(backend.calls) > 0


# -- edged eval measures what the daemon does ----------------------------------------------------------
def test_eval_routes_rows_as_the_analyzer_does_and_says_who_classified_them(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("text,level,truth\n"
                        "instruction cache parity error corrected,INFO,normal\n"
                        "rts panic! - stopping execution,FATAL,fault\n"
                        "E-STOP pressed at station 3,,safety\n"
                        "pump 7 noisy,,warning\n")
    data = load_csv(csv_path, "text", "truth", level_col="level")
    backend = FakeBackend(answer=lambda req: {"label": "warning", "severity": 2})
    r = evaluate(backend, AnalysisSettings(), data, paths=("routed",), severities=TriageSettings().severities)
    assert r["routed_by"] == {"level": 2, "lexicon": 1, "slm": 1} and r["model_calls"] == 1
    assert r["micro_f1"] == 1.0 and r["skipped_model_share"] == 0.75


def test_the_analyzer_measures_an_active_version_stored_without_routing_once(tmp_path):
    path = tmp_path / "edged.db"
    db, report, _, _ = trained(tmp_path, None)  # as `edged learn --no-model` leaves it
    assert not versions.active(db)[0].routing["measured"]
    with analyzer_answering_first_label(db, path, retrain_after=0) as (backend, analyzer):
        analyzer.follow_labels(now=0)
        assert not analyzer.learn_if_due(now=1e12)  # no training: only the measurement
        routing = versions.active(connect(path))[0].routing
        assert routing["measured"] and routing["asked"] == len(backend.calls) > 0
        assert analyzer.router.routing == routing
        calls = len(backend.calls)
        analyzer.learn_if_due(now=2e12)
        assert len(backend.calls) == calls  # measured once


def test_a_model_better_only_by_luck_does_not_get_the_unsure_records():
    import numpy as np

    from edged.triage.measure import measure, sign_test

    assert sign_test(1, 0) == 0.5 and sign_test(5, 0) == 1 / 32 and sign_test(0, 0) == 1.0
    probs = np.array([[0.45, 0.55], [0.48, 0.52], [0.9, 0.1]])
    texts, gold = ["a", "b", "c"], ["x", "x", "x"]  # the guess is wrong on a and b ("y")

    def judge(answers):
        return lambda t, c, e: [answers[x] for x in t]

    lucky = measure(probs, ["x", "y"], texts, gold, ["x", "y"], judge=judge({"a": "x", "b": "y"}), sample=10, k=0,
                    examples_for=lambda t: [], threshold=0.6)
    assert not lucky["route_to_model"] and "only by chance" in lucky["reason"]
    assert lucky["by_threshold"][0]["model_right"] == 1 and lucky["by_threshold"][0]["guess_right"] == 0
