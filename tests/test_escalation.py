"""Escalation ([upstream] escalation) against a real mosquitto and a real SQLite file: a result
flagged for review goes to the escalation topic, a scripted responder replies with its
correlation_id, the refined result replaces the stored one and is published again, and the reply
becomes a training label (source teacher). Replies arrive in a persistent session: one sent while
the box is offline arrives when it is back."""

from __future__ import annotations

import json
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edged.analysis.analyzer import store_outcome
from edged.analysis.pipeline import BatchOutcome
from edged.config.settings import UpstreamSettings
from edged.config.settings import DEFAULT_LABELS
from edged.publish.escalation import EscalationReplies, Rejected, parse_reply
from edged.publish.outbox import OutboxBuilder
from edged.publish.publisher import Publisher
from edged.publish.replies import ReplySubscriber
from edged.store.database import connect, open_database
from edged.store.inbox import Claimed, ResultRow
from edged.store.records import NewRecord
from edged.store.writer import StoreWriter, WriteBatch
from tests.support.upstream import Subscriber, load_schema, schema_errors
from tests.support.wait import wait_for

DEADLINE_S = 15.0
ESCALATION = "edged/plant-1/box-1/escalation"
RESPONSE = "edged/plant-1/box-1/escalation/response"
RESULTS = "edged/plant-1/box-1/results/#"


def upstream(url: str, **overrides) -> UpstreamSettings:
    values = dict(
        url=url, client_id="edged-test-up", site="plant-1", node="box-1",
        keepalive_s=5, reconnect_min_s=0.05, reconnect_max_s=0.5, birth=False,
    )
    values.update(overrides)
    return UpstreamSettings(**values)


def store_one(writer: StoreWriter, builder: OutboxBuilder, record_id: str, needs_review: bool) -> None:
    """One record and its result, stored the way the analyzer stores them (store_outcome)."""
    writer.submit(
        WriteBatch(records=[NewRecord(record_id, "file:/var/log/cnc.log", "cnc-1", "log", "spindle 7 odd noise", "", None, 1.0)])
    ).result()
    claimed = Claimed(1, record_id, "file:/var/log/cnc.log", "cnc-1", "log", "spindle 7 odd noise", "", 1, 1.0, 0)
    result = ResultRow(
        record_id=record_id, template_id=1, label="warning", severity=1, confidence=0.2, fields={"machine": "cnc-1"},
        summary="odd noise", needs_review=needs_review, path="model", model="fake", model_sha256="ab" * 32,
        backend="fake", prompt_version="2", model_calls=1, latency_ms=12.0,
    )
    outcome = BatchOutcome([result], [], {}, {}, None, 1, {"template": 0, "exact": 0}, {record_id: claimed})
    writer.call(lambda db: store_outcome(db, outcome, 3, builder)).result()


class Responder:
    """The upstream side: answers each escalation with label "fault", quoting its correlation_id."""

    def __init__(self, host: str, port: int) -> None:
        self.escalations: list[dict] = []
        self.subscribed = False
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="responder", protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(ESCALATION, 1)
        self.client.on_subscribe = lambda *a: setattr(self, "subscribed", True)
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        doc = json.loads(msg.payload)
        self.escalations.append(doc)
        # Bad replies first: each rejected and counted, none stored as a label, nothing breaks.
        cid = doc["correlation_id"]
        client.publish(doc["respond_to"], b"not json", qos=1)
        client.publish(doc["respond_to"], json.dumps({"correlation_id": "res:nope", "label": "fault"}), qos=1)
        client.publish(doc["respond_to"], json.dumps({"correlation_id": cid, "label": "explosion"}), qos=1)
        client.publish(doc["respond_to"], json.dumps({"correlation_id": cid, "label": "fault", "severity": 9}), qos=1)
        reply = {"correlation_id": cid, "label": "fault", "severity": 3, "model": "big-upstream"}
        client.publish(doc["respond_to"], json.dumps(reply), qos=1)
        client.publish(doc["respond_to"], json.dumps(reply), qos=1)  # answered twice: applied once

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def start_box(settings: UpstreamSettings, writer: StoreWriter, path: Path) -> tuple[Publisher, ReplySubscriber]:
    """The publisher and the reply subscriber wired as the daemon wires them (edged.app)."""
    holder: list[Publisher] = []
    replies = EscalationReplies(OutboxBuilder(settings), writer, lambda: holder and holder[0].wake(), DEFAULT_LABELS)
    subscriber = ReplySubscriber(settings, replies)
    publisher = Publisher(settings, writer, connect(path), send_gate=subscriber.subscribed_once.is_set)
    holder.append(publisher)
    subscriber.on_subscribed = publisher.gate_opened
    subscriber.start()
    publisher.start()
    return publisher, subscriber


def counters(reader) -> dict[str, int]:
    return dict(reader.execute("SELECT name, value FROM counters WHERE name LIKE 'escalation.%'").fetchall())


def test_a_result_for_review_is_escalated_refined_and_published_again(tmp_path: Path, mosquitto):
    path = tmp_path / "edged.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    reader = connect(path)
    settings = upstream(mosquitto.url, escalation=True)
    sub = Subscriber(mosquitto.host, mosquitto.port, [RESULTS])
    responder = Responder(mosquitto.host, mosquitto.port)
    publisher = subscriber = None
    try:
        wait_for(sub.subscribed.is_set, DEADLINE_S, what="subscriber subscribed")
        wait_for(lambda: responder.subscribed, DEADLINE_S, what="responder subscribed")
        store_one(writer, OutboxBuilder(settings), "rec:1", needs_review=True)
        kinds = [r[0] for r in reader.execute("SELECT kind FROM outbox ORDER BY id").fetchall()]
        assert kinds == ["log", "escalation"]

        publisher, subscriber = start_box(settings, writer, path)

        def refined_messages():
            return [
                json.loads(m.payload) for m in list(sub.messages)
                if json.loads(m.payload)["result_id"].endswith(":refined")
            ]

        refined = wait_for(refined_messages, DEADLINE_S, what="the refined result")
        doc = refined[0]
        original = json.loads(reader.execute("SELECT payload FROM outbox WHERE kind = 'log'").fetchone()[0])
        assert doc["result_id"] == original["result_id"] + ":refined"
        assert doc["label"] == "fault" and doc["severity"] == 3 and doc["refined"] is True
        assert doc["path"] == "refined_upstream" and doc["needs_review"] is False
        assert doc["model"]["name"] == "big-upstream"
        assert doc["summary"] == "odd noise" and doc["fields"] == {"machine": "cnc-1"}
        assert schema_errors(doc, load_schema()) == []

        escalation = responder.escalations[0]
        assert escalation["correlation_id"] == original["result_id"]
        assert escalation["respond_to"] == RESPONSE
        assert escalation["result_id"].startswith("esc:") and escalation["needs_review"] is True

        row = reader.execute("SELECT label, severity, needs_review, path FROM results WHERE record_id = 'rec:1'").fetchone()
        assert row == ("fault", 3, 0, "refined_upstream")
        expected = {
            "escalation.escalated": 1, "escalation.refined": 1, "escalation.duplicates": 1,
            "escalation.rejected": 4, "escalation.rejected.not_json": 1,
            "escalation.rejected.unknown_correlation_id": 1, "escalation.rejected.label_outside_taxonomy": 1,
            "escalation.rejected.severity_out_of_range": 1,
        }
        wait_for(lambda: counters(reader) == expected, DEADLINE_S, what=f"escalation counters (were {counters(reader)})")
        # The teacher's answer is a training label, once; no rejected reply left one.
        labels = reader.execute("SELECT text, label, source, ref FROM training_labels").fetchall()
        assert labels == [("spindle 7 odd noise", "fault", "teacher", "rec:1")]
        assert publisher.is_alive() and subscriber.is_alive()
        # Every reply was acknowledged after its commit (none is left for the broker to redeliver).
        wait_for(lambda: subscriber.acked == 6, DEADLINE_S, what="replies acknowledged")
        # Everything, the refined row included, is delivered and marked.
        wait_for(
            lambda: reader.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0] == 0,
            DEADLINE_S, what="all outbox rows marked sent",
        )
    finally:
        if subscriber is not None:
            subscriber.stop()
        if publisher is not None:
            publisher.stop()
        responder.close()
        sub.close()
        writer.stop()


def test_a_reply_sent_while_the_box_is_offline_arrives_when_it_is_back(tmp_path: Path, mosquitto):
    path = tmp_path / "edged.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    reader = connect(path)
    settings = upstream(mosquitto.url, escalation=True)
    escalations = Subscriber(mosquitto.host, mosquitto.port, [ESCALATION])
    publisher = subscriber = None
    try:
        wait_for(escalations.subscribed.is_set, DEADLINE_S, what="escalation subscriber")
        store_one(writer, OutboxBuilder(settings), "rec:1", needs_review=True)
        publisher, subscriber = start_box(settings, writer, path)
        doc = json.loads(wait_for(lambda: list(escalations.messages), DEADLINE_S, what="the escalation")[0].payload)
        # The box goes offline (clean disconnects; the broker keeps the session and queues for it).
        subscriber.stop()
        publisher.stop()
        publisher = subscriber = None
        teacher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="teacher", protocol=mqtt.MQTTv311)
        teacher.connect(mosquitto.host, mosquitto.port)
        teacher.loop_start()
        reply = {"correlation_id": doc["correlation_id"], "label": "fault", "severity": 4}
        teacher.publish(doc["respond_to"], json.dumps(reply), qos=1).wait_for_publish(DEADLINE_S)
        teacher.loop_stop()
        teacher.disconnect()
        assert reader.execute("SELECT count(*) FROM training_labels").fetchone()[0] == 0
        # Back online: the queued reply arrives, is applied and becomes a label.
        publisher, subscriber = start_box(settings, writer, path)
        wait_for(
            lambda: reader.execute("SELECT label, source FROM training_labels").fetchall() == [("fault", "teacher")],
            DEADLINE_S, what="the teacher label after the box came back",
        )
        row = reader.execute("SELECT label, severity, path FROM results WHERE record_id = 'rec:1'").fetchone()
        assert row == ("fault", 4, "refined_upstream")
    finally:
        if subscriber is not None:
            subscriber.stop()
        if publisher is not None:
            publisher.stop()
        escalations.close()
        writer.stop()


def test_escalation_off_adds_no_escalation_row(tmp_path: Path):
    path = tmp_path / "edged.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    try:
        store_one(writer, OutboxBuilder(upstream("mqtt://127.0.0.1")), "rec:1", needs_review=True)
        kinds = [r[0] for r in connect(path).execute("SELECT kind FROM outbox").fetchall()]
        assert kinds == ["log"]
    finally:
        writer.stop()


def test_escalation_on_escalates_only_results_for_review(tmp_path: Path):
    path = tmp_path / "edged.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    try:
        store_one(writer, OutboxBuilder(upstream("mqtt://127.0.0.1", escalation=True)), "rec:1", needs_review=False)
        kinds = [r[0] for r in connect(path).execute("SELECT kind FROM outbox").fetchall()]
        assert kinds == ["log"]
    finally:
        writer.stop()


def test_malformed_replies_are_rejected():
    cases = {
        b"\xff": "not_json", b"[1": "not_json", b"[" * 5000: "not_json", b"[]": "malformed", b"{}": "malformed",
        b'{"correlation_id": "res:x"}': "malformed",
        b'{"correlation_id": "res:x", "label": "fault", "severity": "high"}': "malformed",
        b'{"correlation_id": "res:x", "label": "fault", "severity": true}': "malformed",
        b'{"correlation_id": "res:x", "label": "explosion"}': "label_outside_taxonomy",
        b'{"correlation_id": "res:x", "label": "fault", "severity": 6}': "severity_out_of_range",
        b'{"correlation_id": "res:x", "label": "fault", "severity": -1}': "severity_out_of_range",
    }
    for payload, reason in cases.items():
        try:
            parse_reply(payload, DEFAULT_LABELS)
        except Rejected as exc:
            assert exc.reason == reason, (payload[:40], exc.reason)
            continue
        raise AssertionError(f"{payload[:40]!r} was accepted")
    assert parse_reply(b'{"correlation_id": "res:x", "label": "fault", "severity": 0}', DEFAULT_LABELS)["severity"] == 0
    assert parse_reply(b'{"correlation_id": "res:x", "label": "fault", "summary": null}') == {
        "correlation_id": "res:x", "label": "fault",
    }


def test_teacher_labels_rank_below_corrections_and_imports(tmp_path: Path):
    from edged.triage import labels

    db = open_database(tmp_path / "edged.db")
    with db.conn:
        labels.add_teacher_label(db, "Hydraulic hose burst", "fault", "rec:1", 1.0)
        labels.add_teacher_label(db, "guard door open", "safety", "rec:2", 1.0)
        labels.add_teacher_label(db, "spindle warm", "warning", "rec:3", 1.0)
        labels.add_imported(db, [("hydraulic  hose burst", "warning")])
        db.conn.execute(labels.UPSERT, ("GUARD DOOR OPEN", "normal", "model", "rec:9", 2.0))
    loaded, outside = labels.load(db, DEFAULT_LABELS, 100)
    winners = {labels.same_text(x.text): (x.label, x.source) for x in loaded}
    assert outside == 0
    assert winners == {
        "hydraulic hose burst": ("warning", "import"),  # an import beats a teacher
        "guard door open": ("safety", "teacher"),  # a teacher beats the local model
        "spindle warm": ("warning", "teacher"),
    }
    db.close()


def test_a_reply_for_a_result_never_escalated_is_unknown(tmp_path: Path):
    from edged.publish.escalation import apply_reply

    path = tmp_path / "edged.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    try:
        builder = OutboxBuilder(upstream("mqtt://127.0.0.1", escalation=True))
        store_one(writer, builder, "rec:1", needs_review=False)  # confident: not escalated
        cid = connect(path).execute("SELECT result_id FROM outbox WHERE kind = 'log'").fetchone()[0]

        def apply(db):
            try:
                apply_reply(db, builder, {"correlation_id": cid, "label": "fault"})
            except Rejected as exc:
                return exc.reason

        assert writer.call(apply).result() == "unknown_correlation_id"
        assert connect(path).execute("SELECT count(*) FROM training_labels").fetchone()[0] == 0
    finally:
        writer.stop()


def test_a_template_is_escalated_once_and_the_teachers_label_serves_its_later_lines(tmp_path: Path):
    """A template's unsure answer goes to the teacher once, for the line it was computed for; the reply
    refines the cached answer, so the template's later lines carry the teacher's label without review."""
    from edged.analysis.analyzer import Analyzer
    from edged.backends.fake import FakeBackend
    from edged.config.settings import AnalysisSettings
    from edged.publish.escalation import apply_reply

    path = tmp_path / "edged.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    builder = OutboxBuilder(upstream("mqtt://127.0.0.1", escalation=True))
    # No level table or lexicon: the model's unsure answer (the fake gives no confidence) is the label.
    analyzer = Analyzer(AnalysisSettings(levels={}, lexicon={}, digest_interval_s=0), FakeBackend(), writer,
                        connect(path), builder)

    def put(*ids: str) -> None:
        records = [NewRecord(i, "file:/var/log/cnc.log", "cnc-1", "log", f"spindle {n} odd noise at station 4", "",
                             None, 1.0) for n, i in enumerate(ids, start=3)]
        writer.submit(WriteBatch(records=records)).result()
        while analyzer.run_once():
            pass

    def db_rows(sql: str) -> list[tuple]:
        return connect(path).execute(sql).fetchall()

    try:
        put("l:1", "l:2", "l:3")
        assert db_rows("SELECT count(*) FROM outbox WHERE kind = 'escalation'") == [(1,)]
        (first,) = db_rows("SELECT record_id FROM results WHERE path = 'model'")
        cid = db_rows(f"SELECT result_id FROM outbox WHERE kind = 'log' AND record_id = '{first[0]}'")[0][0]
        writer.call(lambda db: apply_reply(db, builder, {"correlation_id": cid, "label": "fault", "severity": 3})).result()
        analyzer.forget_cached_answers()  # what the daemon does when a reply was stored
        put("l:4")
        label, severity, review, by = db_rows(
            "SELECT label, severity, needs_review, classified_by FROM results WHERE record_id = 'l:4'")[0]
        assert (label, severity, review, by) == ("fault", 3, 0, "upstream")
        assert db_rows("SELECT count(*) FROM outbox WHERE kind = 'escalation'") == [(1,)]
    finally:
        writer.stop()
