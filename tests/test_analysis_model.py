"""Analysis with the real default model (SmolLM2-135M-Instruct, llama.cpp): few tests, kept small.

They prove that inference works end to end: every answer parses and obeys its schema, a repeated
template does not reach the model again (calls counted at the backend), templates survive a
restart, and the daemon analyzes what it ingests. A missing or corrupt model is a clear error.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from edged.analysis.analyzer import Analyzer
from edged.analysis.tasks import build_specs, extract_schema, schema_problems
from edged.app import build_backend
from edged.backends.base import Backend, Completion, CompletionRequest
from edged.config.settings import AnalysisSettings, ModelSettings, Settings
from edged.models.resolve import resolve_model
from edged.store.database import connect, open_database
from edged.store.records import NewRecord
from edged.store.writer import StoreWriter, WriteBatch
from tests.support.daemon import REPO, Daemon, query, write_config
from tests.support.wait import wait_for

MODEL_DIR = REPO / "models"

# Ten formats a plant really produces, several lines each: ~50 lines from 13 templates.
LINES = (
    [f"2026-11-27 10:{i:02d}:01 ERROR spindle {i % 3 + 1} overtemp {88 + i}.5C" for i in range(6)]
    + [f"Nov 27 10:{i:02d}:12 plc-04 modbus[812]: read timeout on register 40{i}01, retry {i}" for i in range(5)]
    + [f'{{"level":"warn","msg":"coolant level low","pct":{20 - i},"machine":"cnc-07"}}' for i in range(4)]
    + [f"ts=2026-11-27T10:0{i}:00Z level=info msg=\"cycle complete\" part={4410 + i} duration_s={31 + i}.2" for i in range(6)]
    + [f"[robot-2] E-STOP pressed at station {i}, light curtain interrupted" for i in range(3)]
    + [f"sshd[{900 + i}]: Failed password for admin from 10.0.0.{i} port 22 ssh2" for i in range(4)]
    + [f"2026-11-27 10:1{i}:00,123 INFO  [main] o.a.Conveyor - belt speed {1.2 + i / 10:.1f} m/s" for i in range(5)]
    + [f"ALARM 7{i}12 hydraulic pressure below limit: {95 - i} bar" for i in range(4)]
    + [f"press-3;2026-11-27 10:2{i}:00;TEMP;{60 + i};C" for i in range(4)]
    + [f"WARNING: vibration on bearing B{i} at {4 + i}.1 mm/s exceeds 4.0" for i in range(3)]
    + ["Traceback (most recent call last): File \"plc.py\", line 3, in poll TimeoutError: no answer"]
    + [f"door {i} opened by badge 55{i}1" for i in range(3)]
    + ["operator note: left cylinder leaking oil, machine stopped, please check seals"]
)


class Counting(Backend):
    """The real backend, with every call counted."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.calls, self.classify_calls = inner, 0, 0
        self.name, self.model_name, self.model_sha256 = inner.name, inner.model_name, inner.model_sha256

    def complete(self, request: CompletionRequest) -> Completion:
        self.calls += 1
        self.classify_calls += "label" in request.schema.get("properties", {})
        return self.inner.complete(request)


@pytest.fixture(scope="module")
def real_backend():
    settings = Settings(model=ModelSettings(dir=MODEL_DIR))
    if not (MODEL_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf").exists():
        pytest.fail("the default model is missing: run `make model` (make test does it)", pytrace=False)
    backend = build_backend(settings)
    yield backend
    backend.close()


def _put(writer: StoreWriter, texts: list[str], prefix: str) -> None:
    records = [NewRecord(f"{prefix}:{i}", "test", None, "log", t, "", None, 0.0) for i, t in enumerate(texts)]
    writer.submit(WriteBatch(records=records)).result()


def test_every_answer_obeys_its_schema_and_templates_are_asked_once(tmp_path, real_backend):
    path = tmp_path / "edged.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    counting = Counting(real_backend)
    settings = AnalysisSettings(batch_size=64, digest_interval_s=0)
    try:
        analyzer = Analyzer(settings, counting, writer, connect(path))
        _put(writer, LINES, "a")
        while analyzer.run_once():
            pass
        templates = query(path, "SELECT count(DISTINCT template_id) FROM results WHERE template_id IS NOT NULL")[0][0]
        # At most one classify (none where the level or lexicon decided) and one extract per template.
        assert counting.classify_calls <= templates and counting.calls - counting.classify_calls <= templates
        assert templates < len(LINES) / 2
        specs = build_specs(settings)
        rows = query(path, "SELECT r.text, s.label, s.severity, s.fields, s.confidence FROM results s JOIN records r USING (record_id)")
        assert len(rows) == len(LINES) and query(path, "SELECT count(*) FROM records WHERE status != 'done'") == [(0,)]
        for text, label, severity, fields, confidence in rows:
            assert not schema_problems(specs["classify"].schema, {"label": label, "severity": severity}), text
            # every configured field, from structure or the model (event_time and level never from it)
            everything = extract_schema(settings, list(settings.extract_fields))
            assert not schema_problems(everything, json.loads(fields)), text
            assert confidence is None or 0 <= confidence <= 1
        # A later line of a known template, even after a restart, does not reach the model.
        calls = counting.calls
        restarted = Analyzer(settings, counting, writer, connect(path))
        _put(writer, ["2026-11-27 11:59:01 ERROR spindle 2 overtemp 97.5C"], "b")
        restarted.run_once()
        assert counting.calls == calls
        (fields,) = query(path, "SELECT s.fields FROM results s WHERE record_id = 'b:0'")[0]
        print(f"{len(LINES)} lines, {templates} templates, {calls} model calls; e.g. {fields}")
    finally:
        writer.stop()


def test_an_incident_report_gets_a_summary(tmp_path, real_backend):
    path = tmp_path / "edged.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    try:
        analyzer = Analyzer(AnalysisSettings(digest_interval_s=0), real_backend, writer, connect(path))
        writer.submit(WriteBatch(records=[NewRecord(
            "s:1", "submit:test", "press-3", "incident",
            "Hydraulic oil leaking from the left cylinder of press 3, pressure dropped to 80 bar, machine stopped.",
            "", None, 0.0, 10)])).result()
        analyzer.run_once()
        (summary, label) = query(path, "SELECT summary, label FROM results")[0]
        assert summary and len(summary) <= AnalysisSettings().summary_max_chars
        assert label in AnalysisSettings().labels
    finally:
        writer.stop()


def test_the_daemon_analyzes_what_it_ingests_with_the_default_model(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    db = tmp_path / "edged.db"
    config = write_config(tmp_path / "edged.toml", {
        "store": {"path": str(db)},
        "logs": {"paths": [str(logs / "*.log")], "rescan_interval_s": 0.5},
        "model": {"dir": str(MODEL_DIR)},
        "analysis": {"digest_interval_s": 0},
    })
    daemon = Daemon(tmp_path, config)
    daemon.start()
    try:
        (logs / "cnc-07.log").write_text("2026-11-27 10:00:01 ERROR spindle 2 overtemp 91.5C\ncycle complete part 4411\n")
        wait_for(lambda: query(db, "SELECT count(*) FROM results")[0][0] == 2, timeout=120, interval=0.5,
                 what="both lines analyzed")
        status = json.loads(subprocess.run(
            [sys.executable, "-m", "edged", "status", "--json", "--config", str(config)],
            cwd=tmp_path, capture_output=True, text=True, check=True).stdout)
        # The ERROR line's level gives its label, so only its extraction asks the model; the other line
        # is classified and extracted: 3 calls for 2 templates.
        assert status["analysis"]["model_calls"] == 3 and status["analysis"]["templates"] == 2
        assert daemon.terminate() == 0
    finally:
        if daemon.alive():
            daemon.kill9()
    assert "SmolLM2-135M-Instruct.Q4_1.gguf via llama_cpp" in daemon.log_text()


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_a_missing_or_corrupt_model_is_a_clear_error_at_start(tmp_path, problem):
    model = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if problem == "corrupt":
        model.write_bytes(b"this is not a model" * 100)
    config = write_config(tmp_path / "edged.toml", {
        "store": {"path": str(tmp_path / "edged.db")},
        "model": {"dir": str(tmp_path)},
    })
    run = subprocess.run([sys.executable, "-m", "edged", "run", "--config", str(config)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert str(model) in run.stderr
    assert ("make model" in run.stderr) if problem == "missing" else ("GGUF" in run.stderr)
    assert not (tmp_path / "edged.db").exists()  # refused before anything started
