"""kill -9 at random moments under sustained file and MQTT input: nothing lost, nothing twice.

The daemon runs as a real subprocess against a real mosquitto and real files. Lines are appended
(and the file rotated by rename now and then) and QoS 1 messages are published the whole time,
also while the daemon is dead. At the end every line and every message must be in the inbox
exactly once.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from tests.support.daemon import Daemon, query, write_config
from tests.support.wait import wait_for

KILLS = 12


class FileWriter(threading.Thread):
    """Appends numbered lines; every 400 lines renames the file away (app.log -> app.log.N)."""

    def __init__(self, logdir) -> None:
        super().__init__(daemon=True)
        self.logdir = logdir
        self.count = 0
        self.stop = threading.Event()

    def run(self) -> None:
        rotation = 0
        while not self.stop.is_set():
            path = self.logdir / "app.log"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            for _ in range(400):
                if self.stop.is_set():
                    break
                os.write(fd, f"file line {self.count:07d} temperature=71.5 status=ok\n".encode())
                self.count += 1
                if self.count % 10 == 0:
                    time.sleep(0.01)  # about 1000 lines/s: a busy machine, not a benchmark
            os.close(fd)
            rotation += 1
            os.rename(path, self.logdir / f"app.log.{rotation}")


class MqttPublisher(threading.Thread):
    """Publishes numbered QoS 1 messages and counts the ones the broker acknowledged."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.acked = 0
        self.stop = threading.Event()

    def run(self) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="crash-test-publisher")
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        try:
            while not self.stop.is_set():
                payload = json.dumps({"text": f"mqtt message {self.acked:07d}", "machine": "press-3"})
                client.publish("plant/press-3/logs", payload, qos=1).wait_for_publish(10)
                self.acked += 1
                if self.acked % 5 == 0:
                    time.sleep(0.01)
        finally:
            client.loop_stop()
            client.disconnect()


@pytest.mark.slow
def test_kill_9_loses_nothing_and_duplicates_nothing(tmp_path, mosquitto):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    logdir = tmp_path / "logs"
    logdir.mkdir()
    db_path = tmp_path / "edged.db"
    config = write_config(
        tmp_path / "edged.toml",
        {
            "store": {"path": str(db_path)},
            "logs": {
                "paths": [str(logdir / "*.log")],
                "partial_line_timeout_s": 0.5,
                "rotate_wait_s": 0.5,
                "rescan_interval_s": 1.0,
            },
            # The scripted backend: this test is about losing nothing under kill -9 (records and
            # their results); the real model is exercised in test_analysis_model.py.
            "backend": {"type": "fake"},
            "analysis": {"lease_s": 2.0, "max_attempts": 50},
            "mqtt": {
                "url": mosquitto.url,
                "topics": ["plant/+/logs"],
                "client_id": "edged-crash-test",
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 1.0,
            },
        },
    )
    daemon = Daemon(tmp_path, config)
    daemon.start()
    # The broker only queues for a session that exists: wait until the daemon has subscribed.
    hello = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="crash-test-hello")
    hello.connect("127.0.0.1", mosquitto.port)
    hello.loop_start()
    def hello_stored():
        hello.publish("plant/press-3/logs", "hello", qos=1).wait_for_publish(5)
        return query(db_path, "SELECT count(*) FROM records WHERE text = 'hello'")[0][0]
    wait_for(hello_stored, timeout=30, interval=0.5, what="daemon subscribed")
    hello.loop_stop()
    hello.disconnect()

    files, messages = FileWriter(logdir), MqttPublisher(mosquitto.port)
    files.start()
    messages.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 1.5))  # a random moment in the middle of ingest
            daemon.kill9()
            time.sleep(rng.uniform(0.0, 0.5))  # input keeps coming while it is dead
            daemon.start()
    finally:
        files.stop.set()
        messages.stop.set()
        files.join(30)
        messages.join(30)

    expected = files.count + messages.acked + 1
    try:
        stored = lambda: query(db_path, "SELECT count(*) FROM records")[0][0]  # noqa: E731
        wait_for(
            lambda: stored() >= expected or print(f"{stored()} of {expected} stored"),
            timeout=90,
            interval=0.5,
            what=f"all {expected} records (seed {seed})",
        )
        # Every record gets exactly one result, also across the kills (leases expire, work is redone).
        wait_for(
            lambda: query(db_path, "SELECT count(*) FROM records WHERE status != 'done'")[0][0] == 0,
            timeout=90,
            interval=0.5,
            what=f"every record analyzed (seed {seed})",
        )
        assert daemon.terminate() == 0
    finally:
        if daemon.alive():
            daemon.kill9()

    assert query(db_path, "SELECT count(*) FROM results")[0][0] == expected
    texts = dict(query(db_path, "SELECT text, count(*) FROM records GROUP BY text"))
    duplicated = {t: n for t, n in texts.items() if n > 1}
    assert not duplicated, f"seed {seed}: stored more than once: {list(duplicated)[:5]}"
    want = {f"file line {i:07d} temperature=71.5 status=ok" for i in range(files.count)}
    want |= {f"mqtt message {i:07d}" for i in range(messages.acked)} | {"hello"}
    assert set(texts) == want, f"seed {seed}: missing {sorted(want - set(texts))[:5]}, extra {sorted(set(texts) - want)[:5]}"
    assert daemon.starts == KILLS + 1
    print(f"seed {seed}: {files.count} lines, {messages.acked} messages, {KILLS} kills, "
          f"duplicates dropped: {dict(query(db_path, 'SELECT name, value FROM counters'))}")
