"""What the running daemon shows of itself: a typed, read-only view of its parts.

The web page (``edged.web.runtime``) and the service monitor (``edged.systemd``) read the daemon's
workers only through these protocols, so a reader (and a type checker) sees exactly which figures
they use. Every member is a read-only property: nothing here changes a part. The few changes the
web page may make go through ``edged.web.actions.Actions``, a separate and explicit set.

``edged.app.Daemon`` satisfies ``DaemonParts``; tests hand in any object with the same attributes.
A part that is off or not started yet is None (or absent from ``sources``). This module imports
nothing from edged, so every part may import it.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence


class Worker(Protocol):
    """A thread the daemon runs and watches."""

    @property
    def name(self) -> str: ...

    def is_alive(self) -> bool: ...


class WriterView(Protocol):
    """The store writer's totals since start."""

    @property
    def records_inserted(self) -> int: ...
    @property
    def duplicates(self) -> int: ...
    @property
    def queued_rows(self) -> int: ...
    @property
    def commits(self) -> int: ...
    @property
    def failed_jobs(self) -> int: ...
    @property
    def last_commit_at(self) -> float | None: ...
    @property
    def storage_error(self) -> str | None: ...  # why the disk refuses writes (ingest paused); None when writing works


class AnalyzerView(Protocol):
    @property
    def analyzed(self) -> int: ...
    @property
    def busy_since(self) -> float | None: ...  # monotonic start of the current batch; None while idle


class PublisherView(Protocol):
    @property
    def connected(self) -> bool: ...
    @property
    def connect_failures(self) -> int: ...
    @property
    def unacked(self) -> int: ...
    @property
    def published(self) -> int: ...
    @property
    def marked(self) -> int: ...  # rows marked sent in the database since start


class MqttSourceView(Worker, Protocol):
    @property
    def connected(self) -> bool: ...
    @property
    def subscribed(self) -> bool: ...
    @property
    def connect_failures(self) -> int: ...
    @property
    def received(self) -> int: ...


class FileSourceView(Worker, Protocol):
    @property
    def files_followed(self) -> int: ...


class ModelView(Protocol):
    """The loaded backend: what results record as their model, and where its layers run."""

    @property
    def name(self) -> str: ...
    @property
    def model_name(self) -> str: ...
    @property
    def model_sha256(self) -> str | None: ...

    def placement(self) -> dict[str, Any] | None: ...


class DaemonParts(Protocol):
    """The daemon's parts, each None while off or not started."""

    @property
    def writer(self) -> WriterView | None: ...
    @property
    def analyzer(self) -> AnalyzerView | None: ...
    @property
    def publisher(self) -> PublisherView | None: ...
    @property
    def backend(self) -> ModelView | None: ...
    @property
    def sources(self) -> Sequence[Worker]: ...
