"""MqttSource against a real mosquitto and a real SQLite file.

No timing thresholds: every wait polls for a condition with a generous deadline.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edged.config.settings import MqttSettings
from edged.sources.mqtt import MqttSource
from edged.broker import ExponentialBackoff, parse_broker_url
from edged.store import StoreWriter, open_database
from edged.store.database import connect
from tests.support.mosquitto import Mosquitto, free_port

DEADLINE_S = 20.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def settings_for(broker: Mosquitto, client_id: str) -> MqttSettings:
    return MqttSettings(
        url=broker.url,
        client_id=client_id,
        keepalive_s=5,
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
    )


def publish(broker: Mosquitto, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    """Publish with a separate client and wait for every PUBACK."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        wait_until(client.is_connected, "the publisher to connect")
        infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=DEADLINE_S)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


class Store:
    """The database file, a reader connection of its own, and writers started on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_database(path)
        self.reader = connect(path, readonly=True)
        self.writers: list[StoreWriter] = []

    def writer(self, start: bool = True) -> StoreWriter:
        writer = StoreWriter(self.db)
        if start:
            writer.start()
        self.writers.append(writer)
        return writer

    def count(self, table: str) -> int:
        return self.reader.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def records(self) -> dict[str, tuple]:
        rows = self.reader.execute("SELECT text, machine, kind, priority, source, flags FROM records").fetchall()
        return {row[0]: row[1:] for row in rows}

    def counter(self, name: str) -> int:
        row = self.reader.execute("SELECT value FROM counters WHERE name = ?", [name]).fetchone()
        return row[0] if row else 0

    def close(self) -> None:
        for writer in self.writers:
            writer.stop()
        self.reader.conn.close()
        self.db.conn.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "edged.db")
    yield s
    s.close()


@pytest.fixture
def sources() -> Iterator[list[MqttSource]]:
    """Every source a test starts is stopped at the end, even when the test fails."""
    started: list[MqttSource] = []
    yield started
    for source in started:
        source.stop()


@pytest.fixture
def client_id() -> str:
    return f"edged-test-{uuid.uuid4().hex[:10]}"


def start_source(sources: list[MqttSource], settings: MqttSettings, writer: StoreWriter) -> MqttSource:
    source = MqttSource(settings, writer)
    source.start()
    sources.append(source)
    wait_until(lambda: source.subscribed, "the source to connect and subscribe")
    return source


def test_json_and_text_messages_become_records(mosquitto, store, sources, client_id) -> None:
    source = start_source(sources, settings_for(mosquitto, client_id), store.writer())
    publish(
        mosquitto,
        [
            ("factory/press-1/logs", json.dumps({"text": "spindle hot", "machine": "cnc-9", "ts": 1}).encode()),
            ("factory/press-2/logs", b"plain log line\n"),
            ("factory/press-3/incidents", "hydraulic leak, Öl am Boden".encode()),
            ("factory/press-4/logs", b'{"message": "reported as incident", "kind": "incident"}'),
        ],
    )
    wait_until(lambda: store.count("records") == 4, "4 records")
    assert store.records() == {
        "spindle hot": ("cnc-9", "log", 0, "mqtt:factory/press-1/logs", ""),
        "plain log line": ("press-2", "log", 0, "mqtt:factory/press-2/logs", ""),
        "hydraulic leak, Öl am Boden": ("press-3", "incident", 10, "mqtt:factory/press-3/incidents", ""),
        "reported as incident": ("press-4", "incident", 10, "mqtt:factory/press-4/logs", ""),
    }
    wait_until(lambda: source.acked == 4, "4 acks")
    assert (source.received, source.rejected, store.count("rejected")) == (4, 0, 0)


def test_broken_payloads_are_rejected_and_acked(mosquitto, store, sources, client_id) -> None:
    settings = settings_for(mosquitto, client_id)
    writer = store.writer()
    source = start_source(sources, settings, writer)
    broken = [
        b"{not json",
        b"",
        b"\x00\x01\x02 binary",
        b"[1, 2, 3]",
        b'{"text": "x", "kind": "alarm"}',
    ]
    publish(mosquitto, [("factory/m1/logs", payload) for payload in broken])
    wait_until(lambda: store.count("rejected") == len(broken), "the rejected rows")
    wait_until(lambda: source.acked == len(broken), "acks for the rejected messages")
    reasons = {r[0] for r in store.reader.execute("SELECT reason FROM rejected").fetchall()}
    assert reasons == {
        "malformed JSON",
        "empty payload",
        "binary payload",
        "JSON payload is not an object",
        "unknown kind",
    }
    source.stop()

    # Same client id, so the same broker session: anything unacked would come first, before the
    # sentinel published now (the broker delivers a session's messages in order).
    again = start_source(sources, settings, writer)
    publish(mosquitto, [("factory/m1/logs", b"sentinel")])
    wait_until(lambda: store.count("records") == 1, "the sentinel record")
    assert again.received == 1
    assert again.redelivered == 0
    assert store.count("rejected") == len(broken)


def test_messages_published_while_stopped_arrive_after_restart(mosquitto, store, sources, client_id) -> None:
    settings = settings_for(mosquitto, client_id)
    writer = store.writer()
    first = start_source(sources, settings, writer)  # creates the persistent session
    first.stop()
    assert not first.is_alive()

    publish(mosquitto, [("factory/m2/logs", f"while away {i}".encode()) for i in range(50)])
    second = start_source(sources, settings, writer)
    wait_until(lambda: store.count("records") == 50, "the 50 queued messages")
    assert set(store.records()) == {f"while away {i}" for i in range(50)}
    wait_until(lambda: second.acked == 50, "50 acks")


def test_reconnects_and_resubscribes_after_broker_restart(mosquitto, store, sources, client_id) -> None:
    source = start_source(sources, settings_for(mosquitto, client_id), store.writer())
    publish(mosquitto, [("factory/m3/logs", b"before restart")])
    wait_until(lambda: store.count("records") == 1, "the first record")

    mosquitto.kill()  # no persistence: the broker forgets the session and its subscriptions
    wait_until(lambda: not source.connected, "the source to notice the broker is gone")
    mosquitto.start()
    wait_until(lambda: source.connections == 2 and source.subscribed, "reconnect and resubscribe")

    publish(mosquitto, [("factory/m3/incidents", f"after restart {i}".encode()) for i in range(10)])
    wait_until(lambda: store.count("records") == 11, "the messages published after the restart")
    assert source.is_alive()
    assert store.records()["after restart 0"][:2] == ("m3", "incident")


def test_redelivered_messages_are_counted_not_stored_twice(mosquitto, store, sources, client_id) -> None:
    settings = settings_for(mosquitto, client_id)
    n = 20
    stalled = store.writer(start=False)  # takes the messages but commits nothing, so nothing is acked
    first = start_source(sources, settings, stalled)
    publish(mosquitto, [("factory/m4/logs", f"message {i}".encode()) for i in range(n)])
    wait_until(lambda: first.received == n, "the source to receive every message")
    assert first.acked == 0 and store.count("records") == 0
    first.stop()

    # The first copies land now; their acks are stale (that connection is gone) and never sent.
    stalled.start()
    stalled.stop()
    assert store.count("records") == n
    assert first.acked == 0

    second = start_source(sources, settings, store.writer())
    wait_until(lambda: store.counter("duplicates.mqtt") == n, "the redelivered copies to be counted")
    assert store.count("records") == n
    assert second.received == n
    assert second.redelivered == n  # mosquitto sets DUP on a resent PUBLISH
    wait_until(lambda: second.acked == n, "the redelivered copies to be acked")


class PeakWatchingSource(MqttSource):
    peak_uncommitted = 0

    def _ingest(self, msg: mqtt.MQTTMessage) -> None:
        super()._ingest(msg)
        self.peak_uncommitted = max(self.peak_uncommitted, self.uncommitted)


def test_backlog_is_read_no_faster_than_the_writer_commits(mosquitto, store, sources, client_id) -> None:
    # mosquitto 2.0.11 lets a session backlog far past its in-flight window once acks flow, so the
    # source must bound what waits for the writer itself.
    settings = settings_for(mosquitto, client_id)
    writer = store.writer()
    start_source(sources, settings, writer).stop()
    n = 2000
    publish(mosquitto, [("factory/m5/logs", f"backlog {i}".encode()) for i in range(n)])

    source = PeakWatchingSource(settings, writer)
    source.max_uncommitted = 10
    source.start()
    sources.append(source)
    wait_until(lambda: store.count("records") == n, "the whole backlog")
    assert 0 < source.peak_uncommitted <= 10
    wait_until(lambda: source.acked == n, "every ack")


def test_stop_while_broker_unreachable() -> None:
    settings = MqttSettings(
        url=f"mqtt://127.0.0.1:{free_port()}", client_id="edged-test-nobroker", reconnect_min_s=30, reconnect_max_s=60
    )
    source = MqttSource(settings, StoreWriter(None))  # type: ignore[arg-type]  # never reaches the store
    source.start()
    wait_until(lambda: source.connect_failures >= 1, "a failed connect")
    assert source.is_alive() and not source.connected
    source.stop()  # interrupts the 30 s backoff
    assert not source.is_alive()


def test_parse_broker_url() -> None:
    a = parse_broker_url("mqtt://broker.local")
    assert (a.host, a.port, a.username, a.tls) == ("broker.local", 1883, None, False)
    a = parse_broker_url("mqtts://edge%40site@10.0.0.5:9883")
    assert (a.host, a.port, a.username, a.tls) == ("10.0.0.5", 9883, "edge@site", True)
    assert str(parse_broker_url("mqtts://u@h")) == "mqtts://u@h:8883"
    with pytest.raises(ValueError):
        parse_broker_url("http://h")
    with pytest.raises(ValueError):
        parse_broker_url("mqtt://u:secret@h")


def test_backoff_doubles_with_jitter_and_resets() -> None:
    values = iter([0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    backoff = ExponentialBackoff(1.0, 4.0, jitter=0.2, rng=lambda: next(values))
    assert [round(backoff.next(), 6) for _ in range(5)] == [0.8, 2.4, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 1.0


def test_a_json_payloads_header_keys_reach_the_result(mosquitto, store, sources, client_id) -> None:
    """Broker -> record -> analysis: level, component and ts of a JSON payload are the line's header."""
    from edged.analysis.analyzer import Analyzer
    from edged.backends.fake import FakeBackend
    from edged.config.settings import AnalysisSettings

    writer = store.writer()
    start_source(sources, settings_for(mosquitto, client_id), writer)
    doc = {"message": "valve 3 stuck open", "level": "ERROR", "component": "hydraulics", "ts": 1700000000}
    publish(mosquitto, [("factory/press-1/logs", json.dumps(doc).encode())])
    wait_until(lambda: store.count("records") == 1, "the record")
    analyzer = Analyzer(AnalysisSettings(), FakeBackend(), writer, connect(store.path))
    assert analyzer.run_once() == 1
    header, fields = store.reader.execute("SELECT header, fields FROM results").fetchone()
    assert json.loads(header) == {"format": "json", "time": "1700000000", "level": "ERROR", "component": "hydraulics"}
    fields = json.loads(fields)
    assert (fields["event_time"], fields["level"]) == ("2023-11-14T22:13:20+00:00", "ERROR")
