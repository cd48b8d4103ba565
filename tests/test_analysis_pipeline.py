"""Pipeline logic with the scripted backend (fake): which records reach the model, what is reused.

These tests prove the routing and bookkeeping, not inference; the real model is tested elsewhere.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from edged.analysis.analyzer import Analyzer
from edged.analysis.tasks import CLASSIFY, EXTRACT, SUMMARIZE
from edged.backends.base import BackendError
from edged.backends.fake import FakeBackend
from edged.config.settings import AnalysisSettings
from edged.store.database import connect, open_database
from edged.store.writer import StoreWriter, WriteBatch
from edged.submit import incident_record
from edged.store.records import NewRecord


def scripted(request):
    """Answers like a model would: the label depends on the text; values copied from it."""
    text = request.user
    if "label" in request.schema["properties"]:
        return {"label": "fault" if "ERROR" in text else "normal", "severity": 3 if "ERROR" in text else 0}
    if "summary" in request.schema["properties"]:
        return {"summary": "spindle overheated"}
    fields = {k: None for k in request.schema["properties"]}
    if "overtemp" in text:
        words = text.split()
        fields["component"] = "spindle " + words[words.index("spindle") + 1]
        fields["value"] = float(words[-1].rstrip("C"))
        fields["unit"] = "C"
    return {k: v for k, v in fields.items() if k in request.schema["properties"]}  # as a grammar would


@pytest.fixture
def env(tmp_path):
    path = tmp_path / "edged.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    backend = FakeBackend(answer=scripted)
    settings = AnalysisSettings(batch_size=50)
    analyzer = Analyzer(settings, backend, writer, connect(path))
    yield writer, backend, analyzer, path
    writer.stop()


def put(writer, *texts, kind="log"):
    records = [
        NewRecord(f"t:{kind}:{i}:{t}", "test", "cnc-1", kind, t, "", None, 0.0, 10 if kind == "incident" else 0)
        for i, t in enumerate(texts)
    ]
    writer.submit(WriteBatch(records=records)).result()


def rows(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_template_is_asked_once_and_line_values_come_from_its_parameters(env):
    writer, backend, analyzer, path = env
    put(writer, *[f"2026-11-27 10:00:0{i} ERROR spindle {i} overtemp {80 + i}C" for i in range(5)])
    assert analyzer.run_once() == 5
    tasks = [r.schema["properties"].keys() for r in backend.calls]
    # The ERROR level gives the label (no classify call); one extract for the one template.
    assert len(backend.calls) == 1
    results = rows(path, "SELECT label, path, fields FROM results ORDER BY id")
    assert [r[0] for r in results] == ["fault"] * 5
    assert [r[1] for r in results] == ["model"] + ["template_cache"] * 4
    values = [json.loads(r[2])["value"] for r in results]
    assert values == [80.0, 81.0, 82.0, 83.0, 84.0]  # per-line values, not the first line's
    put(writer, "2026-11-27 11:00:00 ERROR spindle 9 overtemp 99C")
    analyzer.run_once()
    assert len(backend.calls) == 1  # a later batch reuses the stored template answer
    assert rows(path, "SELECT count(*) FROM records WHERE status = 'done'") == [(6,)]
    assert tasks


def test_incidents_always_reach_the_model_with_all_three_tasks(env):
    writer, backend, analyzer, path = env
    record = incident_record("spindle 2 overheated, smoke seen", machine="cnc-1", via="test")
    writer.submit(WriteBatch(records=[record, record._replace(record_id="s:again")])).result()
    analyzer.run_once()
    asked = [next(iter(r.schema["properties"])) for r in backend.calls]
    # grouped by task; the machine is known from the record, so extraction asks from component on
    assert asked == ["label", "label", "component", "component", "summary", "summary"]
    assert rows(path, "SELECT summary FROM results") == [("spindle overheated",)] * 2


def test_the_model_classifies_level_component_and_message_not_the_header(env):
    writer, backend, analyzer, path = env
    analyzer.pipeline.settings = analyzer.pipeline.settings.model_copy(update={"levels": {}})
    analyzer.pipeline.evidence = type(analyzer.pipeline.evidence)(analyzer.pipeline.settings)
    put(writer, "2026-11-27 10:00:01,123 ERROR [main] spindle.Drive: spindle 2 overtemp 91C")
    analyzer.run_once()
    classify = [c for c in backend.calls if "label" in c.schema["properties"]]
    assert classify, "no classify call"
    assert classify[0].user.endswith(":\nERROR spindle.Drive: spindle 2 overtemp 91C"), classify[0].user
    assert "10:00:01" not in classify[0].user


def test_exact_repeats_hit_the_cache(env):
    writer, backend, analyzer, path = env
    put(writer, "pump P-7 pressure ok")
    analyzer.run_once()
    calls = len(backend.calls)
    writer.submit(WriteBatch(records=[NewRecord("t:again", "test", None, "log", "pump P-7 pressure ok", "", None, 0.0)])).result()
    analyzer.run_once()
    assert len(backend.calls) == calls
    assert rows(path, "SELECT path FROM results ORDER BY id") == [("model",), ("exact_cache",)]


def test_an_answer_cached_under_other_analysis_settings_is_not_served(env):
    writer, backend, analyzer, path = env
    put(writer, "pump P-7 pressure ok")
    analyzer.run_once()
    calls = len(backend.calls)
    # Same model, same prompts, the dump-line rule switched off: the stored answer was computed with it on.
    changed = analyzer.settings.model_copy(update={"dump_lines": False})
    again = Analyzer(changed, backend, writer, connect(path))
    writer.submit(WriteBatch(records=[NewRecord("t:again", "test", None, "log", "pump P-7 pressure ok", "", None, 0.0)])).result()
    again.run_once()
    assert len(backend.calls) > calls
    assert rows(path, "SELECT path FROM results ORDER BY id") == [("model",), ("model",)]


def test_model_errors_are_retried_then_parked_with_the_error(env):
    writer, backend, analyzer, path = env
    backend.fail_next = 100
    put(writer, "ERROR something odd")
    for attempt in range(analyzer.settings.max_attempts):
        assert analyzer.run_once() == 1
        if attempt < analyzer.settings.max_attempts - 1:
            assert analyzer.run_once() == 0  # a failed record waits before its next try
            # Let the back-off pass (as if 5, 10 ... seconds went by).
            writer.call(lambda db: db.execute("UPDATE records SET lease_until = 0")).result()
    assert rows(path, "SELECT status, attempts, error FROM records") == [
        ("parked", 3, "classify: scripted failure")
    ]
    assert analyzer.run_once() == 0  # parked records are never handed out again


def test_templates_survive_a_restart(env, tmp_path):
    writer, backend, analyzer, path = env
    put(writer, "valve V1 opened after 3 s", "valve V2 opened after 4 s")
    analyzer.run_once()
    calls = len(backend.calls)
    again = Analyzer(analyzer.settings, backend, writer, connect(path))  # a new process would do this
    writer.submit(WriteBatch(records=[NewRecord("t:later", "test", None, "log", "valve V3 opened after 5 s", "", None, 0.0)])).result()
    again.run_once()
    assert len(backend.calls) == calls
    assert rows(path, "SELECT count(DISTINCT template_id) FROM results") == [(1,)]


def test_claims_take_incidents_first_and_expired_leases_return(env):
    writer, backend, analyzer, path = env
    put(writer, "routine line")
    writer.submit(WriteBatch(records=[incident_record("fire alarm", machine=None, via="test")])).result()
    from edged.store import inbox

    claimed = writer.call(lambda db: inbox.claim_batch(db, owner="a", limit=1, lease_s=-1, max_attempts=3)).result()
    assert claimed[0].kind == "incident"
    again = writer.call(lambda db: inbox.claim_batch(db, owner="b", limit=5, lease_s=60, max_attempts=3)).result()
    assert {c.kind for c in again} == {"incident", "log"}  # the expired lease came back


def test_digest_summarizes_a_sources_recent_templates(env):
    writer, backend, analyzer, path = env
    put(writer, *[f"2026-11-27 10:00:0{i} ERROR spindle {i} overtemp {80 + i}C" for i in range(3)], "door closed")
    analyzer.run_once()
    analyzer.settings = analyzer.settings.model_copy(update={"digest_interval_s": 1e-9})
    assert analyzer.digest_if_due() == 1
    digest_request = backend.calls[-1]
    assert "3x fault (severity 3)" in digest_request.user  # templates with counts, not raw lines
    assert rows(path, "SELECT source, records, summary FROM digests") == [("test", 4, "spindle overheated")]
    assert analyzer.digest_if_due(now=float("inf")) == 0  # nothing new since the last digest


def test_a_json_payloads_header_keys_are_the_lines_header(env):
    """level/component/ts of a JSON MQTT payload key its template and fill the result's header and fields."""
    from edged.sources.mqtt.payload import parse_message
    from edged.config.settings import MqttSettings

    writer, backend, analyzer, path = env
    mqtt = MqttSettings(url="mqtt://127.0.0.1", client_id="test")
    payloads = [
        {"text": "spindle 2 overtemp 91C", "level": "ERROR", "component": "drive", "ts": "2026-11-27T10:00:01Z"},
        {"text": "spindle 3 overtemp 92C", "level": "ERROR", "component": "drive", "ts": "2026-11-27T10:00:02Z"},
        {"text": "spindle 2 overtemp 91C", "level": "INFO", "component": "drive", "ts": "2026-11-27T10:00:03Z"},
        # the text's own header is split off too; the payload's keys win where both say something
        {"text": "2026-11-27 10:00:04 WARN spindle 4 overtemp 93C", "level": "ERROR", "component": "drive"},
    ]
    records = [parse_message("plant/cnc-1/logs", json.dumps(p).encode(), mqtt, 0.0) for p in payloads]
    writer.submit(WriteBatch(records=records)).result()
    assert analyzer.run_once() == 4
    results = rows(path, "SELECT r.header, r.template_id, r.fields FROM results r JOIN records c USING (record_id) ORDER BY c.id")
    headers = [json.loads(h) for h, _, _ in results]
    assert headers[0] == {"format": "json", "time": "2026-11-27T10:00:01Z", "level": "ERROR", "component": "drive"}
    assert headers[3]["level"] == "ERROR" and headers[3]["time"] == "2026-11-27 10:00:04"
    tids = [t for _, t, _ in results]
    assert tids[0] == tids[1] == tids[3] != tids[2]  # an INFO line never shares an ERROR line's template
    fields = json.loads(results[0][2])
    assert fields["event_time"] == "2026-11-27T10:00:01+00:00"
    assert fields["level"] == "ERROR"
    assert rows(path, "SELECT level, component FROM templates ORDER BY level") == [("ERROR", "drive"), ("INFO", "drive")]


def test_an_auto_detected_format_survives_a_restart(env):
    writer, backend, analyzer, path = env
    put(writer, *[f"2026-11-27 10:00:{i:02d} ERROR spindle {i} overtemp {80 + i}C" for i in range(40)])
    while analyzer.run_once():
        pass
    assert analyzer.pipeline.headers.stream("test").choice.name == "iso_level"
    again = Analyzer(analyzer.settings, backend, writer, connect(path))  # a new process would do this
    stream = again.pipeline.headers.stream("test")
    assert stream.settled and stream.choice.name == "iso_level"  # not detected again from the next lines
    # Lines of another layout now are lines its format does not parse (counted), not a new detection.
    writer.submit(WriteBatch(records=[
        NewRecord(f"t:sys:{i}", "test", None, "log", f"Dec 10 06:55:{i:02d} box sshd[{i}]: session opened", "", None, 0.0)
        for i in range(3)
    ])).result()
    again.run_once()
    assert rows(path, "SELECT value FROM counters WHERE name = 'files.unparsed_lines'") == [(3,)]


def _digest_env(env, summaries):
    """The env's analyzer with a digest due, its backend answering digests with ``summaries`` in turn."""
    writer, backend, analyzer, path = env
    put(writer, *[f"2026-11-27 10:00:0{i} ERROR spindle {i} overtemp {80 + i}C" for i in range(3)], "door closed")
    analyzer.run_once()
    analyzer.settings = analyzer.settings.model_copy(update={"digest_interval_s": 1e-9})
    answers = iter(summaries)

    def answer(request):
        if "Recent log lines" in request.user:
            return {"summary": next(answers)}
        return scripted(request)

    backend.answer = answer
    calls = len(backend.calls)
    assert analyzer.digest_if_due() == 1
    return [c.user for c in backend.calls[calls:]], rows(path, "SELECT summary, review_reason FROM digests")


def test_a_digest_that_names_what_its_input_does_not_is_generated_again(env):
    asked, stored = _digest_env(env, ["spindle 7 overheated at 95C", "3 spindle overtemp faults, door closed once"])
    assert len(asked) == 2 and "no date, number or code that is not in it" in asked[1]
    assert stored == [("3 spindle overtemp faults, door closed once", None)]  # 3 is in the input: 3x fault


def test_a_digest_that_fails_twice_is_cut_and_kept_for_review(env):
    asked, stored = _digest_env(env, ["spindle 7 overheated at 95C", "spindle overtemp on machine 12 at 95C"])
    assert len(asked) == 2
    assert stored == [("spindle overtemp on machine", "summary cut before what the report does not say: 12, 95C")]
    counted = rows(env[3], "SELECT name, value FROM counters WHERE name LIKE 'analysis.digest_checks.%' ORDER BY name")
    assert counted == [("analysis.digest_checks.failed_check", 1), ("analysis.digest_checks.regenerated", 1)]


def test_a_digest_with_nothing_left_after_the_cut_is_the_inputs_first_line(env):
    _, stored = _digest_env(env, ["E-77 at 95C", "E-77 again"])
    assert stored == [("3x fault (severity 3): spindle <*> overtemp <*>C", stored[0][1])]
    assert stored[0][1].startswith("the report's first sentence stands in") and "E-77" in stored[0][1]


def test_a_repeating_digest_is_cut_at_the_repetition(env):
    asked, stored = _digest_env(env, ["spindle overtemp again and spindle overtemp again and spindle overtemp again"])
    assert len(asked) == 1
    assert stored == [("spindle overtemp again and", None)]


@pytest.mark.parametrize("cut", [False, True])
def test_extraction_asks_the_backend_to_cut_ungrounded_values_only_when_configured(env, cut):
    writer, backend, analyzer, path = env
    analyzer.pipeline.settings = analyzer.pipeline.settings.model_copy(update={"cut_ungrounded_values": cut})
    put(writer, "2026-11-27 10:00:01 ERROR spindle 2 overtemp 91C")
    analyzer.run_once()
    extract = [c for c in backend.calls if "label" not in c.schema["properties"] and "summary" not in c.schema["properties"]]
    assert extract, "no extraction call"
    check = extract[0].string_check
    assert (check is not None) == cut
    if cut:  # the grounding rule, applied to what has been written of a value so far
        assert check("spindle") and check("overt") and not check("spindle 7")
