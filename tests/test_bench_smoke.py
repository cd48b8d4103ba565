"""Every benchmark still runs: each bench module is imported and run with its smallest settings
(``SMOKE_ARGS``, see bench/README.md "Smoke runs"), so a benchmark cannot rot unseen.

A bench is any module or package directly under bench/ except ``common``, ``__main__`` and names
starting with ``_``. Each runs in its own interpreter (the benches start subprocesses and write result
files), with ``BENCH_RESULTS_DIR`` pointing at a temp directory so real results are never overwritten.
Nothing here looks at how fast anything was: only that the bench finished without a failed part.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
HELPERS = {"common", "__main__", "__init__"}
DEFAULT_MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
UNAVAILABLE = 77  # the runner's exit code when the bench says something it needs is missing
HANG_GUARD_S = 1800  # not a speed check: only so that a hung bench fails instead of blocking the suite

RUNNER = f"""
import json, sys
import importlib
from bench.common import Unavailable
bench = importlib.import_module(sys.argv[1])
try:
    result = bench.main(list(bench.SMOKE_ARGS))
except Unavailable as exc:
    print(str(exc), file=sys.stderr)
    sys.exit({UNAVAILABLE})
failed = {{k: v["error"] for k, v in (result or {{}}).items() if isinstance(v, dict) and "error" in v}}
print(json.dumps({{"failed": failed}}))
"""


def bench_modules() -> list[str]:
    names = []
    for path in sorted(BENCH.iterdir()):
        if path.is_file() and path.suffix == ".py":
            name = path.stem
        elif path.is_dir() and (path / "__init__.py").exists():
            name = path.name
        else:
            continue
        if name not in HELPERS and not name.startswith("_"):
            names.append(f"bench.{name}")
    return names


def test_the_benches_are_found() -> None:
    found = bench_modules()
    assert {"bench.analysis", "bench.ingest_files", "bench.triage"} <= set(found), found


@pytest.mark.slow
@pytest.mark.parametrize("module", bench_modules())
def test_bench_runs_with_its_smallest_settings(module: str, tmp_path: Path) -> None:
    bench = importlib.import_module(module)
    assert callable(getattr(bench, "main", None)), f"{module} has no main(argv): see bench/README.md, Smoke runs"
    assert isinstance(getattr(bench, "SMOKE_ARGS", None), list), (
        f"{module} has no SMOKE_ARGS (the argv of its smallest run): see bench/README.md, Smoke runs"
    )
    if getattr(bench, "NEEDS_MODEL", False) and not DEFAULT_MODEL.exists():
        pytest.skip(f"{module} runs the default model and {DEFAULT_MODEL} is absent: `make model` fetches it")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")}
    env |= {"BENCH_RESULTS_DIR": str(tmp_path / "results"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", RUNNER, module], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=HANG_GUARD_S)
    if proc.returncode == UNAVAILABLE:
        pytest.skip(f"{module}: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"{module} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, f"{module}: parts failed: {report['failed']}\n{proc.stderr[-4000:]}"
    written = list((tmp_path / "results").glob("*.json"))
    assert written, f"{module} wrote no result file"
