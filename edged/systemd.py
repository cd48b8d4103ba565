"""Talking to systemd: readiness, status, watchdog pings and stopping (sd_notify), and when to ping.

``Notifier`` sends sd_notify messages to ``$NOTIFY_SOCKET``, through systemd-python (the optional
extra ``edged[systemd]``) when it imports, else itself by the documented datagram protocol: one
AF_UNIX SOCK_DGRAM datagram of newline-separated ``KEY=value`` assignments; a socket name starting
with ``@`` is in the abstract namespace. Without ``$NOTIFY_SOCKET`` (not run by systemd, or not
Type=notify) every call is a no-op.

``ServiceMonitor`` is what the daemon's health loop calls once per check: it pings the watchdog
(``WATCHDOG=1``, at half of ``$WATCHDOG_USEC``) only while every worker thread is alive and the
analyzer has not been on one batch for longer than ``[analysis] stuck_after_s``; so a hung edged is
killed and restarted by systemd (WatchdogSec= in systemd/edged.service). Every ``STATUS_INTERVAL_S``
it reports the backlog and the ingest and analysis rates as ``STATUS=`` (``systemctl status edged``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Callable, Mapping, Sequence

from edged.parts import AnalyzerView, Worker, WriterView

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 5.0  # how often STATUS= is refreshed; each refresh counts the backlog with two index scans


def _library_notify() -> Callable[[str], bool] | None:
    try:
        from systemd import daemon
    except ImportError:
        return None
    return daemon.notify


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings: half of ``$WATCHDOG_USEC``; None when the watchdog is off.

    Like sd_watchdog_enabled(3): ``$WATCHDOG_PID``, when set, must be this process.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID") or os.getpid())
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 2 / 1_000_000


class Notifier:
    """sd_notify(3) for this process. ``socket_path`` defaults to ``$NOTIFY_SOCKET``.

    ``use_library``: None = systemd-python when it imports, else the socket protocol; False = always
    the socket protocol; True = systemd-python (ImportError without it). Sending never raises: a
    service manager that went away is logged once, and the daemon goes on.
    """

    def __init__(self, socket_path: str | None = None, *, use_library: bool | None = None) -> None:
        self.socket_path = os.environ.get("NOTIFY_SOCKET") if socket_path is None else socket_path
        self._library: Callable[[str], bool] | None = None
        if use_library is not False:
            self._library = _library_notify()
            if use_library and self._library is None:
                raise ImportError("systemd-python is not installed (pip install 'edged[systemd]')")
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self.socket_path)

    @property
    def via(self) -> str:
        return "systemd-python" if self._library is not None else "socket"

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one message; True if it was sent."""
        if not self.enabled:
            return False
        # One assignment per line: a newline inside a value would start a bogus assignment.
        message = "\n".join(a.replace("\n", " ") for a in assignments)
        try:
            if self._library is not None:
                sent = self._send_library(message)
            else:
                self._send_socket(message)
                sent = True
        except OSError as exc:
            sent = False
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self.socket_path, exc)
        self._failed = not sent
        return sent

    def _send_library(self, message: str) -> bool:
        # libsystemd reads $NOTIFY_SOCKET itself; a Notifier given another socket_path uses the protocol.
        if self.socket_path != os.environ.get("NOTIFY_SOCKET"):
            self._send_socket(message)
            return True
        return bool(self._library(message))

    def _send_socket(self, message: str) -> None:
        path = self.socket_path
        assert path
        if path.startswith("@"):
            address = "\0" + path[1:]
        elif path.startswith("/"):
            address = path
        else:
            raise OSError(f"unsupported NOTIFY_SOCKET address {path!r}")
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.sendto(message.encode("utf-8", "replace"), address)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# -- the health loop's side ---------------------------------------------------------------------


def health_problems(
    workers: Sequence[Worker], busy_since: float | None, stuck_after_s: float, now: float
) -> list[str]:
    """Why edged is not healthy right now (empty when it is); ``busy_since``/``now`` are monotonic."""
    problems = [f"worker {w.name} is not running" for w in workers if not w.is_alive()]
    if busy_since is not None and now - busy_since > stuck_after_s:
        problems.append(f"analyzer on one batch for {now - busy_since:.0f} s (stuck_after_s = {stuck_after_s:g})")
    return problems


def count_backlog(reader: Any, has_outbox: bool = True) -> dict[str, int]:
    """Records waiting for the model (pending, leased) and results not yet delivered (unsent).

    Cheap: the ``records_status`` and the partial ``outbox_unsent`` indexes answer these.
    """
    counts = {"pending": 0, "leased": 0, "unsent": 0}
    for status, n in reader.execute(
        "SELECT status, count(*) FROM records WHERE status IN ('pending', 'leased') GROUP BY status"
    ).fetchall():
        counts[status] = n
    if has_outbox:
        counts["unsent"] = reader.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
    return counts


class ServiceMonitor:
    """Watchdog pings and STATUS= for the daemon; ``check()`` once per health-loop turn.

    ``workers()`` lists what must be alive; ``analyzer`` and ``writer`` (or None) are the daemon's
    parts as their read-only views (``edged.parts``): the analyzer's ``busy_since`` (monotonic, None
    while idle) and ``analyzed``, the writer's ``records_inserted``; ``reader`` is a read connection
    to the store (or None: no backlog in the status).
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        workers: Callable[[], Sequence[Worker]],
        analyzer: AnalyzerView | None = None,
        writer: WriterView | None = None,
        reader: Any = None,
        stuck_after_s: float = 300.0,
        watchdog_s: float | None = None,
        status_interval_s: float = STATUS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.workers = workers
        self.analyzer = analyzer
        self.writer = writer
        self.reader = reader
        self.stuck_after_s = stuck_after_s
        self.watchdog_s = watchdog_s
        self.status_interval_s = status_interval_s
        self.clock = clock
        self.pings = 0
        self.problems: list[str] = []
        self._storage_said: str | None = None  # the storage error STATUS= last told
        now = clock()
        self._next_ping = now
        self._next_status = now + status_interval_s
        self._last_rates = (now, self._ingested(), self._analyzed())

    def check_interval(self, default: float) -> float:
        """How long the health loop may sleep: its own interval, shorter if pings are due sooner."""
        return min(default, self.watchdog_s) if self.watchdog_s else default

    def ready(self) -> None:
        self.notifier.ready(self.status_text(self.clock()))
        self.check()

    def check(self) -> list[str]:
        """Ping the watchdog if healthy and due; refresh STATUS= if due. Returns the problems found."""
        now = self.clock()
        busy = self.analyzer.busy_since if self.analyzer is not None else None
        storage_error = self.writer.storage_error if self.writer is not None else None
        if storage_error is not None:
            # The analyzer waits for the writer, which waits for the disk: that is a pause, not a
            # hang, and a restart would not free the disk. Say so and keep the watchdog fed.
            busy = None
            if storage_error != self._storage_said:
                self.notifier.status(f"paused: the database cannot be written ({storage_error}); resumes by itself")
        elif self._storage_said is not None:
            self._next_status = now
        self._storage_said = storage_error
        problems = health_problems(self.workers(), busy, self.stuck_after_s, now)
        if problems != self.problems:
            if problems:
                log.error("unhealthy, withholding the watchdog ping: %s", "; ".join(problems))
                self.notifier.status("unhealthy: " + "; ".join(problems))
            elif self.problems:
                log.info("healthy again")
                self._next_status = now  # replace the "unhealthy" status at once
        self.problems = problems
        if not problems and self.watchdog_s and now >= self._next_ping:
            self.notifier.watchdog()
            self.pings += 1
            self._next_ping = now + self.watchdog_s
        if not problems and storage_error is None and now >= self._next_status:
            self.notifier.status(self.status_text(now))
            self._next_status = now + self.status_interval_s
        return problems

    def stopping(self) -> None:
        self.notifier.stopping("stopping")

    # -- STATUS= --------------------------------------------------------------------------------
    def status_text(self, now: float) -> str:
        parts = []
        if self.reader is not None:
            try:
                b = count_backlog(self.reader)
                parts.append(f"backlog {b['pending']} pending, {b['leased']} leased, {b['unsent']} unsent")
            except Exception as exc:  # a busy or locked database: the status waits for the next round
                log.debug("backlog count failed: %s", exc)
        then, ingested_then, analyzed_then = self._last_rates
        ingested, analyzed = self._ingested(), self._analyzed()
        elapsed = now - then
        if elapsed > 0:
            rates = f"ingest {(ingested - ingested_then) / elapsed:.1f}/s"
            if self.analyzer is not None:
                rates += f", analysis {(analyzed - analyzed_then) / elapsed:.1f}/s"
            parts.append(rates)
            self._last_rates = (now, ingested, analyzed)
        return "; ".join(parts) or "running"

    def _ingested(self) -> int:
        return self.writer.records_inserted if self.writer is not None else 0

    def _analyzed(self) -> int:
        return self.analyzer.analyzed if self.analyzer is not None else 0
