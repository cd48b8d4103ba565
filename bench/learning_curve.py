"""Learning curve: a box that escalates what it is unsure of, and learns from the answers.

A labeled file is streamed, 100 records at a time, as incident reports over MQTT into the real daemon
(``python -m edged run`` as a subprocess, a private mosquitto) with ``[upstream] escalation`` on. A
teacher answers every escalation; the daemon stores each answer as a training label (source teacher)
and trains its triage classifier by itself every ``[triage] retrain_after`` labels. Records the
classifier is confident of are not escalated, so the share escalated should fall as it learns.

Teachers:
- ``oracle``: a responder in this bench that answers from the file's own labels (a perfect teacher).
- ``model``: ``edged teacher`` (a subprocess) with llama-cpp-python's OpenAI server and the default
  model: weak on these labels; it shows the plumbing, not a good teacher.

The box's own model is the scripted ``fake`` backend: its answers carry no confidence, so every record
the classifier does not take is escalated, and the curve shows the classifier taking over. (Running
the real local model on every record would cost ~1-2 s each on a 2-core box.)

After each 100 records, on held-out rows never streamed (a hash of the text puts ~30% there):
``triage_micro_f1`` (the classifier's most probable label, every row), ``confident_share`` and
``confident_accuracy`` (rows at or above [triage] confidence_threshold: what the box decides alone),
and ``routed_micro_f1``: the box's final label, i.e. the classifier's where confident, else the
teacher's answer (the oracle's is the truth, so for the oracle this is an upper bound; for the model
teacher its answers on the held-out rows are asked at the end only, to keep the run short).

Data: ../shared/data/incidents/nist_excavators, MajorSystem (NA dropped, classes with >= 20 rows).
Usage: python -m bench.learning_curve [--records N] [--teachers oracle,model] [--model-records N]
Result: bench/results/learning_curve.json
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import REPO, write_result

DATA = REPO.parent / "shared" / "data" / "incidents" / "nist_excavators" / "excavators-cleaned.csv"
CHUNK = 100
SITE, NODE = "bench", "box-1"
LEARN_WAIT_S = 150.0  # the daemon looks for due trainings every 60 s


def log(msg: str) -> None:
    print(f"[learning_curve] {msg}", file=sys.stderr, flush=True)


def load_rows(min_class: int = 20) -> tuple[list[tuple[str, str]], str]:
    if not DATA.exists():
        sys.path.insert(0, str(REPO))
        from tests.support.labeled_texts import make

        return make(600, seed=7), "made-up shop-floor texts (../shared/data/incidents not found)"
    with DATA.open(newline="", encoding="utf-8") as f:
        rows = [(r["OriginalShorttext"].strip(), r["MajorSystem"].strip()) for r in csv.DictReader(f)]
    rows = [(t, l) for t, l in rows if t and l and l != "NA"]
    counts = Counter(l for _, l in rows)
    rows = [(t, l) for t, l in rows if counts[l] >= min_class]
    # One label per text (the first), so the oracle's answer for a text is well defined.
    seen: dict[str, str] = {}
    for t, l in rows:
        seen.setdefault(t, l)
    return list(seen.items()), f"{DATA.relative_to(REPO.parent)} (MajorSystem, classes with >= {min_class} rows)"


def held_out(text: str) -> bool:
    return int(hashlib.blake2b(text.lower().encode(), digest_size=4).hexdigest(), 16) % 100 < 30


class Oracle:
    """Answers each escalation with the file's label for its text."""

    def __init__(self, host: str, port: int, truth: dict[str, str]) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.truth = truth
        self.answered = 0
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="oracle", clean_session=False,
                                  protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe("edged/+/+/escalation", 1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        doc = json.loads(msg.payload)
        label = self.truth.get(doc["text"])
        if label is None:
            return
        reply = {"correlation_id": doc["correlation_id"], "label": label, "model": "oracle"}
        client.publish(doc["respond_to"], json.dumps(reply), qos=1)
        self.answered += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def edged_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def query(db: Path, sql: str, *params: Any) -> list[tuple]:
    import sqlite3

    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def counter(db: Path, name: str) -> int:
    rows = query(db, "SELECT value FROM counters WHERE name = ?", name)
    return rows[0][0] if rows else 0


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the daemon exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def heldout_figures(db: Path, rows: list[tuple[str, str]], threshold: float, taxonomy: list[str]) -> dict[str, Any]:
    """The active classifier on the held-out rows (None before the first accepted training)."""
    sys.path.insert(0, str(REPO))
    from edged.store.database import connect
    from edged.triage import versions
    from edged.triage.runtime import TriageModel

    reader = connect(db, readonly=True)
    try:
        current = versions.active(reader)
    finally:
        reader.close()
    if current is None:
        return {"version": None, "triage_micro_f1": None, "confident_share": 0.0, "confident_accuracy": None,
                "confident": [False] * len(rows), "labels": [None] * len(rows)}
    model = TriageModel(current[1], version=current[0].version)
    probs = model.probabilities([t for t, _ in rows])
    labels, confident = [], []
    for p in probs:
        order = [model.classes[i] for i in p.argsort()[::-1] if model.classes[i] in taxonomy]
        labels.append(order[0] if order else None)
        confident.append(float(p.max()) >= threshold)
    right = [lab == truth for lab, (_, truth) in zip(labels, rows)]
    sure = [r for r, c in zip(right, confident) if c]
    return {
        "version": current[0].version,
        "triage_micro_f1": round(sum(right) / len(rows), 4),
        "confident_share": round(sum(confident) / len(rows), 4),
        "confident_accuracy": round(sum(sure) / len(sure), 4) if sure else None,
        "confident": confident, "labels": labels,
    }


def run_curve(teacher: str, stream: list[tuple[str, str]], heldout: list[tuple[str, str]], taxonomy: list[str],
              workdir: Path, retrain_after: int, threshold: float) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.support.daemon import write_config
    from tests.support.mosquitto import Mosquitto

    truth = dict(stream) | dict(heldout)
    broker = Mosquitto(workdir / "mosquitto")
    broker.start()
    db = workdir / "box" / "edged.db"
    (workdir / "box").mkdir(parents=True)
    config = write_config(workdir / "box" / "edged.toml", {
        "store": {"path": str(db)},
        "logs": {"paths": []},
        "mqtt": {"url": broker.url, "client_id": "box-1-in", "topics": ["factory/+/incidents"],
                 "incident_topics": ["factory/+/incidents"]},
        "upstream": {"url": broker.url, "client_id": "box-1-up", "site": SITE, "node": NODE, "escalation": True,
                     "reconnect_min_s": 0.1, "reconnect_max_s": 1.0},
        "backend": {"type": "fake"},
        "analysis": {"labels": taxonomy, "digest_interval_s": 0},
        "triage": {"retrain_after": retrain_after, "confidence_threshold": threshold},
    })
    oracle = server = teacher_proc = None
    daemon = None
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-machines", protocol=mqtt.MQTTv311)
    try:
        if teacher == "oracle":
            oracle = Oracle(broker.host, broker.port, truth)
            oracle.subscribed.wait(10)
        else:
            from tests.support.llama_server import LlamaServer, default_model_path

            server = LlamaServer(default_model_path(), workdir / "llama").start()
            tcfg = write_config(workdir / "teacher.toml", {
                "teacher": {"url": broker.url, "client_id": "teacher", "answers_path": str(workdir / "teacher.db"),
                            "model_url": server.url},
                "analysis": {"labels": taxonomy},
            })
            teacher_proc = subprocess.Popen(
                [sys.executable, "-m", "edged", "teacher", "--config", str(tcfg)], cwd=workdir, env=edged_env(),
                stdout=open(workdir / "teacher.log", "wb"), stderr=subprocess.STDOUT,
            )
            wait_until(lambda: "teacher subscribed" in (workdir / "teacher.log").read_text(errors="replace"), 120,
                       "the teacher", teacher_proc)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edged", "run", "--config", str(config)], cwd=workdir / "box", env=edged_env(),
            stdout=open(workdir / "box" / "daemon.log", "wb"), stderr=subprocess.STDOUT,
        )
        wait_until(lambda: db.exists() and "ready" in (workdir / "box" / "daemon.log").read_text(errors="replace"),
                   120, "the daemon", daemon)
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()
        chunks = []
        started = time.monotonic()
        for lo in range(0, len(stream), CHUNK):
            chunk = stream[lo:lo + CHUNK]
            escalated_before = counter(db, "escalation.escalated")
            for i, (text, _) in enumerate(chunk, start=lo):
                payload = {"text": text, "machine": f"excavator-{i % 5}", "kind": "incident", "id": f"wo-{i}"}
                publisher.publish("factory/excavator/incidents", json.dumps(payload), qos=1)
            sent = lo + len(chunk)
            wait_until(lambda: query(db, "SELECT count(*) FROM results")[0][0] >= sent, 3600, "results", daemon)
            escalated = counter(db, "escalation.escalated") - escalated_before
            answered = lambda: (counter(db, "escalation.refined") + counter(db, "escalation.rejected")
                                + counter(db, "escalation.duplicates"))
            wait_until(lambda: answered() >= counter(db, "escalation.escalated"), 3600, "answers", daemon)
            labels = query(db, "SELECT count(*) FROM training_labels")[0][0]
            seen = query(db, "SELECT coalesce(max(labels_seen), 0) FROM triage_models")[0][0]
            trained = False
            if labels >= 30 and labels - seen >= retrain_after:
                try:
                    wait_until(lambda: query(db, "SELECT coalesce(max(labels_seen), 0) FROM triage_models")[0][0]
                               > seen, LEARN_WAIT_S, "a training", daemon)
                    trained = True
                    time.sleep(3)  # the analyzer's router picks a new version up within 2 s
                except TimeoutError:
                    log("no training within the wait; going on")
            figures = heldout_figures(db, heldout, threshold, taxonomy)
            routed = [
                (lab if sure else truth_label) == truth_label
                for lab, sure, (_, truth_label) in zip(figures["labels"], figures["confident"], heldout)
            ] if teacher == "oracle" else None
            point = {
                "records": sent,
                "escalated": escalated,
                "escalated_share": round(escalated / len(chunk), 4),
                "teacher_labels": query(db, "SELECT count(*) FROM training_labels WHERE source = 'teacher'")[0][0],
                "trained_after_chunk": trained,
                "triage_version": figures["version"],
                "heldout_triage_micro_f1": figures["triage_micro_f1"],
                "heldout_confident_share": figures["confident_share"],
                "heldout_confident_accuracy": figures["confident_accuracy"],
                "heldout_routed_micro_f1": round(sum(routed) / len(routed), 4) if routed else None,
                "elapsed_s": round(time.monotonic() - started, 1),
            }
            chunks.append(point)
            log(json.dumps(point))
        result: dict[str, Any] = {"chunks": chunks}
        if teacher == "model":
            result["heldout_routed_micro_f1_at_end"] = model_routed_at_end(server.url, heldout, figures, taxonomy)
        status = query(db, "SELECT name, value FROM counters WHERE name LIKE 'escalation.%'")
        result["escalation_counters"] = dict(status)
        teacher_rows = query(db, "SELECT text, label FROM training_labels WHERE source = 'teacher'")
        result["teacher_label_accuracy"] = (
            round(sum(truth.get(t) == l for t, l in teacher_rows) / len(teacher_rows), 4) if teacher_rows else None
        )
        return result
    finally:
        publisher.loop_stop()
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
        if teacher_proc is not None and teacher_proc.poll() is None:
            teacher_proc.send_signal(signal.SIGTERM)
            teacher_proc.wait(60)
        if oracle is not None:
            oracle.close()
        if server is not None:
            server.stop()
        broker.stop()


def model_routed_at_end(url: str, heldout: list[tuple[str, str]], figures: dict[str, Any], taxonomy: list[str]) -> float:
    """The box's final labels on the held-out rows with the model teacher: the classifier's where
    confident, else the teacher model's answer (asked here through the same code edged teacher uses)."""
    from edged.analysis.tasks import CLASSIFY, build_specs
    from edged.backends.openai_http import OpenAIHttpConfig, create
    from edged.config.settings import AnalysisSettings
    from edged.teacher.responder import Answerer, Escalation

    answerer = Answerer(create(OpenAIHttpConfig(url=url, timeout_s=120)),
                        build_specs(AnalysisSettings(labels=taxonomy))[CLASSIFY], 2)
    right = 0
    for (text, truth), lab, sure in zip(heldout, figures["labels"], figures["confident"]):
        if not sure:
            try:
                lab = answerer.reply(Escalation("res:heldout", "x", text, None, "incident"))["label"]
            except Exception as exc:
                log(f"teacher failed on a held-out row: {exc}")
                lab = None
        right += lab == truth
    return round(right / len(heldout), 4)


def halving(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    first, last = chunks[0]["escalated_share"], chunks[-1]["escalated_share"]
    tail = chunks[-3:] if len(chunks) >= 4 else chunks[1:] or chunks
    tail_mean = sum(c["escalated_share"] for c in tail) / len(tail)
    return {
        "first_100_escalated_share": first,
        "last_100_escalated_share": last,
        "last_3x100_mean_escalated_share": round(tail_mean, 4),
        "fell_by_at_least_half": tail_mean <= first / 2,
    }


# The oracle teacher over 100 records (a training, escalations, replies): the plumbing, not the curve.
SMOKE_ARGS = ["--records", "100", "--teachers", "oracle", "--heldout", "50"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.learning_curve", description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=1000, help="records streamed with the oracle teacher")
    p.add_argument("--model-records", type=int, default=300, help="records streamed with the model teacher")
    p.add_argument("--heldout", type=int, default=400, help="held-out rows scored after each 100 (0 = all)")
    p.add_argument("--model-heldout", type=int, default=100, help="held-out rows for the model teacher's run")
    p.add_argument("--teachers", default="oracle,model", help="oracle, model or both")
    p.add_argument("--retrain-after", type=int, default=50, help="[triage] retrain_after of the box")
    p.add_argument("--threshold", type=float, default=0.8, help="[triage] confidence_threshold of the box")
    p.add_argument("--quick", action="store_true", help="500 records with the oracle, 200 with the model")
    args = p.parse_args(argv)
    if args.quick:
        args.records, args.model_records = 500, 200
    rows, source = load_rows()
    taxonomy = sorted({l for _, l in rows})
    stream = [r for r in rows if not held_out(r[0])]
    heldout = [r for r in rows if held_out(r[0])]
    random.Random(13).shuffle(stream)
    random.Random(14).shuffle(heldout)
    result: dict[str, Any] = {
        "data": source, "labels": taxonomy, "stream_rows": len(stream), "heldout_rows": len(heldout),
        "box": {"local_model": "fake (no confidence: every record the classifier does not take is escalated)",
                "retrain_after": args.retrain_after, "confidence_threshold": args.threshold},
        "teachers": {},
    }
    for teacher in [t.strip() for t in args.teachers.split(",") if t.strip()]:
        n = args.records if teacher == "oracle" else args.model_records
        h = args.heldout if teacher == "oracle" else args.model_heldout
        log(f"teacher {teacher}: {n} records, {h or len(heldout)} held-out rows")
        with tempfile.TemporaryDirectory(prefix=f"edged-curve-{teacher}-") as tmp:
            curve = run_curve(teacher, stream[:n], heldout[:h] if h else heldout, taxonomy, Path(tmp),
                              args.retrain_after, args.threshold)
        curve["goal"] = halving(curve["chunks"])
        result["teachers"][teacher] = curve
        write_result("learning_curve", result)
    for line in summary_lines(result):
        print(line, file=sys.stderr)
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for teacher, curve in result["teachers"].items():
        shares = " ".join(f"{c['escalated_share']:.2f}" for c in curve["chunks"])
        f1 = " ".join("-" if c["heldout_triage_micro_f1"] is None else f"{c['heldout_triage_micro_f1']:.2f}"
                      for c in curve["chunks"])
        lines.append(f"learning curve ({teacher} teacher): escalated share per 100 records: {shares}")
        lines.append(f"  held-out triage micro-F1 per 100: {f1}; goal (halved): {curve['goal']['fell_by_at_least_half']}")
    return lines


if __name__ == "__main__":
    main()
