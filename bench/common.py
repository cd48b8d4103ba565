"""Helpers shared by the benchmarks: machine info, result files, peak memory, sample log lines."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
# Third-party data lives next to the repository, never inside it (see ../shared/data/README.md).
LOGHUB_DIR = REPO.parent / "shared" / "data" / "loghub"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "sqlite": sqlite3.sqlite_version,
        "git_commit": git_commit(),
    }
    try:
        # Other work on the machine: wall-clock figures are only comparable at similar load.
        info["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


class Unavailable(RuntimeError):
    """Something a bench needs is missing on this machine (the model file, mosquitto); the message says
    what and how to get it. The smoke test (tests/test_bench_smoke.py) skips such a bench with it."""


def results_dir() -> Path:
    """``bench/results``, or ``$BENCH_RESULTS_DIR`` (the smoke test writes its throwaway results there)."""
    return Path(os.environ.get("BENCH_RESULTS_DIR") or RESULTS_DIR)


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the machine info and a timestamp added."""
    out_dir = results_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": name,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **result,
    }
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB.

    VmHWM where /proc has it: on Linux, ``getrusage``'s ru_maxrss survives exec, so a worker started
    by a big parent would report at least the parent's size at fork. Else ru_maxrss.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 1024 if sys.platform != "darwin" else kib / 1024 / 1024, 1)


class Timer:
    """Wall and CPU time (user + sys, all threads of this process) of one measured stretch."""

    def start(self) -> "Timer":
        self._cpu0 = _cpu_seconds()
        self._t0 = time.perf_counter()
        return self

    def stop(self) -> dict[str, float]:
        seconds = time.perf_counter() - self._t0
        return {"seconds": round(seconds, 4), "cpu_seconds": round(_cpu_seconds() - self._cpu0, 4)}


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


# -- sample log lines -------------------------------------------------------------------------
def loghub_lines() -> tuple[list[bytes], list[str]]:
    """Raw lines (with their newline) of every Loghub system found, and the systems' names."""
    lines: list[bytes] = []
    systems: list[str] = []
    if not LOGHUB_DIR.is_dir():
        return lines, systems
    for path in sorted(LOGHUB_DIR.glob("*/*_2k.log")):
        with path.open("rb") as f:
            got = [ln if ln.endswith(b"\n") else ln + b"\n" for ln in f]
        if got:
            lines += got
            systems.append(path.parent.name)
    return lines, systems


_LEVELS = ["INFO"] * 14 + ["DEBUG"] * 4 + ["WARN"] * 3 + ["ERROR", "FATAL"]
_COMPONENTS = [
    "spindle", "axis.x", "axis.y", "coolant", "plc.io", "hmi", "drive.3", "conveyor", "robot.arm", "sensor.temp"
]  # fmt: skip
_MESSAGES = [
    "temperature {f:.1f} C within limits",
    "cycle {n} completed in {ms} ms",
    "axis position error {f:.3f} mm exceeds tolerance {t:.3f} mm",
    "connection to 10.0.{a}.{b}:{port} lost, retrying in {s} s",
    "tool {n} changed, wear {p}%",
    "alarm E{code}: coolant pressure low ({f:.2f} bar)",
    "received {n} bytes from plc-{a}",
    "job {hex} started by operator {a}",
]


def synthetic_lines(count: int = 5000, seed: int = 7) -> list[bytes]:
    """Log lines with timestamps, levels, components and numbers, for when Loghub is not there."""
    rnd = random.Random(seed)
    t0 = _dt.datetime(2025, 3, 1, 6, 0, 0)
    out = []
    for i in range(count):
        ts = t0 + _dt.timedelta(milliseconds=i * 137 + rnd.randrange(100))
        msg = rnd.choice(_MESSAGES).format(
            f=rnd.uniform(0, 120),
            t=rnd.uniform(0, 1),
            n=rnd.randrange(100000),
            ms=rnd.randrange(20, 9000),
            a=rnd.randrange(256),
            b=rnd.randrange(256),
            port=rnd.randrange(1024, 65535),
            s=rnd.randrange(1, 60),
            p=rnd.randrange(100),
            code=rnd.randrange(1000, 9999),
            hex=f"{rnd.getrandbits(48):012x}",
        )
        stamp = f"{ts:%Y-%m-%d %H:%M:%S},{ts.microsecond // 1000:03d}"
        line = f"{stamp} {rnd.choice(_LEVELS):5s} [{rnd.choice(_COMPONENTS)}] {msg}\n"
        out.append(line.encode())
    return out


def sample_lines() -> tuple[list[bytes], str]:
    """The lines benchmarks cycle through, and a description of where they come from."""
    lines, systems = loghub_lines()
    if lines:
        return lines, f"loghub raw .log lines of {len(systems)} systems: {', '.join(systems)}"
    return synthetic_lines(), "synthetic industrial log lines (../shared/data/loghub not found)"


def cycle(items: list, n: int) -> Iterator:
    for i in range(n):
        yield items[i % len(items)]


def analyzed_count(db: Path) -> int:
    """Results a running daemon has stored so far (0 while its database cannot be read yet)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT count(*) FROM results").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
