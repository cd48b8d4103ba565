"""The composition root: builds the store, the writer and the sources from the settings, runs them
until SIGTERM/SIGINT, and stops them in the order that loses nothing.

Crash-only: if any worker thread dies, the daemon exits non-zero and lets systemd restart it; all
state is in SQLite, so a restart resumes where the last commit left off.
"""

from __future__ import annotations

import faulthandler
import functools
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Protocol

from edged import __version__, parts
from edged.config import LoadedConfig
from edged.logsetup import log_destination
from edged.sources.files.discovery import watch_root
from edged.store.database import connect, open_database
from edged.store.writer import StoreWriter
from edged.systemd import Notifier, ServiceMonitor, watchdog_interval

log = logging.getLogger(__name__)

HEALTH_CHECK_S = 1.0


class Worker(parts.Worker, Protocol):
    def start(self) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...


class Daemon:
    """Builds and runs the parts. To the web page and the service monitor it is an
    ``edged.parts.DaemonParts``: they read its parts through that view and nothing else."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.settings = loaded.settings
        self.stop_requested = threading.Event()
        self.writer: StoreWriter | None = None
        self.sources: list[Worker] = []
        self.backend = None
        self.analyzer = None
        self.publisher = None
        self.replies = None  # escalation replies, in a persistent session ([upstream] escalation)
        self.retention = None
        # sd_notify: a no-op unless systemd started us with $NOTIFY_SOCKET (Type=notify).
        self.notifier = Notifier()
        self.web = None

    def request_stop(self, signum: int | None = None, frame: object = None) -> None:
        if signum is not None:
            log.info("received %s; stopping", signal.Signals(signum).name)
        self.stop_requested.set()

    def start(self) -> None:
        s = self.settings
        # The settings were checked as they loaded (edged.config.rules) and the box by edged.preflight.
        # The model first: a missing or corrupt model stops edged before anything else starts.
        if s.analysis.enabled:
            self.notifier.status("loading the model")
            self.backend = build_backend(self.settings)
        self.notifier.status("opening the database")
        db = open_database(s.store.path, check=True)  # a damaged file stops the start, with what to do
        self.writer = StoreWriter(db, max_batch_rows=batch_rows_for(s.store), max_queued_rows=s.store.queue_max_rows)
        from edged.store.retention import Backpressure, Retention

        # The size cap, the backlog's high water and a failing disk hold the sources through one object.
        backpressure = Backpressure()
        self.writer.on_storage_error = functools.partial(_hold_for_storage, backpressure)
        self.writer.start()
        self.retention = Retention(
            s.store, self.writer, backpressure,
            count_unanalyzed=self.backend is not None, count_unsent=bool(s.upstream.url),
        )
        self.retention.start()
        if s.web.enabled:
            from edged.web.server import WebServer

            # Reads the other workers lazily. Its address is taken now (a port in use stops the start
            # here), but it serves only once everything else has started: no page for a failed start.
            self.web = WebServer(s, self, workers=self._workers, config_path=self.loaded.path)
            self.web.bind()
        if s.logs.paths:
            from edged.sources.files.source import FileSource

            self.sources.append(FileSource(s.logs, self.writer, connect(s.store.path), backpressure))
        if s.mqtt.url:
            from edged.sources.mqtt import MqttSource

            self.sources.append(MqttSource(s.mqtt, self.writer, backpressure))
        for source in self.sources:
            source.start()
        if s.upstream.url:
            from edged.publish.publisher import Publisher

            if s.upstream.escalation:
                self.replies = self._reply_subscriber()
            gate = self.replies.subscribed_once.is_set if self.replies is not None else None
            self.publisher = Publisher(s.upstream, self.writer, connect(s.store.path), send_gate=gate)
            if self.replies is not None:
                self.replies.on_subscribed = self.publisher.gate_opened
                self.replies.start()
            self.publisher.start()
        if self.backend is not None:
            from edged.analysis.analyzer import Analyzer
            from edged.analysis.headers import header_parser

            from edged.publish.outbox import OutboxBuilder

            self.analyzer = Analyzer(
                s.analysis, self.backend, self.writer, connect(s.store.path), OutboxBuilder(s.upstream),
                s.triage, header_parser(s.logs, s.mqtt), s.logs.timezone,
            )
            if self.publisher is not None:
                self.analyzer.on_stored = self.publisher.wake
            self.analyzer.start()
        if self.web is not None:
            self.web.start()

    def _refined(self) -> None:
        """A teacher's reply was stored: send the refined result, and let the analyzer reload the cached
        answers it may have changed."""
        if self.publisher is not None:
            self.publisher.wake()
        if self.analyzer is not None:
            self.analyzer.forget_cached_answers()

    def _reply_subscriber(self):
        from edged.publish.escalation import EscalationReplies
        from edged.publish.outbox import OutboxBuilder
        from edged.publish.replies import ReplySubscriber

        s = self.settings  # its response_client_id was checked with the settings (edged.config.rules)
        # A refined result wakes the publisher and refreshes the analyzer's cached answers (_refined).
        replies = EscalationReplies(
            OutboxBuilder(s.upstream), self.writer, self._refined,
            taxonomy=list(s.analysis.labels),
        )
        return ReplySubscriber(s.upstream, replies)

    def run(self) -> int:
        """Run until asked to stop; returns the process exit code."""
        try:
            self.start()
        except BaseException:
            try:  # what did start stops in the order that loses nothing; the caller reports why
                self.shutdown()
            except Exception:
                log.debug("stopping after a failed start", exc_info=True)
            raise
        self._print_banner()
        log.info("edged %s ready", __version__)
        # READY=1 only now: the store is open and migrated, the model loaded, every worker started.
        monitor = self._service_monitor()
        monitor.ready()
        code = 0
        try:
            while not self.stop_requested.wait(monitor.check_interval(HEALTH_CHECK_S)):
                dead = [w.name for w in self._workers() if not w.is_alive()]
                if dead:
                    log.error("worker(s) %s died; exiting so the service manager restarts edged", ", ".join(dead))
                    code = 1
                    break
                monitor.check()  # pings the watchdog only while healthy
        except Exception as exc:
            # After the start, a failure is the crash-only kind: exit 1 (restarted), not 2 (a start refused).
            log.error("edged's health loop failed (%s: %s); exiting so the service manager restarts edged",
                      type(exc).__name__, exc)
            code = 1
        monitor.stopping()
        self.shutdown()
        if monitor.reader is not None:
            monitor.reader.close()
        self.notifier.close()
        return code

    def _service_monitor(self) -> ServiceMonitor:
        reader = connect(self.settings.store.path, readonly=True) if self.notifier.enabled else None
        return ServiceMonitor(
            self.notifier,
            workers=self._workers,
            analyzer=self.analyzer,
            writer=self.writer,
            reader=reader,
            stuck_after_s=self.settings.analysis.stuck_after_s,
            watchdog_s=watchdog_interval(),
        )

    def _workers(self) -> list[Worker]:
        workers: list[Worker] = list(self.sources)
        if self.retention is not None:
            workers.append(self.retention)
        if self.analyzer is not None:
            workers.append(self.analyzer)
        if self.publisher is not None:
            workers.append(self.publisher)
        if self.replies is not None:
            workers.append(self.replies)
        if self.writer is not None:
            workers.append(_WriterWorker(self.writer))
        if self.web is not None:
            workers.append(self.web)
        return workers

    def shutdown(self) -> None:
        """Stop reading files, store what is queued (which acks its MQTT messages), then disconnect."""
        if self.web is not None:  # first: no new changes from the page while the rest stops
            self.web.stop()
        mqtt = [src for src in self.sources if src.name == "mqtt"]
        for source in self.sources:
            if source.name != "mqtt":
                source.stop()
        if self.analyzer is not None:
            self.analyzer.stop()
        if self.retention is not None:
            self.retention.stop()
        if self.writer is not None and self.writer.is_alive() and self.writer.storage_error is None:
            try:
                self.writer.call(lambda db: None).result(timeout=30)
            except Exception as exc:  # a stuck disk: nothing more to do than report it
                log.error("could not store the last batch before stopping: %s", exc)
        for source in mqtt:
            source.stop()
        if self.replies is not None:  # replies being applied are committed and acked before it leaves
            self.replies.stop()
        # Last but one: whatever the broker acknowledged is marked sent through the writer.
        if self.publisher is not None:
            self.publisher.stop()
        if self.writer is not None:
            self.writer.stop()
            self.writer.db.close()
        if self.backend is not None:
            self.backend.close()
        log.info("edged stopped")

    def _print_banner(self) -> None:
        s = self.settings
        lines = [
            f"edged {__version__} running (stop with Ctrl-C or SIGTERM)",
            f"  config:   {self.loaded.path or 'none found; embedded defaults'}",
            f"  state:    {Path(os.path.abspath(s.store.path)).parent}",
            f"  database: {os.path.abspath(s.store.path)}",
        ]
        for pattern in s.logs.paths:
            root, _ = watch_root(pattern)
            note = "" if os.path.isdir(root) else f"  ({root} does not exist yet)"
            lines.append(f"  watching: {os.path.abspath(pattern)}{note}")
        if s.mqtt.url:
            lines.append(f"  mqtt:     {s.mqtt.url} topics {', '.join(s.mqtt.topics)}")
        else:
            lines.append("  mqtt:     off (set [mqtt] url to subscribe to a broker)")
        if s.upstream.url:
            from edged.publish.outbox import topic_for

            lines.append(f"  upstream: {s.upstream.url} as {s.upstream.client_id}, topic {topic_for(s.upstream, '{kind}')}")
        else:
            lines.append("  upstream: off (set [upstream] url to publish results; until then they queue in the database)")
        if self.backend is not None:
            b = self.backend
            placement = b.placement()
            lines.append(f"  model:    {b.model_name} via {b.name}" + ("" if b.model_sha256 else " (unverified)")
                         + (f"; {placement['summary']}" if placement else ""))
        else:
            lines.append("  model:    analysis off ([analysis] enabled = false)")
        if self.web is not None:
            lines.append(f"  web:      {self.web.banner()}")
        else:
            lines.append("  web:      off ([web] enabled = false)")
        lines.append(f"  logs:     {log_destination()}")
        lines.append("  status:   edged status")
        print("\n".join(lines), file=sys.stderr, flush=True)


def _hold_for_storage(backpressure, paused: bool) -> None:
    """The store writer cannot write (disk full, I/O error): sources stop reading and acking until it
    can. (STATUS= says so through the service monitor, the page and /healthz through the web runtime.)"""
    from edged.store.retention import Backpressure

    if paused:
        backpressure.hold(Backpressure.STORAGE_ERROR)
    else:
        backpressure.release(Backpressure.STORAGE_ERROR)


ROW_WAL_BYTES = 4000  # write-ahead log a stored row may cost, indexes and page rounding included


def batch_rows_for(store) -> int:
    """Rows per transaction. One transaction's write-ahead log counts against the size cap until
    the next checkpoint, so under a small cap transactions are kept to a small share of it."""
    if not store.max_bytes:
        return store.batch_max_rows
    return max(100, min(store.batch_max_rows, store.max_bytes // (20 * ROW_WAL_BYTES)))


def build_backend(settings):
    """The configured inference backend, with its model resolved and verified. Raises ModelUnavailable."""
    from edged.backends import create_backend, needs_model_file
    from edged.models.resolve import resolve_model

    model = resolve_model(settings.model) if needs_model_file(settings.backend) else None
    return create_backend(settings.backend, model)


class _WriterWorker:
    name = "store-writer"

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer

    def start(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None:
        self.writer.stop(timeout)

    def is_alive(self) -> bool:
        return self.writer.is_alive()


def run_daemon(loaded: LoadedConfig) -> int:
    # A watchdog kill (SIGABRT) or a crash in native code prints every thread's stack first.
    faulthandler.enable(all_threads=True)
    daemon = Daemon(loaded)
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    return daemon.run()
