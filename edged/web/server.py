"""The web worker: the standard library's threaded HTTP server on ``[web] listen``, in one thread.

No framework and no new dependency: the page is small and a Raspberry Pi has little memory. One
thread accepts; each request gets a short-lived thread, at most ``MAX_CONCURRENT`` at a time (more
wait in the listen queue), and a client that sends nothing for ``SOCKET_TIMEOUT_S`` is dropped.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from edged.config import ConfigError
from edged.config.settings import parse_listen
from edged.web.auth import Auth, resolve_token
from edged.web.queries import ReaderPool
from edged.web.request import MAX_BODY_BYTES, SECURITY_HEADERS, Request, Response, as_json
from edged.web.routes import Routes
from edged.web.runtime import Runtime

log = logging.getLogger(__name__)

MAX_CONCURRENT = 16
SOCKET_TIMEOUT_S = 10.0
POLL_S = 0.5  # the accept loop's wake-up; it also samples the rates


class _Handler(BaseHTTPRequestHandler):
    server_version = "edged"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_S
    server: "_Server"

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_HEAD = do_GET

    def _handle(self) -> None:
        if self.headers.get("Transfer-Encoding"):
            self._send(as_json({"error": "send a Content-Length; chunked bodies are not accepted"}, 411))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(as_json({"error": f"the body must be at most {MAX_BODY_BYTES} bytes"}, 413))
            return
        body = self.rfile.read(length) if length else b""
        req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                      self.client_address[0] if self.client_address else "")
        try:
            resp = self.server.routes.dispatch(req)
        except Exception:
            log.exception("web: %s %s failed", self.command, self.path)
            resp = as_json({"error": "internal error; see edged's log"}, 500)
        self._send(resp)

    def _send(self, resp: Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("Cache-Control", resp.cache)
        for name, value in resp.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def end_headers(self) -> None:
        # Here, so the base class's own error pages (a malformed request, an unknown method) get them too.
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("web %s: " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple, family: int, routes: Routes, on_poll: Callable[[], None]) -> None:
        self.address_family = family
        self.routes = routes
        self.on_poll = on_poll
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] in ("::", ""):
            # [::]:8080 means every interface, IPv4 included.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def service_actions(self) -> None:
        self.on_poll()


class WebServer:
    """The worker the daemon starts after the store and stops first."""

    name = "web"

    def __init__(self, settings: Any, owner: Any, *, workers: Callable[[], list] | None = None,
                 config_path: Path | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.runtime = Runtime(settings, owner, workers=workers, config_path=config_path)
        self.token = resolve_token(settings.web, Path(settings.store.path).parent)
        self.auth = Auth(self.token)
        self.pool = ReaderPool(settings.store.path)
        self.routes = Routes(self.runtime, self.pool, self.auth)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        listen = self.settings.web.listen
        host, port = parse_listen(listen)
        try:
            family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
            self._server = _Server(address[:2], family, self.routes, self.runtime.meter.sample)
        except OSError as exc:
            where = self.config_path or "built-in defaults"
            raise ConfigError(
                f"{where}: [web] listen: cannot listen on {listen}: {exc.strerror or exc}"
                " (is another edged or program using it? set [web] listen to another address or port,"
                " or [web] enabled = false)"
            ) from None
        self.runtime.meter.sample()
        self._thread = threading.Thread(target=self._serve, name="web", daemon=True)
        self._thread.start()
        if self.token.token is None:
            log.warning("web: changes are off: %s", self.auth.refusal)
        log.info("web page on %s", self.url)

    def _serve(self) -> None:
        assert self._server is not None
        self._server.serve_forever(poll_interval=POLL_S)

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is not None and self._thread is not None and self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        if self._server is not None:
            self._server.server_close()
        self.pool.close()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host, _ = parse_listen(self.settings.web.listen)
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def banner(self) -> str:
        """The banner line: where the page is and where the token for changes is."""
        host, _ = parse_listen(self.settings.web.listen)
        reach = "  (this box only; for tablets set [web] listen = \"0.0.0.0:8080\")" if _loopback(host) else ""
        if self.token.token is None:
            changes = f"changes are off: {self.token.problem}"
        else:
            changes = f"changes need the token in {self.token.where}"
        return f"{self.url}{reach}\n            {changes}"


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
