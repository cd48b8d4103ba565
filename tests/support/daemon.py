"""The real daemon as a subprocess (``python -m edged run``), for kill -9 and restart tests."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, sections: dict[str, dict]) -> Path:
    """The web page listens on a free port unless the test says otherwise: tests (and people) run
    daemons side by side, and the default 127.0.0.1:8080 is the one a developer's ``make run`` has."""
    import tomli_w

    sections = {**sections, "web": {"listen": "127.0.0.1:0", **sections.get("web", {})}}
    path.write_text(tomli_w.dumps(sections))
    return path


class Daemon:
    def __init__(self, workdir: Path, config: Path) -> None:
        self.workdir = workdir
        self.config = config
        self.log_path = workdir / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, wait_ready: bool = True) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")}
        env["PYTHONPATH"] = str(REPO)
        log = open(self.log_path, "ab")
        log.write(f"--- start {self.starts}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edged", "run", "--config", str(self.config)],
            cwd=self.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.starts += 1
        if wait_ready:
            marker = f"--- start {self.starts - 1}\n"
            wait_for(
                lambda: self._log_since(marker).count("ready") or self.proc.poll() is not None,
                timeout=30,
                what="daemon ready",
            )
            assert self.proc.poll() is None, f"daemon exited early:\n{self.log_text()[-3000:]}"

    def _log_since(self, marker: str) -> str:
        text = self.log_text()
        return text[text.rfind(marker):]

    def web_url(self) -> str:
        """The page's address, as the banner of the latest start printed it."""
        text = self._log_since(f"--- start {self.starts - 1}\n")
        match = re.search(r"^  web:\s+(http://[^\s;]+)", text, re.M)
        assert match, f"no web address in the daemon's banner:\n{text[-2000:]}"
        return match.group(1)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def query(db_path: Path, sql: str, *params) -> list[tuple]:
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
