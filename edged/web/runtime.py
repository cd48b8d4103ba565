"""What the web page knows of the running daemon beyond the database: uptime, worker threads,
broker links, the model, and rates of ingest, analysis and publishing.

Read from the daemon's parts as they are at each request, through the typed read-only view of
``edged.parts`` (the ``Daemon``, or a stand-in in tests); any of them may be absent (MQTT off, analysis
off, not started yet) and that is shown as such.
Rates come from in-memory totals sampled every few seconds, so a page never scans a table for them.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Sequence

from edged import __version__
from edged.parts import (
    AnalyzerView, DaemonParts, FileSourceView, ModelView, MqttSourceView, PublisherView, Worker, WriterView,
)

SAMPLE_S = 5.0  # take a sample of the totals this often
WINDOW_S = 60.0  # rates are averaged over about this long
KEEP_S = 300.0


class RateMeter:
    """Per-second rates of monotonic totals over the last ``WINDOW_S``."""

    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self.read = read
        self._samples: collections.deque[tuple[float, dict[str, int]]] = collections.deque()
        self._lock = threading.Lock()

    def sample(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._samples and now - self._samples[-1][0] < SAMPLE_S:
                return
            self._samples.append((now, self.read()))
            while self._samples and now - self._samples[0][0] > KEEP_S:
                self._samples.popleft()

    def rates(self, now: float | None = None) -> dict[str, float | None]:
        now = time.monotonic() if now is None else now
        current = self.read()
        with self._lock:
            base = None
            for t, values in self._samples:  # the newest sample at least WINDOW_S old, else the oldest
                if now - t >= WINDOW_S or base is None:
                    base = (t, values)
                else:
                    break
        out: dict[str, float | None] = dict.fromkeys(current)
        if base is not None and now - base[0] >= 1.0:
            dt = now - base[0]
            for key, value in current.items():
                if key in base[1]:
                    out[key] = round(max(value - base[1][key], 0) / dt, 2)
        return out


class Runtime:
    """A read-only view of the daemon's workers for the page, the API, /healthz and /metrics.

    ``parts`` is the daemon's typed view (``edged.parts.DaemonParts``); ``workers`` lists every
    worker thread that must be alive.
    """

    def __init__(self, settings: Any, parts: DaemonParts, *, workers: Callable[[], Sequence[Worker]] | None = None,
                 config_path: Any = None) -> None:
        self.settings = settings
        self.parts = parts
        self._workers = workers
        self.config_path = config_path
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        self.meter = RateMeter(self.totals)

    # -- the daemon's parts, each possibly absent ------------------------------------------------
    @property
    def writer(self) -> WriterView | None:
        return self.parts.writer

    @property
    def analyzer(self) -> AnalyzerView | None:
        return self.parts.analyzer

    @property
    def publisher(self) -> PublisherView | None:
        return self.parts.publisher

    @property
    def backend(self) -> ModelView | None:
        return self.parts.backend

    def source(self, name: str) -> Any:
        """The source worker called ``name`` ("files": a FileSourceView, "mqtt": an MqttSourceView), or None."""
        return next((s for s in self.parts.sources or () if s.name == name), None)

    # -- figures ------------------------------------------------------------------------------------
    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._started_mono

    def workers(self) -> dict[str, bool]:
        """Every worker thread of the daemon and whether it is alive."""
        if self._workers is None:
            return {}
        return {w.name: bool(w.is_alive()) for w in self._workers()}

    def totals(self) -> dict[str, int]:
        """Monotonic in-memory totals since start: what the rates are computed from."""
        writer, analyzer, publisher = self.writer, self.analyzer, self.publisher
        return {
            "ingest": writer.records_inserted if writer is not None else 0,
            "analysis": analyzer.analyzed if analyzer is not None else 0,
            "publish": publisher.marked if publisher is not None else 0,
        }

    def rates(self) -> dict[str, float | None]:
        return self.meter.rates()

    def brokers(self) -> dict[str, dict[str, Any]]:
        s = self.settings
        mqtt: MqttSourceView | None = self.source("mqtt")
        publisher = self.publisher
        ingest: dict[str, Any] = {"configured": bool(s.mqtt.url), "url": s.mqtt.url}
        if s.mqtt.url:
            ingest |= {
                "connected": bool(mqtt is not None and mqtt.connected),
                "subscribed": bool(mqtt is not None and mqtt.subscribed),
                "connect_failures": mqtt.connect_failures if mqtt is not None else 0,
                "received": mqtt.received if mqtt is not None else 0,
            }
        upstream: dict[str, Any] = {"configured": bool(s.upstream.url), "url": s.upstream.url}
        if s.upstream.url:
            upstream |= {
                "connected": bool(publisher is not None and publisher.connected),
                "connect_failures": publisher.connect_failures if publisher is not None else 0,
                "unacked": publisher.unacked if publisher is not None else 0,
                "published": publisher.published if publisher is not None else 0,
            }
        return {"ingest": ingest, "upstream": upstream}

    def model(self) -> dict[str, Any] | None:
        backend = self.backend
        if backend is None:
            return None
        return {
            "name": backend.model_name,
            "backend": backend.name,
            "sha256": backend.model_sha256,
            "placement": backend.placement(),
        }

    def storage_error(self) -> str | None:
        """Why the store writer cannot write right now (disk full, I/O error), or None."""
        writer = self.writer
        return writer.storage_error if writer is not None else None

    def analyzer_busy_s(self) -> float | None:
        analyzer = self.analyzer
        since = analyzer.busy_since if analyzer is not None else None
        return None if since is None else round(time.monotonic() - since, 1)

    def snapshot(self) -> dict[str, Any]:
        """The ``runtime`` section of /api/status."""
        writer = self.writer
        files: FileSourceView | None = self.source("files")
        return {
            "version": __version__,
            "started_at": self.started_at,
            "uptime_s": round(self.uptime_s, 1),
            "config": str(self.config_path) if self.config_path else None,
            "workers": self.workers(),
            "rates_per_s": self.rates(),
            "totals_since_start": self.totals(),
            "brokers": self.brokers(),
            "model": self.model(),
            "analysis_enabled": bool(self.settings.analysis.enabled),
            "analyzer_busy_s": self.analyzer_busy_s(),
            "writer": None if writer is None else {
                "queued_rows": writer.queued_rows,
                "commits": writer.commits,
                "failed_jobs": writer.failed_jobs,
                "last_commit_at": writer.last_commit_at,
                "storage_error": writer.storage_error,
            },
            "files_followed": files.files_followed if files is not None else None,
        }
