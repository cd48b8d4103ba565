"""``edged teacher`` end to end: a real mosquitto, llama-cpp-python's OpenAI server with the default
model as the teacher's model, the teacher and a box daemon as subprocesses. The box escalates, the
teacher answers, the reply becomes a training label on the box; a reply sent while the box is down
reaches it when it is back, and one for an escalation sent while the teacher was down too.

The box itself runs the scripted ``fake`` backend: this is about delivery between box and teacher (its
answers have no confidence, so every result is flagged for review and escalated). The teacher's
answers come from the real model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edged.config.settings import DEFAULT_LABELS
from edged.teacher.answers import AnswerStore
from edged.teacher.responder import InvalidEscalation, parse_escalation
from tests.support.daemon import REPO, Daemon, query, write_config
from tests.support.llama_server import MISSING_HINT, LlamaServer, default_model_path, missing_server_modules
from tests.support.wait import wait_for

DEADLINE_S = 30.0
MODEL_DEADLINE_S = 300.0  # the teacher's model on a busy 2-core box


class TeacherProcess:
    def __init__(self, workdir: Path, config: Path) -> None:
        self.workdir, self.config = workdir, config
        self.log_path = workdir / "teacher.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")} | {"PYTHONPATH": str(REPO)}
        with open(self.log_path, "ab") as log:
            log.write(b"--- start\n")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edged", "teacher", "--config", str(self.config)],
                cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
            )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def since_start(self) -> str:
        text = self.log_text()
        return text[text.rfind("--- start"):]

    def wait_subscribed(self) -> None:
        wait_for(
            lambda: "teacher subscribed" in self.since_start() or self.proc.poll() is not None,
            DEADLINE_S, what="teacher subscribed",
        )
        assert self.proc.poll() is None, self.log_text()[-3000:]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def test_escalations_that_cannot_be_answered_are_refused():
    for payload in (b"\xff", b"[]", b'{"correlation_id": "res:1", "text": "x"}',
                    b'{"correlation_id": "res:1", "respond_to": "a/+/b", "text": "x"}',
                    b'{"correlation_id": "res:1", "respond_to": "a/b", "text": ""}'):
        with pytest.raises(InvalidEscalation):
            parse_escalation(payload)
    esc = parse_escalation(b'{"correlation_id": "res:1", "respond_to": "a/b", "text": "leak", "kind": "bogus"}')
    assert esc.kind == "log" and esc.machine is None


def test_answer_store_keeps_the_first_answer(tmp_path: Path):
    store = AnswerStore(tmp_path / "teacher.db")
    store.put("res:1", "a/b", '{"label":"fault"}')
    store.put("res:1", "a/b", '{"label":"normal"}')
    assert store.get("res:1") == ("a/b", '{"label":"fault"}') and store.get("res:2") is None
    assert store.forget_older_than(3600) == 0 and store.forget_older_than(-1) == 1
    store.close()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    model = default_model_path()
    if model is None:
        pytest.fail("the default model file is missing: run `make model`", pytrace=False)
    missing = missing_server_modules()
    if missing:
        pytest.fail(MISSING_HINT.format(missing=", ".join(missing)), pytrace=False)
    server = LlamaServer(model, tmp_path_factory.mktemp("llama_server")).start()
    yield server
    server.stop()


def teacher_labels(db: Path) -> list[tuple]:
    return query(db, "SELECT text, label, source FROM training_labels WHERE source = 'teacher' ORDER BY id")


def test_teacher_answers_a_box_and_the_answer_becomes_a_label(tmp_path: Path, mosquitto, llama_server):
    box_dir, teacher_dir = tmp_path / "box", tmp_path / "teacher"
    logs = box_dir / "logs"
    logs.mkdir(parents=True)
    teacher_dir.mkdir()
    db = box_dir / "edged.db"
    teacher_cfg = write_config(teacher_dir / "teacher.toml", {
        "teacher": {
            "url": mosquitto.url, "client_id": "teacher-1", "topics": ["edged/+/+/escalation"],
            "answers_path": str(teacher_dir / "teacher.db"), "model_url": llama_server.url,
            "reconnect_min_s": 0.1, "reconnect_max_s": 1.0,
        },
    })
    box_cfg = write_config(box_dir / "edged.toml", {
        "store": {"path": str(db)},
        "logs": {"paths": [str(logs / "*.log")]},
        "upstream": {
            "url": mosquitto.url, "client_id": "box-1-up", "site": "plant-1", "node": "box-1", "escalation": True,
            "reconnect_min_s": 0.1, "reconnect_max_s": 1.0,
        },
        "backend": {"type": "fake"},
        "triage": {"enabled": False},
        # No day-one evidence: a line's level or words would decide without review, and nothing would
        # be escalated; here every label comes from the box's unsure model and goes to the teacher.
        "analysis": {"levels": {}, "lexicon": {}},
    })
    teacher = TeacherProcess(teacher_dir, teacher_cfg)
    box = Daemon(box_dir, box_cfg)
    try:
        # 1. Both up: the box escalates, the teacher answers, the reply becomes a label.
        teacher.start()
        teacher.wait_subscribed()
        (logs / "press-1.log").write_text("2026-11-27 10:00:01 ERROR hydraulic pump 2 pressure lost\n")
        box.start()
        wait_for(lambda: len(teacher_labels(db)) == 1, MODEL_DEADLINE_S, what="the first teacher label")
        text, label, _ = teacher_labels(db)[0]
        assert "hydraulic pump 2" in text and label in DEFAULT_LABELS
        row = query(db, "SELECT label, path, classified_by, needs_review FROM results")[0]
        assert row == (label, "refined_upstream", "upstream", 0)

        # 2. The teacher is down when the box escalates, and the box is down when the teacher answers:
        #    the escalation waits in the teacher's session, the reply in the box's.
        teacher.stop()
        with (logs / "press-1.log").open("a") as f:
            f.write("2026-11-27 10:00:09 WARN guard door 3 open during cycle\n")
        wait_for(
            lambda: query(db, "SELECT count(*) FROM outbox WHERE kind = 'escalation' AND sent_at IS NOT NULL")[0][0] == 2,
            DEADLINE_S, what="the second escalation delivered to the broker",
        )
        assert box.terminate() == 0
        answered_before = teacher.log_text().count("answered res:")
        teacher.start()
        wait_for(lambda: teacher.log_text().count("answered res:") > answered_before, MODEL_DEADLINE_S,
                 what="the teacher's second answer")
        assert len(teacher_labels(db)) == 1
        box.start()
        wait_for(lambda: len(teacher_labels(db)) == 2, DEADLINE_S, what="the reply sent while the box was down")
        assert "guard door 3" in teacher_labels(db)[1][0]
        status = json.loads(subprocess.run(
            [sys.executable, "-m", "edged", "status", "--json", "--config", str(box_cfg)],
            cwd=box_dir, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
        ).stdout)
        assert status["escalation"]["escalated"] == 2 and status["escalation"]["refined"] == 2
        assert status["escalation"]["rejected"] == 0 and status["triage"]["labels"] == {"teacher": 2}
    finally:
        if box.alive():
            box.terminate()
        if teacher.proc is not None and teacher.proc.poll() is None:
            teacher.stop()


def test_an_escalation_delivered_twice_gets_the_same_reply_from_one_model_call(tmp_path: Path, mosquitto):
    # About delivery, not inference: a scripted answerer stands in for the model and counts its calls.
    from edged.config.settings import TeacherSettings
    from edged.teacher.responder import Teacher
    from tests.support.upstream import Subscriber

    class Scripted:
        calls = 0

        def reply(self, esc, stop=None):
            Scripted.calls += 1
            return {"correlation_id": esc.correlation_id, "label": "fault", "severity": 3, "model": f"call-{self.calls}"}

    settings = TeacherSettings(url=mosquitto.url, client_id="teacher-t", reconnect_min_s=0.1, reconnect_max_s=1.0)
    store = AnswerStore(tmp_path / "teacher.db")
    teacher = Teacher(settings, Scripted(), store)
    replies = Subscriber(mosquitto.host, mosquitto.port, ["edged/p/b/escalation/response"])
    teacher.start()
    try:
        wait_for(teacher.subscribed.is_set, DEADLINE_S, what="teacher subscribed")
        wait_for(replies.subscribed.is_set, DEADLINE_S, what="reply subscriber")
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        box = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="box", protocol=mqtt.MQTTv311)
        box.connect(mosquitto.host, mosquitto.port)
        box.loop_start()
        escalation = {"correlation_id": "res:abc", "respond_to": "edged/p/b/escalation/response", "text": "leak"}
        for payload in (json.dumps(escalation), b"not json", json.dumps(escalation)):
            box.publish("edged/p/b/escalation", payload, qos=1).wait_for_publish(DEADLINE_S)
        box.loop_stop()
        box.disconnect()
        wait_for(lambda: len(replies.messages) == 2, DEADLINE_S, what="two replies")
        first, second = (json.loads(m.payload) for m in replies.messages)
        assert first == second == {"correlation_id": "res:abc", "label": "fault", "severity": 3, "model": "call-1"}
        assert Scripted.calls == 1 and teacher.repeated == 1 and teacher.invalid == 1
        wait_for(lambda: teacher.acked == 3, DEADLINE_S, what="every escalation acknowledged")
    finally:
        teacher.stop()
        replies.close()
        store.close()


def test_teacher_without_a_broker_or_a_model_server_says_what_is_missing(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")} | {"PYTHONPATH": str(REPO)}
    config = write_config(tmp_path / "t.toml", {"teacher": {"answers_path": str(tmp_path / "t.db")}})
    out = subprocess.run([sys.executable, "-m", "edged", "teacher", "--config", str(config)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "[teacher] url" in out.stderr and "Traceback" not in out.stderr, out.stderr
    config = write_config(tmp_path / "t.toml", {"teacher": {
        "url": "mqtt://127.0.0.1:1", "model_url": "http://127.0.0.1:9/v1", "answers_path": str(tmp_path / "t.db")}})
    out = subprocess.run([sys.executable, "-m", "edged", "teacher", "--config", str(config)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "127.0.0.1:9" in out.stderr and "Traceback" not in out.stderr, out.stderr
