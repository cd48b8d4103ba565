"""Hostile single inputs: each closes one way a field, a payload or a request could hurt the store,
the page or the daemon. (The corpus-scale runs are in test_faults_mqtt.py and test_faults_web.py.)"""

from __future__ import annotations

import json
import logging

import pytest

from edged.analysis.analyzer import Analyzer
from edged.config.settings import MqttSettings
from edged.sources.mqtt.payload import parse_message
from edged.store.limits import MAX_MACHINE_CHARS, MAX_SOURCE_CHARS
from edged.store.records import FLAG_BOUNDED, NewRecord, Rejected
from edged.submit import incident_record
from edged.web.auth import LOGIN_FAILURES_ALLOWED, Auth, TokenInfo, TooManyAttempts
from edged.web.queries import parse_since
from edged.web.request import BadRequest, Request

SETTINGS = MqttSettings(url="mqtt://127.0.0.1", client_id="test")
LOGS = "factory/press-1/logs"


def parse(payload: bytes, topic: str = LOGS):
    return parse_message(topic, payload, SETTINGS, 1.0)


def test_an_empty_id_does_not_merge_messages():
    ids = {parse(json.dumps({"id": "", "text": f"text {i}"}).encode()).record_id for i in range(40)}
    assert len(ids) == 40
    blank = {parse(json.dumps({"id": "  ", "text": f"text {i}"}).encode()).record_id for i in range(5)}
    assert len(blank) == 5


def test_an_overlong_id_is_refused_not_cut():
    rej = parse(json.dumps({"id": "x" * 10_000, "text": "t"}).encode())
    assert isinstance(rej, Rejected) and rej.reason == "invalid id"


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_is_a_clean_rejection(depth):
    rej = parse(b"[" * depth + b"]" * depth)
    assert isinstance(rej, Rejected) and rej.reason == "malformed JSON"
    rej = parse(b'{"text": "x", "extra": ' + b"[" * depth + b"]" * depth + b"}")
    assert isinstance(rej, Rejected) and rej.reason == "malformed JSON"
    from edged.publish.escalation import Rejected as ReplyRejected, parse_reply

    with pytest.raises(ReplyRejected):
        parse_reply(b"[" * depth + b"]" * depth)
    req = Request("POST", "/api/incidents", {"content-type": "application/json"}, b"[" * depth + b"]" * depth, "")
    with pytest.raises(BadRequest):
        req.json()


def test_mqtt_fields_are_bounded_and_nul_free():
    rec = parse(json.dumps({"machine": "m" * 1_000_000, "text": "a\u0000b"}).encode())
    assert isinstance(rec, NewRecord)
    assert len(rec.machine) <= MAX_MACHINE_CHARS and "\0" not in rec.text and "\0" not in rec.machine
    assert FLAG_BOUNDED in rec.flags.split()
    rec = parse(json.dumps({"machine": "a\u0000b\nc", "text": "t"}).encode())
    assert rec.machine == "abc"
    long_topic = "factory/" + "t" * 70_000 + "/logs"
    rec = parse(b"plain line", topic=long_topic)
    assert len(rec.source) <= MAX_SOURCE_CHARS
    rej = parse(b"", topic=long_topic)
    assert isinstance(rej, Rejected) and len(rej.source) <= MAX_SOURCE_CHARS


def test_submitted_fields_are_bounded():
    with pytest.raises(ValueError):
        incident_record("x", machine="m" * 1000, via="cli")
    with pytest.raises(ValueError):
        incident_record("x" * 1_000_000, machine=None, via="cli")
    with pytest.raises(ValueError):
        incident_record("x", machine=None, via="cli", given_id="i" * 1000)
    assert "\0" not in incident_record("a\0b", machine="m\0n", via="cli").text


@pytest.mark.parametrize("value", ["1e999", "-1e999", "inf", "nan", "NaN", "Infinity"])
def test_since_must_be_a_finite_time(value):
    with pytest.raises(ValueError):
        parse_since(value)


def test_the_right_token_is_never_locked_out(monkeypatch):
    monkeypatch.setattr("edged.web.auth.LOCKED_DELAY_S", 0.0)
    auth = Auth(TokenInfo("right-token-0123456789", "test"))
    for _ in range(LOGIN_FAILURES_ALLOWED):
        assert auth.login("wrong-wrong-wrong", "10.0.0.1") is None
    with pytest.raises(TooManyAttempts):
        auth.login("wrong-wrong-wrong", "10.0.0.1")
    assert auth.login("right-token-0123456789", "10.0.0.1") is not None


def test_an_unreadable_file_is_reported_once(tmp_path, caplog):
    from edged.config.settings import LogsSettings
    from edged.sources.files.source import FileSource

    from edged.store.database import connect, open_database
    from edged.store.writer import StoreWriter

    db = open_database(tmp_path / "edged.db")
    source = FileSource(LogsSettings(paths=[str(tmp_path / "*.log")]), StoreWriter(db), connect(tmp_path / "edged.db"))
    # A file that vanishes (or turns unreadable) between the scan and the open, on every event.
    gone = str(tmp_path / "gone.log")
    with caplog.at_level(logging.WARNING, logger="edged.sources.files.source"):
        for _ in range(5):
            source._open_new(gone, gone, at_end=False)
    assert len([r for r in caplog.records if "cannot open" in r.getMessage()]) == 1
    assert source._counters["files.unreadable"] == 1
    db.close()


def test_digests_and_training_count_as_busy_for_the_watchdog(tmp_path):
    import time

    from edged.backends.fake import FakeBackend
    from edged.config import Settings
    from edged.publish.outbox import OutboxBuilder
    from edged.store.database import connect, open_database
    from edged.store.writer import StoreWriter, WriteBatch

    path = tmp_path / "edged.db"
    settings = Settings(store={"path": path}, analysis={"digest_interval_s": 60})
    writer = StoreWriter(open_database(path))
    writer.start()
    busy_during_calls = []
    analyzer = None

    def answer(request):
        props = request.schema["properties"]
        if "label" in props:
            return {"label": "normal", "severity": 0}
        if "summary" in props:
            busy_during_calls.append(analyzer.busy_since is not None)
            return {"summary": "a digest"}
        return {k: None for k in props}

    analyzer = Analyzer(settings.analysis, FakeBackend(answer=answer), writer, connect(path),
                        OutboxBuilder(settings.upstream))
    then = time.time() - 120
    writer.submit(WriteBatch(records=[NewRecord(f"d:{i}", "file:/x.log", "m", "log", f"line {i}", "", None, then)
                                      for i in range(5)])).result()
    while analyzer.run_once():
        pass
    assert analyzer.digest_if_due(now=time.monotonic()) >= 1
    writer.stop()
    assert busy_during_calls and all(busy_during_calls)
    assert analyzer.busy_since is None
