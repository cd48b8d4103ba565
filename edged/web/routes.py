"""URL -> handler, and the handlers of the HTML pages (the JSON API, /healthz and /metrics are in api.py).

Reads go to a pooled read-only connection; the two changes go through ``actions`` to the store
writer. Form posts need a session and its CSRF token (see auth); the API's posts a bearer token.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Callable
from urllib.parse import quote, unquote

from edged import __version__
from edged.config.settings import parse_listen
from edged.store.writer import WriterStopped
from edged.web import actions, api, queries
from edged.web.auth import Auth, Session, TooManyAttempts
from edged.web.html import record_url
from edged.web.pages import forms, layout, overview, record, results
from edged.web.request import BadRequest, Request, Response, html, redirect, safe_next
from edged.web.runtime import Runtime
from edged.web.snapshot import StatusSnapshot

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}

Handler = Callable[..., Response]


class Routes:
    """The dispatcher and the HTML pages. The JSON API's handlers are ``api.Api``'s; both share the
    runtime view, the status snapshot and the one set of changes (``actions.Actions``)."""

    def __init__(self, runtime: Runtime, pool: queries.ReaderPool, auth: Auth) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.pool = pool
        self.auth = auth
        self.labels = list(self.settings.analysis.labels)
        self.node = self.settings.upstream.node
        self.loopback_only = _is_loopback(parse_listen(self.settings.web.listen)[0])
        self.status = StatusSnapshot(self.settings, pool)
        self.changes = actions.Actions(runtime.parts, self.labels)
        self.api = api.Api(runtime, pool, auth, self.status, self.changes)
        self._table: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(p), h) if not p.startswith("POST ") else ("POST", re.compile(p[5:]), h)
            for p, h in [
                (r"/", self.page_overview),
                (r"/results", self.page_results),
                (r"/parked", self.page_parked),
                (r"/records/(?P<rid>[^/]+)", self.page_record),
                (r"POST /records/(?P<rid>[^/]+)/label", self.post_label),
                (r"/submit", self.page_submit),
                (r"POST /submit", self.post_submit),
                (r"/login", self.page_login),
                (r"POST /login", self.post_login),
                (r"POST /logout", self.post_logout),
                (r"/static/(?P<name>[\w.-]+)", self.static),
            ]
        ] + self.api.table()

    # -- dispatch ---------------------------------------------------------------------------------
    def dispatch(self, req: Request) -> Response:
        path = req.path
        if self.loopback_only and not _is_loopback(_host_name(req.header("host") or "")):
            # DNS rebinding: a web site whose name resolves to 127.0.0.1 must not read this page.
            return self.message(req, 421, "Wrong address", "Open this page as http://127.0.0.1 or http://localhost.")
        allowed = []
        for method, pattern, handler in self._table:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method != req.method and not (method == "GET" and req.method == "HEAD"):
                allowed.append(method)
                continue
            kwargs = {k: unquote(v) for k, v in match.groupdict().items()}
            try:
                return handler(req, **kwargs)
            except BadRequest as exc:
                if path.startswith("/api/"):
                    return api.error(str(exc), exc.status)
                return self.message(req, exc.status, "Bad request", str(exc))
            except (WriterStopped, TimeoutError) as exc:
                log.warning("web change not stored: %s", exc)
                return self.message(req, 503, "Busy", "edged is stopping or the disk is too busy; try again.")
        if allowed:
            resp = self.message(req, 405, "Method not allowed", f"{path} accepts {', '.join(sorted(set(allowed)))}")
            resp.headers.append(("Allow", ", ".join(sorted(set(allowed)))))
            return resp
        return self.message(req, 404, "Not found", f"There is no page {path}.")

    def message(self, req: Request, status: int, title: str, text: str) -> Response:
        if req.path.startswith("/api/") or req.path in ("/healthz", "/metrics"):
            return api.error(text, status)
        return html(layout.message_page(self.context(req), title, text), status)

    # -- shared ------------------------------------------------------------------------------------
    def context(self, req: Request, session: Session | None | bool = False) -> layout.PageContext:
        if session is False:
            session = self.auth.session(req.header("cookie"))
        return layout.PageContext(
            node=self.node, version=__version__, logged_in=session is not None,
            csrf=session.csrf if session else None, refresh_s=self.settings.web.refresh_s, current=req.path,
        )

    def form_session(self, req: Request, form: dict[str, str]) -> Session | Response:
        """The session of a form post with a valid CSRF token, or the response that refuses it."""
        if not self.auth.enabled:
            return self.message(req, 403, "Changes are off", self.auth.refusal)
        if not _same_origin(req):
            return self.message(req, 403, "Refused", "This form was sent from another site.")
        session = self.auth.session(req.header("cookie"))
        if session is None:
            resp = self.message(req, 401, "Log in first", "Changes need the token of this box: log in, then try again.")
            return resp
        if not self.auth.csrf_ok(session, form.get("csrf")):
            return self.message(req, 403, "Form expired", "This form has expired or came from another page; reload it and try again.")
        return session

    # -- pages ---------------------------------------------------------------------------------------
    def page_overview(self, req: Request) -> Response:
        status, extra, error = self.status.get()
        return html(overview.render(self.context(req), status, self.runtime, extra, error))

    def page_results(self, req: Request) -> Response:
        params = req.query
        try:
            f = queries.ResultFilter.from_params(params)
        except ValueError as exc:
            return html(results.render(self.context(req), params, None, [], self.labels, str(exc)), 400)
        with self.pool.reader() as db:
            rows = queries.search_results(db, f)
        return html(results.render(self.context(req), params, f, rows, self.labels))

    def page_parked(self, req: Request) -> Response:
        with self.pool.reader() as db:
            rows = queries.parked_records(db)
        return html(results.render_parked(self.context(req), rows))

    def page_record(self, req: Request, rid: str, *, status: int = 200, error: str | None = None) -> Response:
        with self.pool.reader() as db:
            rec = queries.record_detail(db, rid)
        if rec is None:
            return self.message(req, 404, "Not found", f"There is no record {rid} (it may have been evicted).")
        q = req.query
        notice = None
        if q.get("submitted"):
            notice = "Report stored. It is analyzed before any waiting log line."
        elif q.get("corrected"):
            notice = "Correction saved."
        return html(record.render(self.context(req), rec, self.labels, notice=notice, error=error), status)

    def page_submit(self, req: Request) -> Response:
        refusal = None if self.auth.enabled else self.auth.refusal
        return html(forms.render_submit(self.context(req), refusal=refusal))

    def page_login(self, req: Request) -> Response:
        refusal = None if self.auth.enabled else self.auth.refusal
        return html(forms.render_login(self.context(req), safe_next(req.query.get("next")),
                                       where=self.auth.info.where, refusal=refusal))

    # -- changes ---------------------------------------------------------------------------------------
    def post_login(self, req: Request) -> Response:
        form = req.form()
        next_path = safe_next(form.get("next"))
        ctx = self.context(req, None)
        if not self.auth.enabled:
            return html(forms.render_login(ctx, next_path, refusal=self.auth.refusal), 403)
        if not _same_origin(req):
            return self.message(req, 403, "Refused", "This form was sent from another site.")
        try:
            session = self.auth.login(form.get("token"), req.client)
        except TooManyAttempts:
            return html(forms.render_login(ctx, next_path, error="Too many wrong tokens: wait a minute.",
                                           where=self.auth.info.where), 429)
        if session is None:
            return html(forms.render_login(ctx, next_path, error="Wrong token.", where=self.auth.info.where), 401)
        return redirect(next_path, [("Set-Cookie", Auth.cookie(session))])

    def post_logout(self, req: Request) -> Response:
        session = self.form_session(req, req.form())
        if isinstance(session, Response):
            return session
        self.auth.logout(session)
        return redirect("/", [("Set-Cookie", Auth.cookie(None))])

    def post_submit(self, req: Request) -> Response:
        form = req.form()
        session = self.form_session(req, form)
        if isinstance(session, Response):
            return session
        try:
            record_id = self.changes.submit_incident(form.get("text"), form.get("machine"))
        except actions.Invalid as exc:
            page = forms.render_submit(self.context(req, session), machine=form.get("machine", ""),
                                       text=form.get("text", ""), error=str(exc))
            return html(page, 400)
        log.info("incident report %s submitted on the web page from %s", record_id, req.client)
        return redirect(record_url(record_id) + "?submitted=1")

    def post_label(self, req: Request, rid: str) -> Response:
        form = req.form()
        session = self.form_session(req, form)
        if isinstance(session, Response):
            return session
        try:
            self.changes.correct_label(rid, form.get("label"), form.get("by"), form.get("note"))
        except actions.NotFound:
            return self.message(req, 404, "Not found", f"There is no record {rid}.")
        except actions.Invalid as exc:
            return self.page_record(req, rid, status=400, error=str(exc))
        return redirect(record_url(rid) + "?corrected=1")

    # -- static files ----------------------------------------------------------------------------------
    def static(self, req: Request, name: str) -> Response:
        path = STATIC_DIR / name
        ctype = STATIC_TYPES.get(path.suffix)
        if ctype is None or path.parent != STATIC_DIR or not path.is_file():
            return self.message(req, 404, "Not found", f"There is no file {quote(name)}.")
        # Names carry ?v=<version> in the pages, so browsers may keep them for a day.
        return Response(200, path.read_bytes(), ctype, cache="public, max-age=86400")


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _host_name(host: str) -> str:
    """The name in a Host header, without port or IPv6 brackets."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same_origin(req: Request) -> bool:
    """False when the browser says the post comes from another origin (Origin, else Referer)."""
    host = req.header("host")
    origin = req.header("origin")
    if origin is None:
        referer = req.header("referer")
        if referer is None:
            return True  # not a browser, or one that sends neither: the CSRF token still decides
        origin = referer
    if origin == "null" or host is None:
        return False
    scheme, _, rest = origin.partition("://")
    return scheme in ("http", "https") and rest.split("/", 1)[0].lower() == host.lower()
