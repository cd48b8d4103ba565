"""The hostile MQTT corpus through the real daemon and a real broker: thousands of payloads generated
from a seed, mixed with valid messages. The daemon stays up, its log holds no traceback, every valid
message is stored exactly once, and no stored field is unbounded or holds a NUL."""

from __future__ import annotations

import random
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edged.store.limits import MAX_MACHINE_CHARS, MAX_SOURCE_CHARS
from tests.support.daemon import Daemon, query, write_config
from tests.support.hostile import hostile_payloads, valid_messages
from tests.support.wait import wait_for

HOSTILE = 3000
VALID = 500


def publish(broker, messages) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=60)
    finally:
        client.disconnect()
        client.loop_stop()


def test_hostile_corpus_through_the_daemon(tmp_path, mosquitto):
    config = write_config(tmp_path / "edged.toml", {
        "store": {"path": str(tmp_path / "edged.db")},
        "logs": {"paths": []},
        "mqtt": {"url": mosquitto.url, "client_id": "edged-hostile", "topics": ["factory/#"]},
        "analysis": {"enabled": False},
    })
    daemon = Daemon(tmp_path, config)
    daemon.start()
    messages = hostile_payloads(seed=14, n=HOSTILE) + valid_messages(VALID)
    random.Random(14).shuffle(messages)
    publish(mosquitto, messages[: len(messages) // 2])
    daemon.kill9()  # in the middle: what was acked is stored, the rest comes again
    daemon.start()
    publish(mosquitto, messages[len(messages) // 2:] + [("factory/end/logs", b'{"id": "end", "text": "sentinel"}')])
    db = tmp_path / "edged.db"
    wait_for(lambda: query(db, "SELECT count(*) FROM records WHERE text = 'sentinel'")[0][0] == 1, timeout=120,
             what="the last message")
    wait_for(lambda: query(db, "SELECT count(*) FROM records WHERE text LIKE 'valid %'")[0][0] >= VALID, timeout=60,
             what="every valid message")
    assert daemon.alive()
    assert daemon.terminate() == 0
    assert query(db, "SELECT count(*), count(DISTINCT text) FROM records WHERE text LIKE 'valid %'")[0] == (VALID, VALID)
    empty_ids = sum(1 for _, p in messages if b"empty-id" in p)
    assert query(db, "SELECT count(DISTINCT record_id) FROM records WHERE text LIKE 'empty-id %'")[0][0] == empty_ids
    longest_machine, longest_source = query(db, "SELECT max(length(machine)), max(length(source)) FROM records")[0]
    assert longest_machine <= MAX_MACHINE_CHARS and longest_source <= MAX_SOURCE_CHARS
    assert query(db, "SELECT count(*) FROM records WHERE instr(text, char(0)) OR instr(machine, char(0))")[0][0] == 0
    assert query(db, "SELECT count(*) FROM rejected")[0][0] > 0
    log = daemon.log_text()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]
