"""The web page, JSON API, /healthz and /metrics over real HTTP (urllib) against the server started
in-process on a free port, with a real SQLite store filled through the store writer and analyzed by
the real analyzer (with the scripted backend: these tests are about the page, not inference)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, urlencode

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edged.analysis.analyzer import Analyzer
from edged.backends.fake import FakeBackend
from edged.config import ConfigError, Settings, load_config
from edged.config.settings import parse_listen
from edged.publish.outbox import OutboxBuilder
from edged.store.database import connect, open_database
from edged.store.records import NewRecord
from edged.store.writer import StoreWriter, WriteBatch
from edged.web.auth import LOGIN_FAILURES_ALLOWED, SESSION_COOKIE, TokenInfo, resolve_token
from edged.web.server import WebServer

TOKEN = "test-token-0123456789"
SCRIPT = "<script>alert(1)</script>"
EVIL_MACHINE = '"><img src=x onerror=alert(2)>'
DAY = 86400.0


def scripted(request):
    """Labels by keyword, like a model would; enough to exercise the filters."""
    text = request.user
    props = request.schema["properties"]
    if "label" in props:
        if "ERROR" in text:
            return {"label": "fault", "severity": 4}
        if "WARN" in text:
            return {"label": "warning", "severity": 2}
        return {"label": "normal", "severity": 0}
    if "summary" in props:
        return {"summary": "operator reported a problem"}
    return {k: None for k in props}


class Worker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


class Site:
    def __init__(self, base: str, path: Path, web: WebServer, analyzer: Analyzer, workers: list[Worker]) -> None:
        self.base, self.path, self.web, self.analyzer, self.workers = base, path, web, analyzer, workers

    def fetch(self, path: str, data: bytes | dict | None = None, headers: dict | None = None, method: str | None = None):
        headers = dict(headers or {})
        if isinstance(data, dict):
            data = urlencode(data).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with OPENER.open(req, timeout=20) as resp:
                return resp.status, resp.headers, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()

    def json(self, path: str, **kwargs):
        status, headers, body = self.fetch(path, **kwargs)
        return status, json.loads(body)

    def login(self) -> tuple[str, str]:
        """(cookie header, csrf token) of a fresh session."""
        status, headers, _ = self.fetch("/login", {"token": TOKEN, "next": "/submit"})
        assert status == 303, status
        cookie = headers["Set-Cookie"].split(";")[0]
        _, _, page = self.fetch("/submit", headers={"Cookie": cookie})
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        return cookie, csrf

    def analyze(self) -> None:
        while self.analyzer.run_once():
            pass

    def rows(self, sql: str, *params):
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


def record(rid: str, text: str, machine: str | None, age_s: float = 0.0, kind: str = "log") -> NewRecord:
    return NewRecord(rid, "file:/var/log/cnc.log", machine, kind, text, "", f"/var/log/cnc.log:{rid}",
                     time.time() - age_s, 10 if kind == "incident" else 0)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    tmp = tmp_path_factory.mktemp("web")
    path = tmp / "edged.db"
    settings = Settings(
        store={"path": path}, logs={"paths": []},
        web={"listen": "127.0.0.1:0", "token": TOKEN, "refresh_s": 5},
    )
    writer = StoreWriter(open_database(path))
    writer.start()
    analyzer = Analyzer(settings.analysis, FakeBackend(answer=scripted), writer, connect(path),
                        OutboxBuilder(settings.upstream))
    writer.submit(WriteBatch(records=[
        record("t:1", "2026-11-27 10:00:01 ERROR spindle 2 overtemp 91C", "press-07"),
        record("t:2", "2026-11-27 10:00:02 WARN coolant level low (18%)", "press-07"),
        record("t:3", "2026-11-27 10:00:03 cycle complete part 4411", "lathe-02"),
        record("t:4", f"2026-11-27 10:00:04 ERROR bad request {SCRIPT}", EVIL_MACHINE),
        record("t:5", "2026-11-25 08:00:00 ERROR axis x following error", "lathe-02", age_s=3 * DAY),
        record("t:6", "2026-11-27 10:00:06 INFO 100% of pallets done_ok", "lathe-02"),
    ])).result()
    workers = [Worker("store-writer"), Worker("analyzer")]
    owner = SimpleNamespace(writer=writer, analyzer=analyzer, sources=[], publisher=None,
                            backend=analyzer.backend)
    web = WebServer(settings, owner, workers=lambda: workers)
    web.start()
    s = Site(f"http://127.0.0.1:{web.port}", path, web, analyzer, workers)
    s.analyze()
    yield s
    web.stop()
    writer.stop()


# -- pages -----------------------------------------------------------------------------------------
def test_overview_shows_health_backlog_and_problems(site):
    status, headers, body = site.fetch("/")
    assert status == 200
    assert "Healthy" in body
    assert "Backlog" in body and "Recent problems" in body
    assert "fake" in body  # model and backend
    assert 'data-refresh="5"' in body


def test_every_response_forbids_inline_scripts(site):
    for path in ("/", "/results", "/records/t%3A4", "/api/status", "/nope", "/healthz"):
        status, headers, body = site.fetch(path)
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp, path
        assert headers["X-Content-Type-Options"] == "nosniff"
        if "text/html" in headers["Content-Type"]:
            assert all('src="/static/' in tag for tag in re.findall(r"<script[^>]*>", body)), path


def test_log_text_and_machine_names_are_escaped_everywhere(site):
    for path in ("/", "/results", "/results?q=bad+request", "/records/" + quote("t:4", safe="")):
        status, _, body = site.fetch(path)
        assert status == 200, path
        assert SCRIPT not in body and "<img src=x" not in body, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body, path
    # Attacker text in a query parameter, reflected in the filter form, is escaped too.
    status, _, body = site.fetch("/results?" + urlencode({"q": '"><script>alert(3)</script>'}))
    assert "<script>alert(3)" not in body and "&lt;script&gt;alert(3)" in body


def test_record_page_has_text_template_outputs_and_delivery(site):
    status, _, body = site.fetch("/records/" + quote("t:1", safe=""))
    assert status == 200
    assert "ERROR spindle 2 overtemp 91C" in body
    assert "fault" in body and "Template" in body and "Upstream delivery" in body
    assert "waiting" in body  # an outbox row not delivered (no upstream here)
    status, _, body = site.fetch("/records/" + quote("f:nope:1", safe=""))
    assert status == 404


def test_results_page_filters_and_reports_bad_filters(site):
    status, _, body = site.fetch("/results?label=fault&machine=press-07")
    assert status == 200 and "spindle 2 overtemp" in body and "coolant" not in body
    status, _, body = site.fetch("/results?severity=9")
    assert status == 400 and "severity" in body


def test_parked_page_lists_records_with_their_errors(site):
    def park(db):
        db.conn.execute("UPDATE records SET status = 'parked', error = 'model said <b>nonsense</b>' WHERE record_id = 't:6'")

    site.analyzer.writer.call(park).result()
    status, _, body = site.fetch("/parked")
    assert status == 200 and "model said &lt;b&gt;nonsense&lt;/b&gt;" in body and "pallets" in body


def test_a_page_on_loopback_answers_only_to_loopback_names(site):
    # DNS rebinding: evil.example resolving to 127.0.0.1 must not get the page into its origin.
    assert site.fetch("/api/status", headers={"Host": "evil.example:8080"})[0] == 421
    assert site.fetch("/healthz", headers={"Host": f"localhost:{site.web.port}"})[0] == 200


def test_static_files(site):
    status, headers, body = site.fetch("/static/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    status, headers, _ = site.fetch("/static/style.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    assert site.fetch("/static/..%2Fserver.py")[0] == 404
    assert site.fetch("/static/server.py")[0] == 404


# -- JSON API ----------------------------------------------------------------------------------------
def api_ids(site, **params) -> list[str]:
    status, doc = site.json("/api/results?" + urlencode(params))
    assert status == 200, doc
    return [r["record_id"] for r in doc["results"]]


def test_api_results_filters(site):
    assert set(api_ids(site, label="fault")) == {"t:1", "t:4", "t:5"}
    assert set(api_ids(site, severity=2)) == {"t:1", "t:2", "t:4", "t:5"}
    assert set(api_ids(site, machine="lathe-02")) == {"t:3", "t:5", "t:6"}
    assert set(api_ids(site, label="fault", since="24h")) == {"t:1", "t:4"}
    assert api_ids(site, q="OVERTEMP") == ["t:1"]  # case-insensitive
    assert api_ids(site, q="100%") == ["t:6"]  # % and _ are literal, not wildcards
    assert api_ids(site, q="done_ok") == ["t:6"]
    assert api_ids(site, q="'; DROP TABLE records; --") == []
    assert site.rows("SELECT count(*) FROM records")[0][0] >= 6


def test_api_results_pages_with_next_before(site):
    status, first = site.json("/api/results?limit=2")
    assert len(first["results"]) == 2 and first["next_before"] is not None
    status, second = site.json(f"/api/results?limit=2&before={first['next_before']}")
    ids = [r["id"] for r in first["results"] + second["results"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4


@pytest.mark.parametrize("query", ["severity=x", "limit=0", "since=yesterday", "label=" + "x" * 300])
def test_api_results_rejects_bad_parameters(site, query):
    status, doc = site.json("/api/results?" + query)
    assert status == 400 and doc["error"]


def test_api_record_and_404(site):
    status, doc = site.json("/api/records/" + quote("t:1", safe=""))
    assert status == 200
    assert doc["text"].endswith("overtemp 91C") and doc["machine"] == "press-07"
    # The line's ERROR level decides (the [analysis.levels] table: fault 3), not the scripted model.
    assert doc["result"]["label"] == "fault" and doc["result"]["severity"] == 3
    assert doc["result"]["template"] and doc["outbox"][0]["sent_at"] is None
    status, doc = site.json("/api/records/" + quote("t:missing", safe=""))
    assert status == 404 and "t:missing" in doc["error"]


def test_api_status_is_edged_status_plus_runtime(site):
    status, doc = site.json("/api/status")
    assert status == 200
    assert doc["records"]["total"] >= 6 and "by_status" in doc["records"]
    assert doc["analysis"]["by_label"]["fault"] >= 3
    assert doc["runtime"]["workers"] == {"store-writer": True, "analyzer": True}
    assert doc["runtime"]["model"]["backend"] == "fake"
    assert doc["runtime"]["brokers"]["ingest"] == {"configured": False, "url": None}


# -- /healthz and /metrics -----------------------------------------------------------------------------
def test_healthz_is_200_while_workers_live_and_503_when_one_died(site):
    status, doc = site.json("/healthz")
    assert status == 200 and doc["status"] == "ok"
    site.workers[1].alive = False
    try:
        status, doc = site.json("/healthz")
        assert status == 503 and doc["status"] != "ok" and doc["dead"] == ["analyzer"]
    finally:
        site.workers[1].alive = True
    assert site.json("/healthz")[0] == 200


def test_metrics_parse_as_prometheus_text(site):
    status, headers, body = site.fetch("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    for name in ("edged_records", "edged_results", "edged_model_calls", "edged_cache_hits", "edged_outbox_unsent",
                 "edged_db_bytes", "edged_rejected_inputs", "edged_publish_sent", "edged_worker_up",
                 "edged_ingested_records_since_start", "edged_events", "edged_uptime_seconds"):
        assert name in families, name
    records = {s.labels["status"]: s.value for s in families["edged_records"].samples}
    assert set(records) == {"pending", "leased", "done", "parked"} and sum(records.values()) >= 6
    assert families["edged_model_calls"].type == "counter"
    labels = {s.labels["label"]: s.value for s in families["edged_results"].samples}
    assert labels["fault"] >= 3
    assert {s.labels["worker"] for s in families["edged_worker_up"].samples} == {"store-writer", "analyzer"}


# -- changes: auth and CSRF ------------------------------------------------------------------------------
def test_form_changes_without_login_are_401(site):
    status, _, body = site.fetch("/submit", {"machine": "m", "text": "fire", "csrf": "x"})
    assert status == 401 and "log in" in body.lower()
    status, _, _ = site.fetch("/records/t%3A1/label", {"label": "normal", "csrf": "x"})
    assert status == 401


def test_form_changes_without_or_with_a_wrong_csrf_token_are_403(site):
    cookie, csrf = site.login()
    for form in ({"text": "fire"}, {"text": "fire", "csrf": "wrong"}):
        status, _, body = site.fetch("/submit", form, headers={"Cookie": cookie})
        assert status == 403 and "expired" in body
    status, _, _ = site.fetch("/submit", {"text": "fire", "csrf": csrf},
                              headers={"Cookie": cookie, "Origin": "http://evil.example"})
    assert status == 403
    assert site.rows("SELECT count(*) FROM records WHERE text = 'fire'")[0][0] == 0


def test_login_sets_a_strict_httponly_cookie_and_rejects_a_wrong_token(site):
    status, _, body = site.fetch("/login", {"token": "wrong-token-123", "next": "/"})
    assert status == 401 and "Wrong token" in body
    status, headers, _ = site.fetch("/login", {"token": TOKEN, "next": "//evil.example/"})
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(SESSION_COOKIE + "=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_submitted_report_is_stored_through_the_writer_and_analyzed(site):
    cookie, csrf = site.login()
    status, headers, _ = site.fetch(
        "/submit", {"machine": "press-07", "text": "Smoke from the hydraulic unit", "csrf": csrf},
        headers={"Cookie": cookie},
    )
    assert status == 303
    location = headers["Location"]
    assert location.startswith("/records/s%3A") and location.endswith("?submitted=1")
    record_id = location.split("/")[2].split("?")[0].replace("%3A", ":")
    assert site.rows("SELECT kind, source, machine FROM records WHERE record_id = ?", record_id) == [
        ("incident", "submit:web", "press-07")
    ]
    status, _, body = site.fetch(location)
    assert "Waiting for analysis" in body
    site.analyze()
    status, _, body = site.fetch(location)
    assert "operator reported a problem" in body and "Waiting for analysis" not in body


def test_label_correction_through_the_form_is_kept_beside_the_models_label(site):
    cookie, csrf = site.login()
    path = "/records/" + quote("t:2", safe="") + "/label"
    status, _, body = site.fetch(path, {"label": "not-a-label", "csrf": csrf}, headers={"Cookie": cookie})
    assert status == 400 and "label must be one of" in body
    status, headers, _ = site.fetch(path, {"label": "fault", "by": "Ana", "note": "it stopped", "csrf": csrf},
                                    headers={"Cookie": cookie})
    assert status == 303
    assert site.rows("SELECT old_label, new_label, corrected_by, note FROM label_corrections WHERE record_id = 't:2'") == [
        ("warning", "fault", "Ana", "it stopped")
    ]
    assert site.rows("SELECT label FROM results WHERE record_id = 't:2'") == [("warning",)]
    assert "t:2" in api_ids(site, label="fault")  # filters use the corrected label
    status, doc = site.json("/api/records/" + quote("t:2", safe=""))
    assert doc["result"]["label"] == "fault" and doc["result"]["model_label"] == "warning"


def test_api_changes_need_the_bearer_token_and_never_a_cookie(site):
    body = json.dumps({"text": "Guard door sensor broken", "machine": "robot-3"}).encode()
    ctype = {"Content-Type": "application/json"}
    status, headers, _ = site.fetch("/api/incidents", body, ctype)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    cookie, _ = site.login()
    assert site.fetch("/api/incidents", body, {**ctype, "Cookie": cookie})[0] == 401
    assert site.fetch("/api/incidents", body, {**ctype, "Authorization": "Bearer wrong-token-xyz"})[0] == 401
    status, doc = site.json("/api/incidents", data=body, headers={**ctype, "Authorization": f"Bearer {TOKEN}"})
    assert status == 201 and doc["record_id"].startswith("s:")
    status, doc = site.json("/api/records/" + quote("t:3", safe="") + "/label",
                            data=json.dumps({"label": "warning"}).encode(),
                            headers={**ctype, "Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and doc == {"record_id": "t:3", "old_label": "normal", "new_label": "warning"}
    status, doc = site.json("/api/records/nope/label", data=json.dumps({"label": "warning"}).encode(),
                            headers={**ctype, "Authorization": f"Bearer {TOKEN}"})
    assert status == 404


def test_without_a_token_changes_are_refused_with_how_to_set_one(site):
    info = site.web.auth.info
    site.web.auth.info = TokenInfo(None, "/var/lib/edged/web_token", "could not create /var/lib/edged/web_token")
    try:
        status, _, body = site.fetch("/submit", {"text": "x", "csrf": "x"})
        assert status == 403 and "token_file" in body and "web_token" in body
        status, doc = site.json("/api/incidents", data=b"{}", headers={"Content-Type": "application/json",
                                                                       "Authorization": f"Bearer {TOKEN}"})
        assert status == 403 and "token_file" in doc["error"]
    finally:
        site.web.auth.info = info


def test_wrong_logins_are_limited(site):
    site.web.auth._failures.clear()
    for _ in range(LOGIN_FAILURES_ALLOWED):
        assert site.fetch("/login", {"token": "guess-guess-guess"})[0] == 401
    assert site.fetch("/login", {"token": "guess-guess-guess"})[0] == 429
    # The right token still works: everyone behind one proxy shares the address.
    assert site.fetch("/login", {"token": TOKEN})[0] == 303
    site.web.auth._failures.clear()


# -- settings and the token ---------------------------------------------------------------------------------
def test_listen_addresses():
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    for bad in ("8080", "::1:8080", "host:http", "[::1:80", "host:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_bad_listen_names_the_key_and_file(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "edged.toml"
    path.write_text('[web]\nlisten = "::1:8080"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "[web] listen" in str(exc.value) and str(path) in str(exc.value)


def test_token_from_the_systemd_credential(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "web_token").write_text("from-credential-123\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = tmp_path / "edged.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "x.db"}"\n')
    assert load_config(path).settings.web.token.get_secret_value() == "from-credential-123"
    (creds / "web_token").write_text("short\n")
    with pytest.raises(ConfigError, match="shorter than 12"):
        load_config(path)


def test_a_token_is_generated_once_into_the_state_directory(tmp_path):
    web = Settings().web
    first = resolve_token(web, tmp_path)
    assert first.token and len(first.token) >= 20 and first.where == str(tmp_path / "web_token")
    assert stat.S_IMODE(os.stat(tmp_path / "web_token").st_mode) == 0o600
    assert resolve_token(web, tmp_path).token == first.token
    blocked = resolve_token(web, tmp_path / "web_token")  # a file where the directory should be
    assert blocked.token is None and blocked.problem
