"""``edged learn`` and ``edged eval`` by path, as a user runs them (subprocesses, real store), and the
real daemon picking up a version trained while it runs. Texts are made up (tests/support)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, query, write_config
from tests.support.labeled_texts import make, write_csv
from tests.support.wait import wait_for

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def edged(tmp_path: Path, config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    return subprocess.run([sys.executable, "-m", "edged", *args, "--config", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def setup(tmp_path):
    config = tmp_path / "edged.toml"
    # One llama.cpp thread: on a busy 2-core box, two threads that wait on each other are far slower.
    config.write_text(
        f'[store]\npath = "{tmp_path / "edged.db"}"\n[model]\ndir = "{DEFAULT_MODEL.parent}"\n'
        '[backend]\ntype = "llama_cpp"\nthreads = 1\n[triage]\nhash_buckets = 4096\nconfidence_threshold = 0.7\n'
    )
    data = write_csv(tmp_path / "labeled.csv", make(40, seed=21), text_col="work order", label_col="kind")
    return tmp_path, config, data


def learn_with_holdout(tmp_path, config, data):
    r = edged(tmp_path, config, "learn", "--data", str(data), "--text-col", "work order", "--label-col", "kind",
              "--holdout", "0.25", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_learn_imports_holds_out_part_of_the_file_and_trains(setup):
    tmp_path, config, data = setup
    out = learn_with_holdout(tmp_path, config, data)
    imported, trained = out["import"], out["training"]
    held_file = Path(imported["held_out_file"])
    assert held_file == tmp_path / "labeled.holdout.csv"
    with held_file.open(newline="") as f:
        held = list(csv.DictReader(f))
    assert imported["rows"] == 200 and imported["held_out"] == len(held) and 20 <= len(held) <= 80
    assert imported["imported"] + imported["held_out"] == 200
    # Nothing held out is in the store: an evaluation on that file is on texts never trained on.
    stored = {t for (t,) in query(tmp_path / "edged.db", "SELECT text FROM training_labels")}
    assert not stored & {row["work order"] for row in held}
    assert trained["active"] and trained["version"] == 1 and trained["heldout_micro_f1"] >= 0.9
    assert trained["runtime"] == "ai-edge-litert"
    assert query(tmp_path / "edged.db", "SELECT version, active, train_size FROM triage_models") == [
        (1, 1, trained["train_size"])]
    status = edged(tmp_path, config, "status", "--json")
    assert status.returncode == 0, status.stderr
    triage = json.loads(status.stdout)["triage"]
    assert triage["active"]["version"] == 1 and triage["labels"] == {"import": trained["labels"]}
    # The same file again: no new labels, a second version that is not better stays inactive.
    again = edged(tmp_path, config, "learn", "--data", str(data), "--text-col", "work order", "--label-col", "kind",
                  "--holdout", "0.25")
    assert again.returncode == 0, again.stderr
    assert "0 new to the store" in again.stdout and "kept the active model" in again.stdout


def test_eval_reports_the_triage_path_without_loading_the_model(setup):
    tmp_path, config, data = setup
    learn_with_holdout(tmp_path, config, data)
    r = edged(tmp_path, config, "eval", "--data", str(tmp_path / "labeled.holdout.csv"), "--text-col", "work order",
              "--label-col", "kind", "--paths", "triage", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["paths"]) == {"triage"} and out["model"] is None and out["model_calls"] == 0
    assert out["paths"]["triage"]["micro_f1"] >= 0.8
    assert 0 < out["skipped_model_share"] <= 1 and out["triage"]["version"] == 1
    assert out["examples"]["eval_texts_in_store"] == 0


def test_eval_scores_all_three_paths_with_the_real_model(setup):
    tmp_path, config, data = setup
    learn_with_holdout(tmp_path, config, data)
    held = tmp_path / "labeled.holdout.csv"
    with held.open(newline="") as f:
        rows = [(r["work order"], r["kind"]) for r in csv.DictReader(f)][:12]
    rows.append(("zzqx 1234 ???", "normal"))  # nothing like any label: the model must decide it
    small = write_csv(tmp_path / "small.csv", rows, text_col="work order", label_col="kind")
    r = edged(tmp_path, config, "eval", "--data", str(small), "--text-col", "work order", "--label-col", "kind",
              "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for path in ("triage", "slm", "routed"):
        assert 0 <= out["paths"][path]["micro_f1"] <= 1 and out["paths"][path]["n"] == 13
    assert out["micro_f1"] == out["paths"]["routed"]["micro_f1"]
    decided = out["triage"]["decided"]
    # Routed rows that never reached the model: the classifier's confident ones, the level's and lexicon's, and
    # the unsure ones whose guess stood because the version's held-out figures did not favour the model.
    assert out["skipped_model_share"] == round(1 - out["routed_by"].get("slm", 0) / 13, 4) and decided < 13
    # The slm path asks about every row; routed asks again, among the classifier's candidates, where it is unsure.
    assert out["model_calls"] == 13 + (13 - decided) and out["errors"] == 0
    sent = out["triage"]["sent_to_model"]
    assert sent["n"] == 13 - decided and 0 <= sent["model_accuracy"] <= 1 and 0 <= sent["triage_accuracy"] <= 1
    assert [x["threshold"] for x in out["triage"]["by_threshold"]] == [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    assert out["examples"]["per_prompt"] == 8 and out["examples"]["index_size"] > 100
    # The human report names every path.
    text = edged(tmp_path, config, "eval", "--data", str(small), "--text-col", "work order", "--label-col", "kind",
                 "--paths", "triage,routed")
    assert text.returncode == 0, text.stderr
    assert "never reached the model" in text.stdout and "routed" in text.stdout


def test_learn_errors_name_what_to_fix(setup):
    tmp_path, config, _ = setup
    bad = write_csv(tmp_path / "bad.csv", [("pump seized", "Hydraulics"), ("door open", "safety")])
    r = edged(tmp_path, config, "learn", "--data", str(bad), "--text-col", "text", "--label-col", "label")
    assert r.returncode == 2 and "Hydraulics" in r.stderr and "[analysis] labels" in r.stderr
    r = edged(tmp_path, config, "learn", "--text-col", "text")
    assert r.returncode == 2 and "--data" in r.stderr
    r = edged(tmp_path, config, "learn", "--data", str(bad), "--text-col", "body", "--label-col", "label")
    assert r.returncode == 2 and "no column 'body'" in r.stderr
    few = write_csv(tmp_path / "few.csv", make(1, seed=22))
    r = edged(tmp_path, config, "learn", "--data", str(few), "--text-col", "text", "--label-col", "label")
    assert r.returncode == 1 and "min_labels is 30" in r.stdout


@pytest.mark.slow
def test_the_running_daemon_uses_a_model_trained_while_it_runs(tmp_path):
    config = write_config(tmp_path / "edged.toml", {
        "store": {"path": str(tmp_path / "edged.db")},
        "model": {"dir": str(DEFAULT_MODEL.parent)},
        "backend": {"type": "llama_cpp", "threads": 1},
        "logs": {"paths": []},
        "analysis": {"digest_interval_s": 0},
        "triage": {"hash_buckets": 4096, "confidence_threshold": 0.7},
    })
    daemon = Daemon(tmp_path, config)
    daemon.start()
    try:
        data = write_csv(tmp_path / "labeled.csv", make(40, seed=23))
        r = edged(tmp_path, config, "learn", "--data", str(data), "--text-col", "text", "--label-col", "label")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: "triage model version 1 loaded" in daemon.log_text(), timeout=30, what="model picked up")
        r = edged(tmp_path, config, "submit", "E-STOP pressed at station 17, light curtain interrupted",
                  "--machine", "press-2")
        assert r.returncode == 0, r.stderr
        rows = wait_for(lambda: query(tmp_path / "edged.db", "SELECT label, classified_by, triage_version FROM results"),
                        timeout=120, what="result")
        assert rows == [("safety", "triage", 1)]
    finally:
        daemon.terminate()
