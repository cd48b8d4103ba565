"""Web page and API latency (p50/p95) under concurrent requests, with the daemon idle and while it
ingests and analyzes.

The real daemon runs as a subprocess (``python -m edged run``) with ``[backend] type = "fake"``: the
scripted backend answers at once, so the analyzer turns records into results, templates and outbox
rows as fast as the store takes them; the page is measured, not the model. Its log directory is
seeded with ``--seed-lines`` lines (Loghub when ../shared/data/loghub exists, else synthetic), and
the run waits until they are all analyzed, so the queries read a filled database.

Two phases, same requests, same run:
- ``idle``: nothing else happens in the daemon.
- ``loaded``: a writer appends ``--rate`` lines/s to a watched log file during the whole phase, so
  the file source, the store writer and the analyzer are busy beside the web threads.

In each phase ``--threads`` client threads (default 4) send ``--requests`` requests in all (and go on
until the phase has lasted ``--min-seconds``), cycling through the endpoints below (a new connection per request, as the server speaks HTTP/1.0). Per
endpoint: p50, p95, max and errors. Run: ``python -m bench.web [--quick]``. Writes bench/results/web.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/web.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import sample_lines, write_result

ENDPOINTS = [
    "/api/status",
    "/api/results?limit=50",
    "/api/results?q=error&limit=50",
    "/api/results?severity=3&since=24h&limit=50",
    "/api/records/{record_id}",
    "/",
    "/results",
    "/results?q=error",
    "/records/{record_id}",
    "/metrics",
    "/healthz",
]


def log(msg: str) -> None:
    print(f"[bench.web] {msg}", file=sys.stderr, flush=True)


class DaemonProcess:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.config = tmp / "edged.toml"
        self.config.write_text(
            f'[store]\npath = "{tmp / "state" / "edged.db"}"\n'
            f'[logs]\npaths = ["{self.logs}/*.log"]\nrescan_interval_s = 1.0\n'
            '[backend]\ntype = "fake"\n[analysis]\ndigest_interval_s = 0\n'
            '[web]\nlisten = "127.0.0.1:0"\n'
        )
        self.proc: subprocess.Popen | None = None
        self.stderr: list[str] = []
        self.url = ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_") and k != "STATE_DIRECTORY"}
        self.proc = subprocess.Popen([sys.executable, "-m", "edged", "run", "--config", str(self.config)],
                                     cwd=self.tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.stderr.append(line)
                if match := re.match(r"\s+web:\s+(http://[^\s;]+)", line):
                    self.url = match.group(1)
                if " ready" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60) or not self.url:
            raise RuntimeError("edged run did not start:\n" + "".join(self.stderr)[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kib(self, field: str) -> int | None:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except (OSError, AttributeError):
            pass
        return None


def get(base: str, path: str) -> tuple[int, bytes]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def db_counts(db: Path) -> tuple[int, int]:
    """(records, results) read from the database itself: /api/status may be a couple of seconds old."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return (conn.execute("SELECT count(*) FROM records").fetchone()[0],
                conn.execute("SELECT count(*) FROM results").fetchone()[0])
    finally:
        conn.close()


def status(base: str) -> dict[str, Any]:
    code, body = get(base, "/api/status")
    return json.loads(body) if code == 200 else {}


def wait_analyzed(base: str, at_least: int, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(base)
        by = st.get("records", {}).get("by_status", {})
        if st and by.get("pending", 1) + by.get("leased", 1) == 0 and st["analysis"]["results"] >= at_least:
            return st
        time.sleep(0.5)
    raise RuntimeError(f"the daemon did not analyze {at_least} records within {timeout:.0f} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_phase(base: str, paths: list[str], threads: int, requests: int, min_seconds: float) -> dict[str, Any]:
    """At least ``requests`` requests and at least ``min_seconds`` (so background work shows)."""
    latencies: dict[str, list[float]] = {p: [] for p in paths}
    errors: dict[str, int] = {p: 0 for p in paths}
    lock = threading.Lock()
    sent = [0]
    until = time.monotonic() + min_seconds

    def client(offset: int) -> None:
        i = offset
        while True:
            with lock:
                if sent[0] >= requests and time.monotonic() >= until:
                    return
                sent[0] += 1
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            try:
                code, _ = get(base, path)
            except OSError:
                code = 0
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                latencies[path].append(ms)
                if code != 200:
                    errors[path] += 1

    workers = [threading.Thread(target=client, args=(k * 3,)) for k in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - t0
    everything = [ms for values in latencies.values() for ms in values]
    return {
        "requests": len(everything),
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(everything) / seconds, 1),
        "all": _summary(everything, sum(errors.values())),
        "endpoints": {p: _summary(v, errors[p]) for p, v in latencies.items()},
    }


def _summary(values: list[float], errors: int) -> dict[str, Any]:
    if not values:
        return {"n": 0, "errors": errors}
    return {"n": len(values), "p50_ms": round(statistics.median(values), 1), "p95_ms": round(percentile(values, 0.95), 1),
            "max_ms": round(max(values), 1), "errors": errors}


class LineWriter(threading.Thread):
    """Appends lines to a watched file at a steady rate until stopped."""

    def __init__(self, path: Path, lines: list[bytes], rate: float) -> None:
        super().__init__(daemon=True)
        self.path, self.lines, self.rate = path, lines, rate
        self.written = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        with open(self.path, "ab", buffering=0) as f:
            while not self.stop_event.is_set():
                due = int((time.monotonic() - t0) * self.rate)
                if due > self.written:
                    chunk = [self.lines[(self.written + k) % len(self.lines)] for k in range(due - self.written)]
                    f.write(b"".join(chunk))
                    self.written = due
                self.stop_event.wait(0.05)


# The smallest run (bench/README.md, "Smoke runs"): a small database, a few requests per phase.
SMOKE_ARGS = ["--seed-lines", "300", "--requests", "20", "--threads", "2", "--min-seconds", "0.5", "--rate", "50"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.split("\n")[0])
    p.add_argument("--seed-lines", type=int, default=20_000, help="lines in the database before measuring")
    p.add_argument("--requests", type=int, default=800, help="requests per phase")
    p.add_argument("--threads", type=int, default=4, help="concurrent clients")
    p.add_argument("--min-seconds", type=float, default=15.0, help="each phase lasts at least this long")
    p.add_argument("--rate", type=float, default=500.0, help="lines/s appended during the loaded phase")
    p.add_argument("--quick", action="store_true", help="5,000 seed lines, 200 requests and 5 s per phase")
    args = p.parse_args(argv)
    if args.quick:
        args.seed_lines, args.requests, args.min_seconds = 5000, 200, 5.0
    lines, source = sample_lines()
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp_name:
        tmp = Path(tmp_name)
        daemon = DaemonProcess(tmp)
        seed = [lines[i % len(lines)] for i in range(args.seed_lines)]
        (daemon.logs / "seed.log").write_bytes(b"".join(seed))
        daemon.start()
        try:
            base = daemon.url
            log(f"daemon on {base}; waiting until {args.seed_lines:,} seed lines are analyzed")
            before = wait_analyzed(base, args.seed_lines)
            code, body = get(base, "/api/results?limit=1")
            record_id = json.loads(body)["results"][0]["record_id"]
            from urllib.parse import quote

            paths = [e.replace("{record_id}", quote(record_id, safe="")) for e in ENDPOINTS]
            get(base, "/")  # warm the connection pool and the status cache
            log(f"idle: {args.requests} requests, {args.threads} threads")
            idle = run_phase(base, paths, args.threads, args.requests, args.min_seconds)
            writer = LineWriter(daemon.logs / "live.log", lines, args.rate)
            writer.start()
            db = tmp / "state" / "edged.db"
            seeded = db_counts(db)[0]
            deadline = time.monotonic() + 30
            while db_counts(db)[0] == seeded and time.monotonic() < deadline:  # the new file is being read
                time.sleep(0.2)
            time.sleep(1.0)
            records0, results0 = db_counts(db)
            log(f"loaded: {args.requests} requests while {args.rate:.0f} lines/s are appended")
            loaded = run_phase(base, paths, args.threads, args.requests, args.min_seconds)
            records1, results1 = db_counts(db)
            writer.stop_event.set()
            writer.join()
            span = loaded["seconds"]
            loaded["background"] = {
                "lines_appended_per_s": args.rate,
                "records_ingested_during_phase": records1 - records0,
                "results_stored_during_phase": results1 - results0,
                "ingest_per_s": round((records1 - records0) / span, 1),
                "analysis_per_s": round((results1 - results0) / span, 1),
            }
            rss = {"daemon_rss_mib": round((daemon.kib("VmRSS") or 0) / 1024, 1),
                   "daemon_peak_rss_mib": round((daemon.kib("VmHWM") or 0) / 1024, 1)}
        finally:
            daemon.stop()
    result = {
        "config": {"seed_lines": args.seed_lines, "requests_per_phase": args.requests, "threads": args.threads,
                   "rate_lines_per_s": args.rate, "lines": source, "backend": "fake",
                   "db_records_at_start": before["records"]["total"], "db_bytes_at_start": before["db"]["bytes"]},
        "results": {"idle": idle, "loaded": loaded},
        "memory": rss,
    }
    path = write_result("web", result)
    for name, phase in result["results"].items():
        a = phase["all"]
        log(f"{name}: p50 {a['p50_ms']} ms, p95 {a['p95_ms']} ms, {phase['requests_per_s']} req/s, errors {a['errors']}")
    log(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
