"""A disk that fills while edged ingests: the real daemon on a small tmpfs, MQTT and a log file at
once. It pauses instead of exiting (sources stop reading and acking), says so on /healthz, and once
there is room again everything arrives exactly once; a kill -9 during the pause loses nothing either,
because nothing uncommitted was acknowledged."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.daemon import Daemon, query, write_config
from tests.support.mounts import tmpfs
from tests.support.wait import wait_for

MESSAGES = 3000
LINES = 2000
PAD = "p" * 900


def healthz(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def publish_all(broker, n: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish("factory/press-1/logs", json.dumps({"id": f"m{i}", "text": f"valid {i} {PAD}"}), qos=1)
                 for i in range(n)]
        for info in infos:
            info.wait_for_publish(timeout=60)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_full_disk_pauses_ingest_and_loses_nothing(tmp_path, mosquitto):
    with tmpfs(tmp_path / "small", "12m") as small:
        logs = tmp_path / "logs"
        logs.mkdir()
        config = write_config(tmp_path / "edged.toml", {
            "store": {"path": str(small / "edged.db"), "check_interval_s": 0.5},
            "logs": {"paths": [str(logs / "*.log")], "rescan_interval_s": 0.5},
            "mqtt": {"url": mosquitto.url, "client_id": "edged-disk", "reconnect_min_s": 0.1, "reconnect_max_s": 1},
            "analysis": {"enabled": False},
        })
        daemon = Daemon(tmp_path, config)
        daemon.start()
        url = daemon.web_url()
        filler = small / "filler"
        free = __import__("shutil").disk_usage(small).free
        filler.write_bytes(b"\0" * (free - 1_500_000))  # about 1.5 MB left: the database fills it quickly
        with open(logs / "line.log", "w") as f:
            f.write("".join(f"file line {i} {PAD}\n" for i in range(LINES)))
        publish_all(mosquitto, MESSAGES)
        wait_for(lambda: healthz(url)[0] == 503, timeout=60, what="/healthz to report the full disk")
        status, doc = healthz(url)
        assert "paused" in doc["store"], doc
        time.sleep(2)
        assert daemon.alive(), daemon.log_text()[-3000:]
        stored = query(small / "edged.db", "SELECT count(*) FROM records")[0][0]
        assert stored < MESSAGES + LINES  # it did fill up
        daemon.kill9()  # mid-pause: what was not committed was not acknowledged either
        filler.unlink()
        daemon.start()
        db = small / "edged.db"
        wait_for(lambda: query(db, "SELECT count(*) FROM records")[0][0] >= MESSAGES + LINES, timeout=120,
                 what="everything to arrive after space returned")
        assert healthz(daemon.web_url())[0] == 200
        assert daemon.terminate() == 0
        assert query(db, "SELECT count(*) FROM records WHERE text LIKE 'valid %'")[0][0] == MESSAGES
        assert query(db, "SELECT count(DISTINCT text) FROM records WHERE text LIKE 'valid %'")[0][0] == MESSAGES
        assert query(db, "SELECT count(*) FROM records WHERE text LIKE 'file line %'")[0][0] == LINES
        assert query(db, "SELECT count(DISTINCT text) FROM records WHERE text LIKE 'file line %'")[0][0] == LINES
        log = daemon.log_text()
        assert "cannot write the database" in log and "Traceback" not in log


def test_space_returning_while_running_resumes_by_itself(tmp_path, mosquitto):
    with tmpfs(tmp_path / "small", "12m") as small:
        config = write_config(tmp_path / "edged.toml", {
            "store": {"path": str(small / "edged.db"), "check_interval_s": 0.5},
            "logs": {"paths": []},
            "mqtt": {"url": mosquitto.url, "client_id": "edged-disk2", "reconnect_min_s": 0.1, "reconnect_max_s": 1},
            "analysis": {"enabled": False},
        })
        daemon = Daemon(tmp_path, config)
        daemon.start()
        url = daemon.web_url()
        filler = small / "filler"
        free = __import__("shutil").disk_usage(small).free
        filler.write_bytes(b"\0" * (free - 1_500_000))
        publish_all(mosquitto, MESSAGES)
        wait_for(lambda: healthz(url)[0] == 503, timeout=60, what="/healthz to report the full disk")
        filler.unlink()
        db = small / "edged.db"
        wait_for(lambda: query(db, "SELECT count(*) FROM records")[0][0] >= MESSAGES, timeout=120,
                 what="everything to arrive after space returned")
        wait_for(lambda: healthz(url)[0] == 200, timeout=30, what="/healthz to be ok again")
        assert daemon.alive()
        assert daemon.terminate() == 0
        assert query(db, "SELECT count(DISTINCT text) FROM records")[0][0] == MESSAGES
        log = daemon.log_text()
        assert "writing works" in log or "written again" in log
        assert "Traceback" not in log


def test_status_says_paused_and_the_watchdog_is_fed_while_the_disk_is_full():
    from types import SimpleNamespace

    from edged.systemd import ServiceMonitor
    from tests.test_systemd import Clock, FakeAnalyzer, FakeNotifier, FakeWorker

    clock, notifier, analyzer = Clock(), FakeNotifier(), FakeAnalyzer()
    writer = SimpleNamespace(storage_error=None, records_inserted=0)
    workers = [FakeWorker("store-writer"), analyzer]
    monitor = ServiceMonitor(notifier, workers=lambda: workers, analyzer=analyzer, writer=writer, clock=clock,
                             stuck_after_s=300, watchdog_s=1.0, status_interval_s=5.0)
    monitor.ready()
    notifier.take()
    writer.storage_error = "database or disk is full"
    analyzer.busy_since = clock.now  # waiting for the writer, which waits for the disk
    clock.now += 1
    monitor.check()
    sent = notifier.take()
    assert "STATUS=paused: the database cannot be written (database or disk is full); resumes by itself" in sent
    for _ in range(400):  # far past stuck_after_s: still a pause, not a hang
        clock.now += 1
        assert monitor.check() == []
    assert "WATCHDOG=1" in notifier.take()
    writer.storage_error = None
    analyzer.busy_since = None
    clock.now += 1
    monitor.check()
    assert any(m.startswith("STATUS=") and "paused" not in m for m in notifier.take())
