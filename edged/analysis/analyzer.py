"""The analyzer worker: claims inbox records, runs the pipeline, stores results, completes records.

One thread. Claims and results go through the store writer (the only writer); results, the
records' new status, new cache entries (and the deletion of those whose template text is gone),
template counts and the miner state are committed in one transaction, so a crash at any point leaves
either all of it or none (the lease then expires and the records are analyzed again, which gives the
same results).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from typing import Any, Callable, Iterator

import sqlite_utils

from edged.analysis.digest import make_digests, store_digests
from edged.analysis.pipeline import BatchOutcome, Interrupted, Pipeline, ResultCache
from edged.analysis.evidence import Evidence
from edged.analysis.routing import model_judge
from edged.analysis.tasks import CLASSIFY, SUMMARIZE
from edged.analysis.templates import TemplateStore
from edged.backends.base import Backend, Completion, CompletionRequest
from edged.publish.outbox import OutboxBuilder
from edged.store.outbox import insert_rows
from edged.config.settings import AnalysisSettings, TriageSettings
from edged.logformats import HeaderParser
from edged.store import inbox
from edged.store.records import ADD_COUNTER
from edged.store.writer import StoreWriter
from edged.triage.learn import NotEnoughLabels, due, learn, measure_active
from edged.triage.router import Router

log = logging.getLogger(__name__)

IDLE_WAIT_MAX_S = 1.0
DIGEST_CHECK_S = 60.0  # how often an idle analyzer looks for sources due a digest
ROUTER_CHECK_S = 2.0  # how often the router looks for a new triage model or changed labels
LEARN_CHECK_S = 60.0  # how often the analyzer looks whether enough new labels arrived to train


def load_cache_entry(reader: sqlite_utils.Database, key: str) -> dict[str, Any] | None:
    row = reader.execute("SELECT value FROM analysis_cache WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


FORMAT_STATE_NAME = "formats"  # the miner_state row with each source's header format detection


def save_format_state(db: sqlite_utils.Database, state: dict[str, dict]) -> None:
    db.execute(
        "INSERT OR REPLACE INTO miner_state (name, state, saved_at) VALUES (?, ?, ?)",
        (FORMAT_STATE_NAME, json.dumps(state, ensure_ascii=False).encode("utf-8", "surrogatepass"), time.time()),
    )


def load_format_state(reader: sqlite_utils.Database) -> dict[str, dict]:
    """The header formats auto-detected before a restart; empty when none were saved or the row is unreadable."""
    row = reader.execute("SELECT state FROM miner_state WHERE name = ?", (FORMAT_STATE_NAME,)).fetchone()
    if row is None:
        return {}
    try:
        state = json.loads(bytes(row[0]).decode("utf-8", "surrogatepass"))
    except ValueError:
        log.warning("the saved header format detection is unreadable; formats are detected again")
        return {}
    return state if isinstance(state, dict) else {}


def store_outcome(
    db: sqlite_utils.Database, outcome: BatchOutcome, max_attempts: int, outbox: OutboxBuilder | None = None
) -> int:
    """Everything one batch produced, in the writer's transaction. Returns how many were parked."""
    now = time.time()
    inbox.complete(db, outcome.results)
    if outbox is not None:
        insert_rows(db, [outbox.for_result(r, outcome.records[r.record_id]) for r in outcome.results])
        if outbox.settings.escalation:
            # Once per answer: a line served a cached answer is not sent again; the teacher's reply to the
            # line it was computed for refines the cached answer too (inbox.refine_cached_answers).
            escalations = [
                outbox.for_escalation(r, outcome.records[r.record_id])
                for r in outcome.results
                if r.needs_review and r.path == "model"
            ]
            insert_rows(db, escalations)
            if escalations:
                db.conn.execute(ADD_COUNTER, ("escalation.escalated", len(escalations)))
    parked = inbox.fail(db, outcome.failures, max_attempts)
    if outcome.cache_entries:
        db.conn.executemany(
            "INSERT OR REPLACE INTO analysis_cache (key, value, created_at) VALUES (?, ?, ?)",
            [(k, json.dumps(v, ensure_ascii=False), now) for k, v in outcome.cache_entries.items()],
        )
    retired = 0
    if outcome.retired_cache_keys:  # with the miner state below: the texts they were cached under are gone
        retired = db.conn.executemany(
            "DELETE FROM analysis_cache WHERE key = ?", [(k,) for k in outcome.retired_cache_keys]
        ).rowcount
    if outcome.templates:
        keys = outcome.template_keys
        db.conn.executemany(
            "INSERT INTO templates (template_id, template, lines, first_seen, last_seen, level, component)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(template_id) DO UPDATE SET template = excluded.template,"
            " lines = lines + excluded.lines, last_seen = excluded.last_seen",
            [(tid, template, n, now, now, *keys.get(tid, (None, None))) for tid, (template, n) in outcome.templates.items()],
        )
    if outcome.miner_state is not None:
        TemplateStore.save(db, outcome.miner_state)
    if outcome.format_state is not None:
        save_format_state(db, outcome.format_state)
    counters = {
        "analysis.model_calls": outcome.model_calls,
        "analysis.cache_hits.template": outcome.cache_hits["template"],
        "analysis.cache_hits.exact": outcome.cache_hits["exact"],
        "analysis.results": len(outcome.results),
        "analysis.failures": len(outcome.failures),
        "analysis.parked": parked,
        "analysis.template_refreshes": outcome.template_refreshes,
        "analysis.template_carried": outcome.template_carried,
        "analysis.cache_retired": retired,
        "files.unparsed_lines": outcome.unparsed_lines,
    }
    counters.update({f"analysis.ungrounded.{name}": n for name, n in outcome.ungrounded.items()})
    counters.update({f"analysis.summaries.{event}": n for event, n in outcome.summaries.items()})
    db.conn.executemany(ADD_COUNTER, [(k, v) for k, v in counters.items() if v])
    return parked


class _Progress:
    """A backend whose every call first reports progress (``beat``)."""

    def __init__(self, backend: Backend, beat: Callable[[], None]) -> None:
        self.backend, self.beat = backend, beat

    def complete(self, request: CompletionRequest) -> Completion:
        self.beat()
        return self.backend.complete(request)


class Analyzer:
    name = "analyzer"
    on_stored: Callable[[], None] | None = None  # called after results are committed (the publisher's wake)

    def __init__(
        self,
        settings: AnalysisSettings,
        backend: Backend,
        writer: StoreWriter,
        reader: sqlite_utils.Database,
        outbox: OutboxBuilder | None = None,
        triage: TriageSettings | None = None,
        headers: HeaderParser | None = None,
        timezone: str = "local",
    ) -> None:
        self.settings = settings
        self.triage = triage
        self.router = Router(triage, list(settings.labels)) if triage is not None and triage.enabled else None
        self.outbox = outbox
        self.backend = backend
        self.writer = writer
        self.reader = reader
        self.owner = f"{os.uname().nodename}:{os.getpid()}"
        self.pipeline = Pipeline(
            settings,
            backend,
            TemplateStore.load(reader),
            ResultCache(lambda key: load_cache_entry(reader, key)),
            self.router,
            headers=headers,
            timezone=timezone,
            evidence=Evidence(settings),
            severities=(triage or TriageSettings()).severities,
        )
        self.pipeline.headers.restore(load_format_state(reader))
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="analyzer", daemon=True)
        # For health checks: when the current batch started (None while idle).
        self.busy_since: float | None = None
        self.analyzed = 0
        self.model_calls = 0
        self.error: BaseException | None = None
        self._next_digest_check = 0.0
        self._next_router_check = 0.0
        self._next_learn_check = time.monotonic() + 5.0  # not in the first seconds of a start
        self.trainings = 0
        self._routing_tried: set[int] = set()  # versions whose routing this run measured (or tried to)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop between two model calls; an unfinished batch is released for the next start."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if self.writer.is_alive():
            released = self.writer.call(lambda db: inbox.release(db, self.owner)).result()
            if released:
                log.info("released %d records of an unfinished batch", released)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        """New records arrived: look now rather than at the next idle poll."""
        self._wake.set()

    def run_once(self) -> int:
        """Claim, analyze and store one batch; returns how many records it held."""
        s = self.settings
        self.follow_labels()
        claimed = self.writer.call(
            lambda db: inbox.claim_batch(
                db, owner=self.owner, limit=s.batch_size, lease_s=s.lease_s, max_attempts=s.max_attempts
            )
        ).result()
        if not claimed:
            return 0
        with self._busy():
            outcome = self.pipeline.analyze(claimed, should_stop=self._stop.is_set)
            self.writer.call(lambda db: store_outcome(db, outcome, s.max_attempts, self.outbox)).result()
            if self.on_stored is not None:
                self.on_stored()
        self.analyzed += len(outcome.results)
        self.model_calls += outcome.model_calls
        return len(claimed)

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        """Mark model calls and training for the stuck-analyzer watchdog (edged.systemd): a batch,
        a digest and a training each have to finish within ``stuck_after_s``."""
        self.busy_since = time.monotonic()
        try:
            yield
        finally:
            self.busy_since = None

    def follow_labels(self, now: float | None = None) -> None:
        """Load a newly activated triage model and rebuild the example index when labels changed."""
        now = time.monotonic() if now is None else now
        if self.router is None or now < self._next_router_check:
            return
        self._next_router_check = now + ROUTER_CHECK_S
        self.router.refresh(self.reader)

    def learn_if_due(self, now: float | None = None) -> bool:
        """Train a triage model when enough new labels arrived ([triage] retrain_after). Between batches:
        training takes seconds, and a new version is picked up by the next batch."""
        now = time.monotonic() if now is None else now
        if self.triage is None or self.router is None or now < self._next_learn_check:
            return False
        self._next_learn_check = now + LEARN_CHECK_S
        model = self.router.model
        if (model is not None and self.triage.routing_sample and model.version not in self._routing_tried
                and not (self.router.routing or {}).get("measured")):
            self._routing_tried.add(model.version)
            self._measure_active()
        if not due(self.reader, self.triage):
            return False
        try:
            # The new version's routing is measured with this model, as the pipeline would ask it.
            with self._busy():
                report = learn(self.reader, lambda fn: self.writer.call(fn).result(), self.triage,
                               list(self.settings.labels), judge=self._judge())
        except NotEnoughLabels as exc:
            log.info("automatic training skipped: %s", exc)
            return False
        except Exception:  # a failed training must not stop the analysis: the model keeps classifying
            log.exception("automatic training failed; trying again after more labels or in %.0f s", LEARN_CHECK_S)
            return False
        self.trainings += 1
        log.info("automatic training: %s", report.decision)
        self._next_router_check = 0.0
        return True

    def forget_cached_answers(self) -> None:
        """The store's cached answers changed (a teacher refined one): reload them when next needed."""
        self.pipeline.cache.forget()

    def _judge(self):
        """The model as routing measurement asks it. Each call counts as progress for the stuck-analyzer
        watchdog: measuring makes up to ``routing_sample`` short calls, each of which must finish in
        time, not all of them together."""
        return model_judge(_Progress(self.backend, self._beat), self.pipeline.specs[CLASSIFY])

    def _beat(self) -> None:
        if self.busy_since is not None:
            self.busy_since = time.monotonic()

    def _measure_active(self) -> None:
        """An active version stored without its routing figures (trained without the model, or by an older
        edged) is measured once with this model, between batches; its unsure records keep the guess until then."""
        try:
            with self._busy():
                routing = measure_active(self.reader, lambda fn: self.writer.call(fn).result(), self.triage,
                                         list(self.settings.labels), self._judge())
        except Exception:  # measuring must not stop the analysis: the guess keeps standing
            log.exception("measuring the active triage version's routing failed")
            routing = None
        if routing is not None:
            self.router.routing = routing

    def digest_if_due(self, now: float | None = None) -> int:
        """Summarize sources whose digest interval has passed (checked when idle). Returns how many."""
        interval = self.settings.digest_interval_s
        now = time.monotonic() if now is None else now
        if not interval or now < self._next_digest_check:
            return 0
        self._next_digest_check = now + min(interval, DIGEST_CHECK_S)
        with self._busy():
            digests = make_digests(self.reader, self.backend, self.pipeline.specs[SUMMARIZE], interval)
            if digests:
                self.writer.call(lambda db: store_digests(db, digests, self.outbox)).result()
            log.info("stored %d digests", len(digests))
        return len(digests)

    def _run(self) -> None:
        idle = 0.05
        try:
            while not self._stop.is_set():
                self.learn_if_due()
                if self.run_once():
                    idle = 0.05
                    continue
                self.digest_if_due()
                self._wake.wait(idle)
                self._wake.clear()
                idle = min(idle * 2, IDLE_WAIT_MAX_S)
        except Interrupted:
            return
        except BaseException as exc:
            self.error = exc
            log.exception("analyzer stopped by an error")
            raise
