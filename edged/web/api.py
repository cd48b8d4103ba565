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

from typing import TYPE_CHECKING, Any

from edged.web import actions, queries
from edged.web import metrics as exposition
from edged.web.request import Request, Response, as_json, json_error

if TYPE_CHECKING:
    from edged.web.routes import Routes

BEARER_CHALLENGE = [("WWW-Authenticate", 'Bearer realm="edged"')]


def error(message: str, status: int) -> Response:
    return json_error(message, status, BEARER_CHALLENGE if status == 401 else None)


def status(routes: "Routes", req: Request) -> Response:
    doc, extra, err = routes.snapshot()
    if err:
        return error(f"the database does not answer: {err}", 503)
    return as_json({**doc, "runtime": routes.runtime.snapshot(), "last_delivery_at": extra["last_delivery"],
                    "label_corrections": extra["label_corrections"]})


def results(routes: "Routes", req: Request) -> Response:
    try:
        f = queries.ResultFilter.from_params(req.query)
    except ValueError as exc:
        return error(str(exc), 400)
    with routes.pool.reader() as db:
        rows = queries.search_results(db, f)
    filters = {k: v for k, v in vars(f).items() if v not in (None, False)}
    return as_json({
        "results": rows,
        "filter": filters,
        "next_before": rows[-1]["id"] if len(rows) == f.limit else None,
    })


def record(routes: "Routes", req: Request, rid: str) -> Response:
    with routes.pool.reader() as db:
        rec = queries.record_detail(db, rid)
    if rec is None:
        return error(f"no record {rid}", 404)
    return as_json(rec)


def _authorized(routes: "Routes", req: Request) -> Response | None:
    """None when the bearer token is right, else the refusal."""
    if not routes.auth.enabled:
        return error(routes.auth.refusal, 403)
    if not routes.auth.bearer_ok(req.header("authorization")):
        return error("changes need Authorization: Bearer <token> (the web token of this box)", 401)
    return None


def post_incident(routes: "Routes", req: Request) -> Response:
    if (refused := _authorized(routes, req)) is not None:
        return refused
    doc = req.json()
    try:
        record_id = actions.submit_incident(routes.runtime.writer, _text(doc, "text"), _text(doc, "machine"),
                                            routes.wake_analyzer)
    except actions.Invalid as exc:
        return error(str(exc), 400)
    return as_json({"record_id": record_id, "url": f"/api/records/{record_id}"}, 201)


def post_label(routes: "Routes", req: Request, rid: str) -> Response:
    if (refused := _authorized(routes, req)) is not None:
        return refused
    doc = req.json()
    try:
        old = actions.correct_label(routes.runtime.writer, rid, _text(doc, "label"), routes.labels,
                                    _text(doc, "by") or "api", _text(doc, "note"))
    except actions.NotFound:
        return error(f"no record {rid}", 404)
    except actions.Invalid as exc:
        return error(str(exc), 400)
    return as_json({"record_id": rid, "old_label": old, "new_label": doc["label"]})


def _text(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise actions.Invalid(f"{key} must be a string")
    return value


def healthz(routes: "Routes", req: Request) -> Response:
    workers = routes.runtime.workers()
    dead = sorted(name for name, alive in workers.items() if not alive)
    store_error = None
    try:
        with routes.pool.reader() as db:
            queries.store_answers(db)
    except Exception as exc:  # any failure to read is a failed check
        store_error = str(exc) or type(exc).__name__
    # The disk is full or failing: edged is up but stores nothing (ingest paused until writing works).
    write_error = routes.runtime.storage_error()
    ok = not dead and store_error is None and write_error is None
    doc: dict[str, Any] = {"status": "ok" if ok else "unavailable", "workers": workers,
                           "store": "ok" if store_error is None else store_error}
    if write_error is not None:
        doc["store"] = f"paused: cannot write ({write_error})"
    if dead:
        doc["dead"] = dead
    return as_json(doc, 200 if ok else 503)


def metrics(routes: "Routes", req: Request) -> Response:
    doc, extra, err = routes.snapshot()
    if err:
        return error(f"the database does not answer: {err}", 503)
    return Response(200, exposition.render(doc, routes.runtime, extra).encode(), exposition.CONTENT_TYPE)
