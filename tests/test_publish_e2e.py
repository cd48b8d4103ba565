"""Store-and-forward end to end: the daemon as a subprocess, a real mosquitto, a consumer.

The scripted backend (fake) answers: these tests are about delivery, not inference. Log lines of a
few templates are written to a file; every line becomes one result, and every result must reach
the consumer: unique result_ids == results produced, in order, duplicates only as repeats of the
same result_id (counted). Each test outages, kills or restarts something in the middle of a flush.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.daemon import REPO, Daemon, query, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.upstream import Subscriber, load_schema, schema_errors
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow

RESULTS = "edged/plant-1/box-1/results/#"
STATUS = "edged/plant-1/box-1/status"
DEADLINE_S = 60.0


def write_lines(logdir: Path, n: int) -> None:
    # A handful of templates, so the scripted backend answers almost everything from the cache.
    with open(logdir / "press.log", "a") as f:
        for i in range(n):
            f.write(f"press-{i % 4} spindle temperature {60 + i % 30}.{i % 10} C status ok seq {i}\n")


def daemon_config(tmp_path: Path, broker: Mosquitto) -> Path:
    logdir = tmp_path / "logs"
    logdir.mkdir(exist_ok=True)
    return write_config(
        tmp_path / "edged.toml",
        {
            "store": {"path": str(tmp_path / "edged.db")},
            "logs": {"paths": [str(logdir / "*.log")], "partial_line_timeout_s": 0.5, "rescan_interval_s": 1.0},
            "backend": {"type": "fake"},
            "analysis": {"batch_size": 1000, "digest_interval_s": 0},
            "upstream": {
                "url": broker.url,
                "client_id": "edged-e2e-up",
                "site": "plant-1",
                "node": "box-1",
                "keepalive_s": 5,
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 0.5,
            },
        },
    )


def broker_with_consumer(tmp_path: Path) -> tuple[Mosquitto, Subscriber]:
    """A persistent broker that knows the consumer's session (saved by a clean stop and start), so
    it queues results for the consumer while it is away, and keeps the subscription across a kill."""
    # No in-flight window and no Nagle delay towards the consumer: what the broker forwards goes out
    # at once, which keeps small the set of messages a killed broker had acknowledged to edged but
    # not yet passed on (see test_broker_killed_in_the_middle_of_a_flush).
    broker = Mosquitto(
        tmp_path / "broker", persistence=True, extra_config=["max_inflight_messages 0", "set_tcp_nodelay true"]
    ).start()
    consumer = Subscriber(broker.host, broker.port, [RESULTS, STATUS], client_id="central-consumer", clean=False)
    wait_for(consumer.subscribed.is_set, DEADLINE_S, what="consumer subscribed")
    broker.stop()  # SIGTERM: the session and its subscription are saved
    broker.start()
    wait_for(consumer.subscribed.is_set, DEADLINE_S, what="consumer subscribed again")
    return broker, consumer


def produced(db: Path) -> list[str]:
    return [r[0] for r in query(db, "SELECT result_id FROM outbox ORDER BY id")]


def unsent(db: Path) -> int:
    return query(db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")[0][0]


def counters(db: Path) -> dict[str, int]:
    return dict(query(db, "SELECT name, value FROM counters"))


def check_delivery(
    consumer: Subscriber, db: Path, expected: int, note: str = "", broker_lost: frozenset[str] = frozenset()
) -> int:
    """Every result arrived, in order, duplicates only as repeats; returns the duplicate count.
    ``broker_lost``: results a killed broker had acknowledged; they may be missing, nothing else."""
    ids = produced(db)
    assert len(ids) == expected
    try:
        wait_for(
            lambda: consumer.unique() >= expected - len(broker_lost) and set(ids) - set(consumer.result_ids()) <= broker_lost,
            DEADLINE_S, interval=0.5, what=f"{expected} result_ids at the consumer",
        )
    except AssertionError:
        pass  # reported below, with what the database says about the missing ones
    received = consumer.result_ids()
    missing = [i for i in ids if i not in received and i not in broker_lost]
    if missing:
        states = query(
            db, "SELECT sent_at IS NOT NULL, attempts, count(*), min(id), max(id), min(last_attempt_at), max(sent_at)"
            " FROM outbox WHERE result_id IN (%s) GROUP BY 1, 2"
            % ",".join("?" * len(missing[:500])), *missing[:500],
        )
        positions = [ids.index(m) for m in missing[:5]]
        raise AssertionError(
            f"{len(missing)} of {expected} result_ids never arrived (first at positions {positions});"
            f" (marked sent, attempts, count, min id, max id, first publish, last mark) of up to 500 of them: {states};"
            f" {note}"
        )
    assert set(received) <= set(ids), f"unknown result_ids: {len(set(received) - set(ids))}"
    first_seen = list(dict.fromkeys(m["result_id"] for m in consumer.results()))
    assert first_seen == [i for i in ids if i in received], "results arrived out of order"
    # A duplicate is the same result: same content, only published_at may differ.
    by_id: dict[str, dict] = {}
    for doc in consumer.results():
        doc = dict(doc)
        doc.pop("published_at")
        assert by_id.setdefault(doc["result_id"], doc) == doc
    duplicates = sum(received.values()) - len(received)
    return duplicates


def wait_all_produced(db: Path, n: int) -> None:
    wait_for(
        lambda: query(db, "SELECT count(*) FROM outbox")[0][0] >= n if db.exists() else False,
        DEADLINE_S, interval=0.2, what=f"{n} results produced",
    )


def test_outage_of_the_upstream_broker_loses_nothing(tmp_path):
    n = 10_000
    broker, consumer = broker_with_consumer(tmp_path)
    daemon = Daemon(tmp_path, daemon_config(tmp_path, broker))
    db = tmp_path / "edged.db"
    try:
        daemon.start()
        wait_for(lambda: [m.payload for m in consumer.on("/status")][-1:] == [b"online"], DEADLINE_S, what="online")
        broker.stop()
        write_lines(tmp_path / "logs", n)
        wait_all_produced(db, n)
        assert unsent(db) == n  # all of them waited in SQLite
        started = time.monotonic()
        broker.start()
        wait_for(lambda: unsent(db) == 0, DEADLINE_S, interval=0.1, what="the backlog flushed")
        flush_s = time.monotonic() - started
        duplicates = check_delivery(consumer, db, n)
        first, last = query(db, "SELECT min(last_attempt_at), max(sent_at) FROM outbox")[0]
        print(
            f"\n{n} results flushed after the outage: {n / flush_s:.0f} results/s from broker start to the last"
            f" mark ({flush_s:.2f} s), {n / (last - first):.0f} results/s first publish to last PUBACK;"
            f" {duplicates} duplicates"
        )
        assert duplicates == 0  # a clean outage: nothing was in flight when the broker went away
        schema = load_schema()
        docs = consumer.results()
        for doc in docs[:: max(1, len(docs) // 200)]:
            assert schema_errors(doc, schema) == [], doc
        assert daemon.terminate() == 0
        status = json.loads(
            subprocess.run(
                [sys.executable, "-m", "edged", "status", "--json", "--config", str(daemon.config)],
                cwd=tmp_path, env={"PYTHONPATH": str(REPO)}, capture_output=True, text=True, check=True,
            ).stdout
        )["upstream"]
        assert status["unsent"] == 0 and status["sent"] == n and status["oldest_unsent_s"] is None
        assert status["published"] == n and status["connects"] >= 2
        # Clean stop: the retained state is offline.
        wait_for(lambda: [m.payload for m in consumer.on("/status")][-1:] == [b"offline"], DEADLINE_S, what="offline")
    finally:
        if daemon.alive():
            daemon.kill9()
        consumer.close()
        broker.stop()


def test_broker_killed_in_the_middle_of_a_flush(tmp_path):
    """kill -9 of the broker: every result the broker had not acknowledged is sent again and arrives.

    mosquitto keeps messages in memory and saves them to disk only now and then (at a clean stop,
    every autosave_interval), and it sends the PUBACK without waiting for the consumer. So a broker
    killed with SIGKILL can lose results it has already acknowledged to edged; no publisher can get
    those back, because the acknowledgement is the broker taking over responsibility (MQTT QoS 1 is
    hop by hop). The test therefore tells them apart: a result first published before the kill and
    acknowledged on that same connection (attempts = 1) was the broker's; all others must arrive.
    """
    n = 10_000
    broker, consumer = broker_with_consumer(tmp_path)
    daemon = Daemon(tmp_path, daemon_config(tmp_path, broker))
    db = tmp_path / "edged.db"
    try:
        broker.stop()
        daemon.start()
        write_lines(tmp_path / "logs", n)
        wait_all_produced(db, n)
        broker.start()
        wait_for(lambda: consumer.unique() >= n // 4, DEADLINE_S, what="a flush under way")
        broker.kill()
        killed_at = time.time()
        at_kill = consumer.unique()
        broker.start()
        wait_for(lambda: unsent(db) == 0, DEADLINE_S, what="every row marked sent")
        acknowledged_by_killed_broker = frozenset(
            r[0] for r in query(
                db, "SELECT result_id FROM outbox WHERE sent_at IS NOT NULL AND attempts = 1 AND last_attempt_at < ?",
                killed_at,
            )
        )
        duplicates = check_delivery(
            consumer, db, n, f"killed at {killed_at:.3f} with {at_kill} delivered", acknowledged_by_killed_broker
        )
        lost_by_broker = len(set(produced(db)) - set(consumer.result_ids()))
        assert daemon.terminate() == 0
        resent = counters(db).get("publish.resent", 0)
        print(
            f"\nbroker killed with {at_kill} of {n} delivered; {resent} resent by edged, {duplicates} duplicates"
            f" at the consumer; {lost_by_broker} results the killed broker had acknowledged never left it"
        )
        assert at_kill < n, "the flush was over before the kill; the test proved nothing"
        assert resent > 0, "nothing was in flight at the kill; the test proved nothing"
        # Only what we sent again can arrive twice (the broker restarted from its saved state).
        assert duplicates <= resent
    finally:
        if daemon.alive():
            daemon.kill9()
        consumer.close()
        broker.stop()


def test_daemon_killed_in_the_middle_of_a_flush(tmp_path):
    n = 10_000
    broker, consumer = broker_with_consumer(tmp_path)
    daemon = Daemon(tmp_path, daemon_config(tmp_path, broker))
    db = tmp_path / "edged.db"
    try:
        broker.stop()  # the backlog builds up while the daemon cannot reach its broker
        daemon.start()
        write_lines(tmp_path / "logs", n)
        wait_all_produced(db, n)
        broker.start()
        wait_for(lambda: consumer.unique() >= n // 4, DEADLINE_S, what="a flush under way")
        daemon.kill9()
        at_kill = consumer.unique()
        left = unsent(db)
        daemon.start()
        duplicates = check_delivery(consumer, db, n)
        wait_for(lambda: unsent(db) == 0, DEADLINE_S, what="every row marked sent")
        assert daemon.terminate() == 0
        print(f"\ndaemon killed with {at_kill} of {n} delivered, {left} not marked sent; {duplicates} duplicates")
        assert 0 < left < n, "the kill was not in the middle of the flush"
        # Only rows not yet marked sent at the kill are sent again.
        assert duplicates <= left
    finally:
        if daemon.alive():
            daemon.kill9()
        consumer.close()
        broker.stop()
