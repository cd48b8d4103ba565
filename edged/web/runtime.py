"""What the web page knows of the running daemon beyond the database: uptime, worker threads,
broker links, the model, and rates of ingest, analysis and publishing.

Read from the daemon's objects as they are at each request (``owner`` is the ``Daemon``, or a stand-in
in tests); any of them may be absent (MQTT off, analysis off, not started yet) and that is shown as such.
Rates come from in-memory totals sampled every few seconds, so a page never scans a table for them.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

from edged import __version__

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
    """A read-only view of the daemon's workers for the page, the API, /healthz and /metrics."""

    def __init__(self, settings: Any, owner: Any, *, workers: Callable[[], list] | None = None,
                 config_path: Any = None) -> None:
        self.settings = settings
        self.owner = owner
        self._workers = workers
        self.config_path = config_path
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        self.meter = RateMeter(self.totals)

    # -- the daemon's parts, each possibly absent ------------------------------------------------
    def _part(self, name: str) -> Any:
        return getattr(self.owner, name, None)

    @property
    def writer(self) -> Any:
        return self._part("writer")

    @property
    def analyzer(self) -> Any:
        return self._part("analyzer")

    @property
    def publisher(self) -> Any:
        return self._part("publisher")

    @property
    def backend(self) -> Any:
        return self._part("backend")

    def source(self, name: str) -> Any:
        return next((s for s in self._part("sources") or [] if getattr(s, "name", None) == name), None)

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
            "ingest": getattr(writer, "records_inserted", 0) or 0,
            "analysis": getattr(analyzer, "analyzed", 0) or 0,
            "publish": getattr(publisher, "marked", 0) or 0,
        }

    def rates(self) -> dict[str, float | None]:
        return self.meter.rates()

    def brokers(self) -> dict[str, dict[str, Any]]:
        s = self.settings
        mqtt, publisher = self.source("mqtt"), self.publisher
        ingest: dict[str, Any] = {"configured": bool(s.mqtt.url), "url": s.mqtt.url}
        if s.mqtt.url:
            ingest |= {
                "connected": bool(mqtt is not None and mqtt.connected),
                "subscribed": bool(mqtt is not None and mqtt.subscribed),
                "connect_failures": getattr(mqtt, "connect_failures", 0),
                "received": getattr(mqtt, "received", 0),
            }
        upstream: dict[str, Any] = {"configured": bool(s.upstream.url), "url": s.upstream.url}
        if s.upstream.url:
            upstream |= {
                "connected": bool(publisher is not None and publisher.connected),
                "connect_failures": getattr(publisher, "connect_failures", 0),
                "unacked": getattr(publisher, "unacked", 0),
                "published": getattr(publisher, "published", 0),
            }
        return {"ingest": ingest, "upstream": upstream}

    def model(self) -> dict[str, Any] | None:
        backend = self.backend
        if backend is None:
            return None
        return {
            "name": getattr(backend, "model_name", None),
            "backend": getattr(backend, "name", None),
            "sha256": getattr(backend, "model_sha256", None),
        }

    def storage_error(self) -> str | None:
        """Why the store writer cannot write right now (disk full, I/O error), or None."""
        return getattr(self.writer, "storage_error", None)

    def analyzer_busy_s(self) -> float | None:
        since = getattr(self.analyzer, "busy_since", None)
        return None if since is None else round(time.monotonic() - since, 1)

    def snapshot(self) -> dict[str, Any]:
        """The ``runtime`` section of /api/status."""
        writer, files = self.writer, self.source("files")
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
                "storage_error": getattr(writer, "storage_error", None),
            },
            "files_followed": getattr(files, "files_followed", None),
        }
