"""The JSON API, /healthz and /metrics.

- ``GET /api/status``: ``edged status --json`` (collect_status) plus ``runtime`` (uptime, workers,
  rates, broker links, model). Figures are at most a couple of seconds old.
- ``GET /api/results?label=&severity=&machine=&q=&since=&review=&before=&limit=``: newest first;
  ``next_before`` pages further. Texts are cut to their first 500 characters (``text_chars`` has
  the full length).
- ``GET /api/records/{record_id}``: one record with its result, corrections and outbox rows; 404 if unknown.
- ``POST /api/incidents`` ``{"text": ..., "machine": ...}`` -> 201 ``{"record_id": ...}``.
- ``POST /api/records/{record_id}/label`` ``{"label": ..., "by": ..., "note": ...}``.
  Both changes need ``Authorization: Bearer <token>``; cookies are ignored here.
- ``GET /healthz``: 200 ``{"status": "ok"}`` while every worker thread is alive and the database
  answers, else 503 with what is wrong (Ansible's rolling upgrade waits on it).
- ``GET /metrics``: Prometheus text format.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from edged.web import actions, queries
from edged.web import metrics as exposition
from edged.web.auth import Auth
from edged.web.request import Request, Response, as_json, json_error
from edged.web.runtime import Runtime
from edged.web.snapshot import StatusSnapshot

BEARER_CHALLENGE = [("WWW-Authenticate", 'Bearer realm="edged"')]

Route = tuple[str, "re.Pattern[str]", Callable[..., Response]]


def error(message: str, status: int) -> Response:
    return json_error(message, status, BEARER_CHALLENGE if status == 401 else None)


class Api:
    """The JSON handlers; ``table()`` gives their routes to the dispatcher (edged.web.routes)."""

    def __init__(self, runtime: Runtime, pool: queries.ReaderPool, auth: Auth, snapshot: StatusSnapshot,
                 changes: actions.Actions) -> None:
        self.runtime = runtime
        self.pool = pool
        self.auth = auth
        self.snapshot = snapshot
        self.changes = changes

    def table(self) -> list[Route]:
        return [
            ("GET", re.compile(r"/api/status"), self.status),
            ("GET", re.compile(r"/api/results"), self.results),
            ("GET", re.compile(r"/api/records/(?P<rid>[^/]+)"), self.record),
            ("POST", re.compile(r"/api/incidents"), self.post_incident),
            ("POST", re.compile(r"/api/records/(?P<rid>[^/]+)/label"), self.post_label),
            ("GET", re.compile(r"/healthz"), self.healthz),
            ("GET", re.compile(r"/metrics"), self.metrics),
        ]

    def status(self, req: Request) -> Response:
        doc, extra, err = self.snapshot.get()
        if err:
            return error(f"the database does not answer: {err}", 503)
        return as_json({**doc, "runtime": self.runtime.snapshot(), "last_delivery_at": extra["last_delivery"],
                        "label_corrections": extra["label_corrections"]})

    def results(self, req: Request) -> Response:
        try:
            f = queries.ResultFilter.from_params(req.query)
        except ValueError as exc:
            return error(str(exc), 400)
        with self.pool.reader() as db:
            rows = queries.search_results(db, f)
        filters = {k: v for k, v in vars(f).items() if v not in (None, False)}
        return as_json({
            "results": rows,
            "filter": filters,
            "next_before": rows[-1]["id"] if len(rows) == f.limit else None,
        })

    def record(self, req: Request, rid: str) -> Response:
        with self.pool.reader() as db:
            rec = queries.record_detail(db, rid)
        if rec is None:
            return error(f"no record {rid}", 404)
        return as_json(rec)

    def _authorized(self, req: Request) -> Response | None:
        """None when the bearer token is right, else the refusal."""
        if not self.auth.enabled:
            return error(self.auth.refusal, 403)
        if not self.auth.bearer_ok(req.header("authorization")):
            return error("changes need Authorization: Bearer <token> (the web token of this box)", 401)
        return None

    def post_incident(self, req: Request) -> Response:
        if (refused := self._authorized(req)) is not None:
            return refused
        doc = req.json()
        try:
            record_id = self.changes.submit_incident(_text(doc, "text"), _text(doc, "machine"))
        except actions.Invalid as exc:
            return error(str(exc), 400)
        return as_json({"record_id": record_id, "url": f"/api/records/{record_id}"}, 201)

    def post_label(self, req: Request, rid: str) -> Response:
        if (refused := self._authorized(req)) is not None:
            return refused
        doc = req.json()
        try:
            old = self.changes.correct_label(rid, _text(doc, "label"), _text(doc, "by") or "api", _text(doc, "note"))
        except actions.NotFound:
            return error(f"no record {rid}", 404)
        except actions.Invalid as exc:
            return error(str(exc), 400)
        return as_json({"record_id": rid, "old_label": old, "new_label": doc["label"]})

    def healthz(self, req: Request) -> Response:
        workers = self.runtime.workers()
        dead = sorted(name for name, alive in workers.items() if not alive)
        store_error = None
        try:
            with self.pool.reader() as db:
                queries.store_answers(db)
        except Exception as exc:  # any failure to read is a failed check
            store_error = str(exc) or type(exc).__name__
        # The disk is full or failing: edged is up but stores nothing (ingest paused until writing works).
        write_error = self.runtime.storage_error()
        ok = not dead and store_error is None and write_error is None
        doc: dict[str, Any] = {"status": "ok" if ok else "unavailable", "workers": workers,
                               "store": "ok" if store_error is None else store_error}
        if write_error is not None:
            doc["store"] = f"paused: cannot write ({write_error})"
        if dead:
            doc["dead"] = dead
        return as_json(doc, 200 if ok else 503)

    def metrics(self, req: Request) -> Response:
        doc, extra, err = self.snapshot.get()
        if err:
            return error(f"the database does not answer: {err}", 503)
        return Response(200, exposition.render(doc, self.runtime, extra).encode(), exposition.CONTENT_TYPE)


def _text(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise actions.Invalid(f"{key} must be a string")
    return value
