"""Faults, measured: ``python -m bench.faults [--quick] [--parts hostile,slow,disk] [--full-s S]``.

- ``hostile``: the real daemon (analysis off) with a real broker takes a seeded corpus of hostile MQTT
  payloads mixed with valid messages, hostile HTTP requests against its page, and an abused log
  directory (not-files, garbage files, NULs, rewrites) beside valid log lines. Counts: daemon exits,
  tracebacks in its log, valid records lost or duplicated.
- ``slow``: 64 clients trickle header lines into the page while /healthz is timed.
- ``disk``: the daemon's database on a small tmpfs, sustained MQTT input, the disk full for
  ``--full-s`` seconds (60 by default), a kill -9 at the end of it, then space back: is everything
  there exactly once, and did the daemon stay up while full. Needs root (mount); skipped otherwise.

Writes bench/results/faults.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import write_result
from tests.support.daemon import Daemon, query, write_config
from tests.support.hostile import hostile_payloads, valid_messages
from tests.support.mosquitto import Mosquitto
from tests.support.wait import wait_for
from tests.test_faults_web import _hostile_requests, send_hostile_request

SLOW_CLIENTS = 64


def _publisher(broker: Mosquitto) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _publish(broker: Mosquitto, messages) -> None:
    client = _publisher(broker)
    try:
        for info in [client.publish(t, p, qos=1) for t, p in messages]:
            info.wait_for_publish(timeout=120)
    finally:
        client.disconnect()
        client.loop_stop()


def _healthz(url: str, timeout: float = 5.0) -> tuple[int, dict, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=timeout) as resp:
            return resp.status, json.loads(resp.read()), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), time.monotonic() - started
    except OSError as exc:
        return 0, {"error": str(exc)}, time.monotonic() - started


def _tracebacks(text: str) -> int:
    return text.count("Traceback (most recent call last)")


def _abuse_directory(logs: Path, seed: int, garbage_files: int) -> int:
    """The log-directory abuse cases; returns how many hostile inputs it made."""
    rng = random.Random(seed)
    made = 0
    (logs / "dir.log").mkdir()
    os.mkfifo(logs / "fifo.log")
    os.symlink(logs / "nowhere", logs / "dangling.log")
    os.symlink(logs / "loop.log", logs / "loop.log")
    (logs / "binary.log").write_bytes(b"\0\1\2" * 5000)
    (logs / "nul.log").write_bytes(b"ok\n" * 5000 + b"a \0 nul\n" + b"y" * 300_000 + b"\n")
    made += 6
    for i in range(garbage_files):
        (logs / f"garbage-{i}.log").write_bytes(bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 20_000))))
        made += 1
    return made


def _rewrite_with_banner(path: Path, prefix: str, n: int) -> None:
    banner = "# banner " * 150 + "\n"
    with open(path, "a+") as f:
        f.seek(0)
        f.truncate()
        f.write(banner + "".join(f"{prefix} {i}\n" for i in range(n)))


def part_hostile(tmp: Path, quick: bool) -> dict:
    n_mqtt, n_valid, n_http, n_garbage = (2000, 300, 500, 20) if quick else (8000, 1000, 2000, 100)
    broker = Mosquitto(tmp / "broker")
    broker.start()
    logs = tmp / "logs"
    logs.mkdir()
    config = write_config(tmp / "edged.toml", {
        "store": {"path": str(tmp / "edged.db")},
        "logs": {"paths": [str(logs / "*.log")], "rescan_interval_s": 0.5},
        "mqtt": {"url": broker.url, "client_id": "edged-bench", "topics": ["factory/#"]},
        "analysis": {"enabled": False},
    })
    daemon = Daemon(tmp, config)
    daemon.start()
    url = daemon.web_url()
    port = int(url.rsplit(":", 1)[1])
    file_inputs = _abuse_directory(logs, 14, n_garbage)
    (logs / "valid.log").write_text("".join(f"valid line {i}\n" for i in range(1000)))
    rewritten = logs / "rewritten.log"
    _rewrite_with_banner(rewritten, "before", 10)
    messages = hostile_payloads(seed=14, n=n_mqtt) + valid_messages(n_valid)
    random.Random(14).shuffle(messages)
    started = time.monotonic()
    _publish(broker, messages)
    time.sleep(1)
    _rewrite_with_banner(rewritten, "after", 30)
    file_inputs += 1
    http_sent = 0
    for payload in _hostile_requests(seed=14, n=n_http):
        send_hostile_request(port, payload)
        http_sent += 1
    _publish(broker, [("factory/end/logs", b'{"id": "end", "text": "sentinel"}')])
    db = tmp / "edged.db"
    wait_for(lambda: query(db, "SELECT count(*) FROM records WHERE text = 'sentinel'")[0][0] == 1, timeout=300,
             what="the sentinel")
    try:
        wait_for(lambda: query(db, "SELECT count(DISTINCT text) FROM records WHERE text LIKE 'after %'")[0][0] >= 30,
                 timeout=30, what="the rewritten file")
    except AssertionError:
        pass  # counted below as lost
    elapsed = time.monotonic() - started
    alive = daemon.alive()
    code = daemon.terminate() if alive else daemon.proc.returncode
    valid_count, valid_distinct = query(db, "SELECT count(*), count(DISTINCT text) FROM records WHERE text LIKE 'valid %'")[0]
    after = query(db, "SELECT count(*), count(DISTINCT text) FROM records WHERE text LIKE 'after %'")[0]
    log = daemon.log_text()
    broker.stop()
    valid_expected = n_valid + 1000 + 30  # MQTT, valid.log, the rewritten file's second content
    got = valid_distinct + after[1]
    return {
        "hostile_inputs": {"mqtt": n_mqtt, "http": http_sent, "files": file_inputs,
                           "total": n_mqtt + http_sent + file_inputs},
        "valid_inputs": valid_expected,
        "daemon_exits": 0 if alive else 1,
        "exit_code_at_stop": code,
        "tracebacks_in_log": _tracebacks(log),
        "valid_lost": valid_expected - got,
        "empty_id_messages": sum(1 for _, p in messages if b"empty-id" in p),
        "empty_id_records": query(db, "SELECT count(*) FROM records WHERE text LIKE 'empty-id %'")[0][0],
        "valid_duplicated": (valid_count - valid_distinct) + (after[0] - after[1]),
        "rejected_rows": query(db, "SELECT count(*) FROM rejected")[0][0],
        "files_truncated_counted": (query(db, "SELECT value FROM counters WHERE name = 'files.truncated'") or [(0,)])[0][0],
        "seconds": round(elapsed, 1),
    }


def part_slow(tmp: Path, quick: bool) -> dict:
    config = write_config(tmp / "edged.toml", {"store": {"path": str(tmp / "edged.db")}, "logs": {"paths": []},
                                                "analysis": {"enabled": False}})
    daemon = Daemon(tmp, config)
    daemon.start()
    url = daemon.web_url()
    port = int(url.rsplit(":", 1)[1])
    stop = threading.Event()
    cut = [0]

    def trickle() -> None:
        while not stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                while not stop.wait(3.0):
                    sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                cut[0] += 1
            finally:
                sock.close()

    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(SLOW_CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(1)
    times, failures = [], 0
    end = time.monotonic() + (15 if quick else 40)
    while time.monotonic() < end:
        status, _, took = _healthz(url, timeout=5)
        if status != 200:
            failures += 1
        times.append(took)
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(5)
    daemon.terminate()
    times.sort()
    return {"slow_clients": SLOW_CLIENTS, "header_every_s": 3.0, "requests": len(times), "failures": failures,
            "p50_ms": round(1000 * times[len(times) // 2], 1), "max_ms": round(1000 * times[-1], 1),
            "over_1s": sum(1 for t in times if t >= 1.0), "slow_connections_cut": cut[0],
            "tracebacks_in_log": _tracebacks(daemon.log_text())}


def part_disk(tmp: Path, quick: bool, full_s: float) -> dict:
    if os.geteuid() != 0:
        return {"skipped": "needs root to mount a tmpfs"}
    small = tmp / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(small)]).returncode != 0:
        return {"skipped": "mount failed"}
    broker = Mosquitto(tmp / "broker")
    broker.start()
    try:
        config = write_config(tmp / "edged.toml", {
            "store": {"path": str(small / "edged.db"), "check_interval_s": 0.5},
            "logs": {"paths": []},
            "mqtt": {"url": broker.url, "client_id": "edged-disk", "reconnect_min_s": 0.1, "reconnect_max_s": 1},
            "analysis": {"enabled": False},
        })
        daemon = Daemon(tmp, config)
        daemon.start()
        url = daemon.web_url()
        rate_per_s = 200
        published = [0]
        stop = threading.Event()
        pad = "p" * 400

        def sustain() -> None:
            client = _publisher(broker)
            i = 0
            while not stop.is_set():
                t0 = time.monotonic()
                for _ in range(rate_per_s // 10):
                    client.publish("factory/press-1/logs", json.dumps({"id": f"s{i}", "text": f"sustained {i} {pad}"}), qos=1)
                    i += 1
                published[0] = i
                stop.wait(max(0.0, 0.1 - (time.monotonic() - t0)))
            time.sleep(2)
            client.disconnect()
            client.loop_stop()

        pub = threading.Thread(target=sustain, daemon=True)
        pub.start()
        time.sleep(3)
        filler = small / "filler"
        filler.write_bytes(b"\0" * max(0, shutil.disk_usage(small).free - 200_000))
        full_at = time.monotonic()
        wait_for(lambda: _healthz(url)[0] == 503, timeout=60, what="the pause")
        paused_after_s = time.monotonic() - full_at
        samples = []
        while time.monotonic() - full_at < full_s:
            samples.append((_healthz(url)[0], daemon.alive()))
            time.sleep(1)
        stayed_up = all(alive for _, alive in samples)
        stored_when_full = query(small / "edged.db", "SELECT count(*) FROM records")[0][0]
        daemon.kill9()  # at the end of the full period: nothing unstored may have been acknowledged
        stop.set()
        pub.join(10)
        total = published[0]
        filler.unlink()
        daemon.start()
        back_at = time.monotonic()
        db = small / "edged.db"
        wait_for(lambda: query(db, "SELECT count(*) FROM records")[0][0] >= total, timeout=300,
                 what="everything after space returned")
        caught_up_s = time.monotonic() - back_at
        daemon.terminate()
        count, distinct = query(db, "SELECT count(*), count(DISTINCT text) FROM records")[0]
        log = daemon.log_text()
        return {"full_s": full_s, "rate_msgs_per_s": rate_per_s, "published": total,
                "paused_after_full_s": round(paused_after_s, 1),
                "healthz_503_while_full": sum(1 for s, _ in samples if s == 503), "healthz_samples": len(samples),
                "stayed_up_while_full": stayed_up, "stored_when_full": stored_when_full,
                "stored_at_end": count, "distinct_at_end": distinct, "lost": total - distinct,
                "duplicated": count - distinct, "caught_up_after_restart_s": round(caught_up_s, 1),
                "tracebacks_in_log": _tracebacks(log)}
    finally:
        broker.stop()
        subprocess.run(["umount", "-l", str(small)])


SMOKE_ARGS = ["--quick", "--parts", "slow"]  # the web part only: hostile and disk are in the fault suite


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--parts", default="hostile,slow,disk")
    p.add_argument("--full-s", type=float, default=None, help="how long the disk stays full (default 60, 10 with --quick)")
    args = p.parse_args(argv)
    if args.full_s is None:
        args.full_s = 10.0 if args.quick else 60.0
    parts = {x.strip() for x in args.parts.split(",")}
    results = {}
    for name, fn in (("hostile", part_hostile), ("slow", part_slow), ("disk", part_disk)):
        if name not in parts:
            continue
        with tempfile.TemporaryDirectory(prefix=f"edged-faults-{name}-") as tmp:
            results[name] = fn(Path(tmp), args.quick) if name != "disk" else fn(Path(tmp), args.quick, args.full_s)
        print(name, json.dumps(results[name]), file=sys.stderr)
    result = {"results": results}
    write_result("faults", result)
    return result


if __name__ == "__main__":
    main()
