"""A private mosquitto broker for tests: its own config, port and log, never the system broker.

``stop()`` / ``kill()`` and ``start()`` again reuse the same port, so clients can test reconnects.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable

DEBIAN_MOSQUITTO = Path("/usr/sbin/mosquitto")
# The Debian path, else one on PATH (the Makefile accepts either); a path that does not exist when neither.
MOSQUITTO = DEBIAN_MOSQUITTO if DEBIAN_MOSQUITTO.exists() else Path(shutil.which("mosquitto") or DEBIAN_MOSQUITTO)
MISSING_HINT = (
    f"{DEBIAN_MOSQUITTO} is missing: `make test` installs the Debian package mosquitto"
    " (or: apt-get install mosquitto)"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One broker process. Config, log and persistence files live in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        persistence: bool = False,
        extra_config: Iterable[str] = (),
        binary: Path = MOSQUITTO,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistence = persistence
        self.extra_config = list(extra_config)
        self.binary = Path(binary)
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            # Tests queue many messages for offline sessions; the defaults (1000 queued, 20 in
            # flight) would drop or throttle them.
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "max_inflight_messages 100",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto drops to user "mosquitto", which cannot write to a private tmp dir.
            lines.append(f"user {getpass.getuser()}")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/"]
        else:
            lines.append("persistence false")
        lines += self.extra_config
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        if not self.binary.exists():
            raise FileNotFoundError(MISSING_HINT)
        if self.running:
            raise RuntimeError("mosquitto is already running")
        self.conf_path.write_text(self.config_text())
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_listening(timeout)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: a clean shutdown (with persistence on, the session state is saved)."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing anything cleanly."""
        self._signal(signal.SIGKILL, 10.0)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _signal(self, sig: int, timeout: float) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _wait_listening(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with status {self.proc.returncode} on port {self.port}:\n"
                    + self.log_text()[-2000:]
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s")
                time.sleep(0.02)

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
