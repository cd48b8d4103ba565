"""The ``edged`` command as an operator (or a script) runs it: a real subprocess, a real SQLite file.

Every command gets an explicit config that keeps the database and the watched logs in the test's
temporary directory, and runs with a clean environment so the machine's EDGED_* cannot interfere.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edged import __version__

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONSOLE_SCRIPT = Path(sys.executable).with_name("edged")
DEADLINE_S = 20.0


def clean_env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("EDGED_") and name not in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY")
    }


class Box:
    """A temporary working directory with a config pointing everything into it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "state" / "edged.db"
        self.logs = root / "logs"
        self.logs.mkdir()
        self.config = root / "edged-test.toml"
        self.write_config()

    def write_config(self, extra: str = "") -> None:
        self.config.write_text(
            f'[store]\npath = "{self.db}"\n'
            f'[logs]\npaths = ["{self.logs}/*.log"]\nrescan_interval_s = 0.5\n'
            # These tests are about the CLI and ingest; the real model is exercised in test_analysis_model.py.
            "[analysis]\nenabled = false\n"
            '[web]\nlisten = "127.0.0.1:0"\n'  # never the port a developer's `make run` holds
            + extra
        )

    def edged(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edged", *args, "--config", str(self.config)],
            cwd=self.root,
            env=clean_env(),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=60,
        )

    def status(self) -> dict:
        result = self.edged("status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def test_version_console_script(tmp_path):
    assert CONSOLE_SCRIPT.exists(), f"{CONSOLE_SCRIPT} missing: install the package (pip install -e .)"
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "version"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"edged {__version__}"


def test_version_python_module(box):
    result = subprocess.run(
        [sys.executable, "-m", "edged", "version"],
        cwd=box.root, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"edged {__version__}"


# -- config check --------------------------------------------------------------------------------


def test_config_check_prints_effective_config_with_password_redacted(box):
    secret = box.root / "mqtt_password"
    secret.write_text("hunter2-never-printed\n")
    box.write_config(f'[mqtt]\nurl = "mqtt://edged@broker"\npassword_file = "{secret}"\n')
    result = box.edged("config", "check")
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    effective = tomllib.loads(result.stdout)  # the header line is a TOML comment
    assert effective["mqtt"]["password"] == "<redacted>"
    assert effective["mqtt"]["url"] == "mqtt://edged@broker"
    assert effective["store"]["path"] == str(box.db)
    assert str(box.config) in result.stdout.splitlines()[0]


@pytest.mark.parametrize("command", [["config", "check"], ["status"], ["submit", "text"]])
def test_bad_config_exits_2_naming_key_and_file(box, command):
    box.write_config('[mqtt]\nurll = "mqtt://broker"\n')
    result = box.edged(*command)
    assert result.returncode == 2
    assert "unknown key [mqtt] urll" in result.stderr
    assert str(box.config) in result.stderr
    assert "Traceback" not in result.stderr


# -- submit and status ---------------------------------------------------------------------------


def test_submit_then_status(box):
    result = box.edged("submit", "--machine", "press-07", "spindle overheated, stopped at 14:02")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("s:")

    status = box.status()
    records = status["records"]
    assert records["total"] == 1
    assert records["by_kind"]["incident"] == 1
    assert set(records["by_status"]) == {"pending", "leased", "done", "parked"}
    assert status["rejected"]["total"] == 0
    assert status["db"]["bytes"] > 0


@pytest.mark.parametrize("args", [[], ["-"]], ids=["no-argument", "dash"])
def test_submit_reads_stdin(box, args):
    result = box.edged("submit", "--machine", "press-07", *args, stdin="coolant leak under the press\n")
    assert result.returncode == 0, result.stderr
    record_id = result.stdout.strip()
    with sqlite3.connect(box.db) as conn:
        row = conn.execute("SELECT text, machine, kind FROM records WHERE record_id = ?", (record_id,)).fetchone()
    assert row == ("coolant leak under the press", "press-07", "incident")


def test_submit_same_id_twice_stores_once(box):
    first = box.edged("submit", "--id", "ticket-4711", "guard door sensor broken")
    second = box.edged("submit", "--id", "ticket-4711", "guard door sensor broken")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.strip() == "s:ticket-4711"
    assert "already stored" in second.stdout
    assert box.status()["records"]["total"] == 1


@pytest.mark.parametrize("args, stdin", [([""], ""), ([], "  \n\n"), (["   "], "")], ids=["empty", "blank-stdin", "spaces"])
def test_submit_empty_text_fails(box, args, stdin):
    result = box.edged("submit", *args, stdin=stdin)
    assert result.returncode != 0
    assert "needs some text" in result.stderr
    assert "Traceback" not in result.stderr


def test_submit_applies_the_web_forms_checks(box):
    bell = box.edged("submit", "--machine", "press\x07", "coolant leak")
    assert bell.returncode == 2 and "the machine name contains control characters" in bell.stderr
    long = box.edged("submit", "x" * 20_001)
    assert long.returncode == 2 and "the report is longer than 20000 characters" in long.stderr
    assert "Traceback" not in bell.stderr + long.stderr


def test_status_without_database_names_the_path(box):
    result = box.edged("status")
    assert result.returncode != 0
    assert str(box.db) in result.stderr
    assert "Traceback" not in result.stderr
    assert not box.db.exists(), "status must not create the database"


# -- the daemon ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_ingests_a_log_line_and_stops_on_sigterm(box):
    stderr_path = box.root / "daemon.stderr"
    with stderr_path.open("w") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edged", "run", "--config", str(box.config)],
            cwd=box.root, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        # Written after start, so the line must reach the inbox through the running file source.
        wait_until(lambda: box.db.exists() or daemon.poll() is not None, "the database to be created", stderr_path)
        assert daemon.poll() is None, stderr_path.read_text()
        with (box.logs / "press-07.log").open("a") as log:
            log.write("2024-05-01T14:02:11 E1203 spindle temperature 92.5 C over limit\n")

        wait_until(lambda: log_records(box) >= 1, "the log line to be stored", stderr_path)

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, stderr_path.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

    banner = stderr_path.read_text()
    assert "state:" in banner
    assert str(box.db) in banner
    with sqlite3.connect(box.db) as conn:
        rows = conn.execute("SELECT machine, kind, text FROM records").fetchall()
    assert rows == [("press-07", "log", "2024-05-01T14:02:11 E1203 spindle temperature 92.5 C over limit")]


def log_records(box: Box) -> int:
    result = box.edged("status", "--json")
    if result.returncode != 0:  # the daemon may still be creating the schema
        return 0
    return json.loads(result.stdout)["records"]["by_kind"]["log"]


def wait_until(condition, what: str, stderr_path: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; daemon stderr:\n{stderr_path.read_text()}")
        time.sleep(0.1)
