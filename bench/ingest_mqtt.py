"""MQTT ingest: messages/s from a broker into the SQLite inbox, against a raw paho subscriber.

A private mosquitto (its own config in a temp dir, a free port on 127.0.0.1, in-flight window 100,
unlimited queue, no persistence; never the system broker) is started for every measurement. N unique
QoS 1 JSON messages (``{"text": <Loghub line>, "machine": ..., "ts": ...}`` on ``bench/<machine>/logs``)
come from a publisher in a separate process. Subscribers, each in its own process:

- ``raw``: a plain paho subscriber (QoS 1, persistent session, paho's automatic acks) that only
  counts messages: what the broker, paho and this machine allow.
- ``edged``: ``edged.sources.mqtt.MqttSource`` with a ``StoreWriter`` on a fresh database; a message
  counts once its row is committed (``writer.records_inserted``); it is acked only after that.

Two modes:

- ``live``: the subscriber is connected; the publisher sends. Rate = N / (first publish -> last
  message counted). With 2 cores, broker + publisher + subscriber share the CPUs, and the publisher
  may be the limit: its own rate is reported too.
- ``burst``: the subscriber's persistent session exists but it is offline while the publisher sends
  (the broker queues everything), then it starts and drains the queue: the realistic catch-up after a
  restart or outage. Rate = N / (subscriber start -> last message counted).

Run: ``python -m bench.ingest_mqtt [--messages 50000] [--repeat 1] [--modes live,burst]``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/ingest_mqtt.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, Timer, Unavailable, peak_rss_mib, rate, sample_lines, write_result

MOSQUITTO = Path("/usr/sbin/mosquitto")
MACHINES = 10
TOPIC_FILTER = "bench/+/logs"
SUBSCRIBERS = ("raw", "edged")
MODES = ("live", "burst")
TIMEOUT_S = 300.0


# -- a private broker ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One mosquitto process with its own config and log in ``workdir``, on a free local port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        if not MOSQUITTO.exists():
            raise SystemExit(f"{MOSQUITTO} is missing (apt-get install mosquitto)")
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_inflight_messages 100",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")  # else it drops to user "mosquitto"
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        with (self.workdir / "mosquitto.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [str(MOSQUITTO), "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start listening") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- worker processes ---------------------------------------------------------------------------
def _paho_client(client_id: str, clean_session: bool):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)


def publish(port: int, count: int) -> dict:
    """Send ``count`` unique QoS 1 messages; returns when the broker has acknowledged all of them."""
    lines, _ = sample_lines()
    texts = [ln.decode("utf-8", "replace").rstrip("\r\n") or "-" for ln in lines]
    t0_ts = 1_740_000_000.0
    msgs = []
    for i in range(count):
        machine = f"m{i % MACHINES:02d}"
        payload = json.dumps({"text": texts[i % len(texts)], "machine": machine, "ts": round(t0_ts + i * 0.001, 3)})
        msgs.append((f"bench/{machine}/logs", payload.encode()))
    done = threading.Event()
    acked = 0

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        nonlocal acked
        acked += 1
        if acked == count:
            done.set()

    client = _paho_client(f"bench-pub-{os.getpid()}", clean_session=True)
    client.max_inflight_messages_set(100)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    start_wall = time.time()
    timer = Timer().start()
    for topic, payload in msgs:
        client.publish(topic, payload, qos=1)
    if not done.wait(TIMEOUT_S):
        raise RuntimeError(f"publisher: only {acked} of {count} acknowledged")
    timing = timer.stop()
    client.disconnect()
    client.loop_stop()
    return {"count": count, "start_wall": start_wall, **timing, "msgs_per_s": rate(count, timing["seconds"])}


def _ready() -> None:
    print("READY", flush=True)


def subscribe_raw(port: int, count: int, client_id: str, phase: str) -> dict:
    got = 0
    done, subscribed = threading.Event(), threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(TOPIC_FILTER, qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
        subscribed.set()

    def on_message(client, userdata, msg) -> None:
        nonlocal got
        got += 1
        if got >= count:
            done.set()

    client = _paho_client(client_id, clean_session=False)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    timer = Timer().start()
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    if not subscribed.wait(30):
        raise RuntimeError("raw subscriber: no SUBACK")
    if phase == "session":
        client.disconnect()
        client.loop_stop()
        return {}
    if phase == "live":
        _ready()
    if not done.wait(TIMEOUT_S):
        raise RuntimeError(f"raw subscriber: only {got} of {count} messages")
    end_wall = time.time()
    timing = timer.stop()
    time.sleep(0.2)  # let paho send the last PUBACKs before we go
    client.disconnect()
    client.loop_stop()
    return {"count": got, "end_wall": end_wall, **timing}


def subscribe_edged(port: int, count: int, client_id: str, phase: str, db_path: Path) -> dict:
    from edged.config.settings import MqttSettings, StoreSettings
    from edged.sources.mqtt import MqttSource
    from edged.store.database import open_database
    from edged.store.writer import StoreWriter

    store = StoreSettings(path=db_path)
    settings = MqttSettings(
        url=f"mqtt://127.0.0.1:{port}", topics=[TOPIC_FILTER], incident_topics=[], client_id=client_id
    )
    db = open_database(db_path)
    writer = StoreWriter(db, max_batch_rows=store.batch_max_rows, max_queued_rows=store.queue_max_rows)
    writer.start()
    source = MqttSource(settings, writer)
    timer = Timer().start()
    source.start()
    deadline = time.monotonic() + 30
    while not getattr(source, "subscribed", True):
        if time.monotonic() > deadline or not source.is_alive():
            raise RuntimeError("edged MQTT source did not subscribe")
        time.sleep(0.002)
    if phase == "session":
        source.stop()
        writer.stop()
        db.close()
        return {}
    if phase == "live":
        _ready()
    deadline = time.monotonic() + TIMEOUT_S
    while writer.records_inserted < count:
        if time.monotonic() > deadline or not source.is_alive() or not writer.is_alive():
            raise RuntimeError(f"edged: only {writer.records_inserted} of {count} messages committed")
        time.sleep(0.001)
    end_wall = time.time()
    timing = timer.stop()
    time.sleep(0.2)  # the acks of the last commit
    stats = {k: getattr(source, k, None) for k in ("received", "redelivered", "rejected", "acked", "stale_acks")}
    source.stop()
    writer.stop()
    stored = db.execute("SELECT count(*) FROM records").fetchone()[0]
    extra = {"commits": writer.commits, "duplicates": writer.duplicates, "source": stats}
    db.close()
    if stored != count:
        raise RuntimeError(f"edged stored {stored} records, expected {count}")
    return {"count": stored, "end_wall": end_wall, **timing, **extra}


def worker(args: argparse.Namespace) -> None:
    if args.worker == "publish":
        out = publish(args.port, args.messages)
    elif args.worker == "raw":
        out = subscribe_raw(args.port, args.messages, args.client_id, args.phase)
    elif args.worker == "edged":
        out = subscribe_edged(args.port, args.messages, args.client_id, args.phase, Path(args.db))
    else:
        raise SystemExit(f"unknown worker {args.worker}")
    print(json.dumps({**out, "peak_rss_mib": peak_rss_mib()}), flush=True)


# -- orchestration ------------------------------------------------------------------------------
def _cmd(worker_name: str, port: int, n: int, **kw: str) -> list[str]:
    cmd = [sys.executable, "-m", "bench.ingest_mqtt", "--worker", worker_name]
    cmd += ["--port", str(port), "--messages", str(n)]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", v]
    return cmd


def _result(proc: subprocess.Popen, what: str) -> dict:
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def _run(cmd: list[str], what: str) -> dict:
    return _result(subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), what)


def measure(variant: str, mode: str, n: int, tmp: Path, run: int) -> dict:
    workdir = tmp / f"{mode}-{variant}-{run}"
    workdir.mkdir()
    client_id = f"bench-{variant}-{os.getpid()}-{run}"
    sub_kw = {"client_id": client_id, "db": str(workdir / "edged.db")}
    with Broker(workdir / "broker") as broker:
        if mode == "live":
            sub = subprocess.Popen(
                _cmd(variant, broker.port, n, phase="live", **sub_kw),
                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            line = sub.stdout.readline() if sub.stdout else ""
            if line.strip() != "READY":
                sub.kill()
                raise RuntimeError(f"{variant} subscriber did not get ready: {line!r} {sub.stderr.read()[-2000:]}")
            pub = _run(_cmd("publish", broker.port, n), "publisher")
            res = _result(sub, f"{variant} subscriber")
            res["seconds"] = round(res["end_wall"] - pub["start_wall"], 4)
        else:
            _run(_cmd(variant, broker.port, n, phase="session", **sub_kw), f"{variant} session")
            pub = _run(_cmd("publish", broker.port, n), "publisher")
            res = _run(_cmd(variant, broker.port, n, phase="drain", **sub_kw), f"{variant} drain")
    res["msgs_per_s"] = rate(n, res["seconds"])
    res["publisher_msgs_per_s"] = pub["msgs_per_s"]
    res.pop("end_wall", None)
    return res


# The smallest run (bench/README.md, "Smoke runs"): a few hundred messages, both modes once.
SMOKE_ARGS = ["--messages", "300", "--name", "ingest_mqtt_smoke"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=1, help="runs per variant and mode; the median is reported")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--variants", default=",".join(SUBSCRIBERS))
    p.add_argument("--name", default="ingest_mqtt", help="result file name (bench/results/<name>.json)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--client-id", help=argparse.SUPPRESS)
    p.add_argument("--phase", default="live", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    if not MOSQUITTO.exists():
        raise Unavailable(f"{MOSQUITTO} is missing (apt-get install mosquitto)")

    n = args.messages
    modes = [m for m in args.modes.split(",") if m]
    variants = [v for v in args.variants.split(",") if v]
    _, data = sample_lines()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    print(f"MQTT ingest: {n} QoS 1 messages ({data})", file=sys.stderr)
    summary: dict = {}
    ratios: dict = {}
    with tempfile.TemporaryDirectory(prefix="edged-bench-mqtt-") as tmp_name:
        tmp = Path(tmp_name)
        for mode in modes:
            runs: dict[str, list[dict]] = {v: [] for v in variants}
            for run in range(args.repeat):
                for variant in variants:
                    r = measure(variant, mode, n, tmp, run)
                    runs[variant].append(r)
                    print(
                        f"  {mode:5s} {variant:6s} {r['msgs_per_s']:>10,.0f} msgs/s  {r['seconds']:6.2f} s"
                        f"  (publisher {r['publisher_msgs_per_s']:,.0f}/s)  peak RSS {r['peak_rss_mib']:.0f} MiB",
                        file=sys.stderr,
                    )
            summary[mode] = {}
            for variant, rs in runs.items():
                med = statistics.median(r["seconds"] for r in rs)
                summary[mode][variant] = {
                    "msgs_per_s": rate(n, med),
                    "seconds": round(med, 3),
                    "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
                    "runs": rs,
                }
            if "edged" in summary[mode] and "raw" in summary[mode]:
                ratios[f"{mode}: edged/raw"] = round(
                    summary[mode]["edged"]["msgs_per_s"] / summary[mode]["raw"]["msgs_per_s"], 3
                )
    result = {
        "load_average_at_start": load_at_start,
        "input": {"messages": n, "qos": 1, "data": data, "topics": f"bench/m00..m{MACHINES - 1:02d}/logs"},
        "broker": "private mosquitto, max_inflight_messages 100, max_queued_messages 0, persistence false",
        "goal_msgs_per_s": 5_000,
        "results": summary,
        "ratios": ratios,
    }
    if "edged" in summary.get("live", {}):
        result["goal_met"] = summary["live"]["edged"]["msgs_per_s"] >= 5_000
    out = write_result(args.name, result)
    print(f"  ratios: {ratios}\n  -> {out}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
