"""The composition root: builds the store, the writer and the sources from the settings, runs them
until SIGTERM/SIGINT, and stops them in the order that loses nothing.

Crash-only: if any worker thread dies, the daemon exits non-zero and lets systemd restart it; all
state is in SQLite, so a restart resumes where the last commit left off.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Protocol

from edged import __version__
from edged.config import LoadedConfig
from edged.sources.files.discovery import watch_root
from edged.store.database import connect, open_database
from edged.store.writer import StoreWriter

log = logging.getLogger(__name__)

HEALTH_CHECK_S = 1.0


class Worker(Protocol):
    name: str

    def start(self) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...
    def is_alive(self) -> bool: ...


class Daemon:
    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.settings = loaded.settings
        self.stop_requested = threading.Event()
        self.writer: StoreWriter | None = None
        self.sources: list[Worker] = []
        self.backend = None
        self.analyzer = None

    def request_stop(self, signum: int | None = None, frame: object = None) -> None:
        if signum is not None:
            log.info("received %s; stopping", signal.Signals(signum).name)
        self.stop_requested.set()

    def start(self) -> None:
        s = self.settings
        # The model first: a missing or corrupt model stops edged before anything else starts.
        if s.analysis.enabled:
            self.backend = build_backend(self.settings)
        db = open_database(s.store.path)
        self.writer = StoreWriter(db, max_batch_rows=s.store.batch_max_rows, max_queued_rows=s.store.queue_max_rows)
        self.writer.start()
        if s.logs.paths:
            from edged.sources.files.source import FileSource

            self.sources.append(FileSource(s.logs, self.writer, connect(s.store.path)))
        if s.mqtt.url:
            from edged.sources.mqtt import MqttSource

            self.sources.append(MqttSource(s.mqtt, self.writer))
        for source in self.sources:
            source.start()
        if self.backend is not None:
            from edged.analysis.analyzer import Analyzer

            from edged.publish.outbox import OutboxBuilder

            self.analyzer = Analyzer(
                s.analysis, self.backend, self.writer, connect(s.store.path), OutboxBuilder(s.upstream)
            )
            self.analyzer.start()

    def run(self) -> int:
        """Run until asked to stop; returns the process exit code."""
        self.start()
        self._print_banner()
        log.info("edged %s ready", __version__)
        code = 0
        while not self.stop_requested.wait(HEALTH_CHECK_S):
            dead = [w.name for w in self._workers() if not w.is_alive()]
            if dead:
                log.error("worker(s) %s died; exiting so the service manager restarts edged", ", ".join(dead))
                code = 1
                break
        self.shutdown()
        return code

    def _workers(self) -> list[Worker]:
        workers: list[Worker] = list(self.sources)
        if self.analyzer is not None:
            workers.append(self.analyzer)
        if self.writer is not None:
            workers.append(_WriterWorker(self.writer))
        return workers

    def shutdown(self) -> None:
        """Stop reading files, store what is queued (which acks its MQTT messages), then disconnect."""
        mqtt = [src for src in self.sources if src.name == "mqtt"]
        for source in self.sources:
            if source.name != "mqtt":
                source.stop()
        if self.analyzer is not None:
            self.analyzer.stop()
        if self.writer is not None and self.writer.is_alive():
            try:
                self.writer.call(lambda db: None).result(timeout=30)
            except Exception as exc:  # a stuck disk: nothing more to do than report it
                log.error("could not store the last batch before stopping: %s", exc)
        for source in mqtt:
            source.stop()
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
        if self.backend is not None:
            b = self.backend
            lines.append(f"  model:    {b.model_name} via {b.name}" + ("" if b.model_sha256 else " (unverified)"))
        else:
            lines.append("  model:    analysis off ([analysis] enabled = false)")
        lines.append("  logs:     stderr")
        lines.append("  status:   edged status")
        print("\n".join(lines), file=sys.stderr, flush=True)


def build_backend(settings):
    """The configured inference backend, with its model resolved and verified. Raises ModelUnavailable."""
    from edged.backends import create_backend

    model = None
    if settings.backend.type == "llama_cpp":
        from edged.models.resolve import resolve_model

        model = resolve_model(settings.model)
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
    daemon = Daemon(loaded)
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    return daemon.run()
