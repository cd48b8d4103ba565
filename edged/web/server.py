"""The web worker: the standard library's threaded HTTP server on ``[web] listen``.

No framework and no new dependency: the page is small and a Raspberry Pi has little memory. One
thread accepts and never waits for a handler; each connection gets a short-lived thread. What keeps
slow or many clients from starving the page (and ``/healthz``, which rollouts and monitors poll):

- a deadline per request: its line, headers and body must all arrive within ``REQUEST_DEADLINE_S``
  of the moment the server starts waiting for it (a client that trickles one header line every few
  seconds is cut off at the deadline, not kept for ever by a per-read timeout);
- at most ``MAX_PER_CLIENT`` connections per client address and ``MAX_CONNECTIONS`` in all. A new
  connection over either cap takes the place of the oldest connection that is still waiting for its
  request (a slow client, or an idle keep-alive one); only when every connection is busy answering
  is the new one refused with 503. So a fresh request always gets through, and a flood of stalled
  connections only ever displaces itself.

A client that disconnects (or is cut off) is logged at debug level, in one line, without a traceback.
"""

from __future__ import annotations

import io
import logging
import socket
import sys
import threading
import time
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

REQUEST_DEADLINE_S = 10.0  # request line + headers + body, from when the server starts waiting for it
WRITE_TIMEOUT_S = 10.0  # a client that does not read its answer is dropped after this
MAX_PER_CLIENT = 16  # connections from one address
MAX_CONNECTIONS = 128  # connections in all
POLL_S = 0.5  # the accept loop's wake-up; it also samples the rates
_BUSY_ANSWER = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n"
                b"Retry-After: 1\r\n\r\n")
_DISCONNECTS = (ConnectionError, TimeoutError, socket.timeout, OSError)


class _DeadlineReader(io.RawIOBase):
    """A socket's input that refuses to wait past ``deadline`` (monotonic) in total, not per read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = time.monotonic() + REQUEST_DEADLINE_S

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request deadline passed")
        self.sock.settimeout(remaining)
        return self.sock.recv_into(buffer)


class _Connection:
    __slots__ = ("id", "client", "sock", "waiting")

    def __init__(self, id: int, client: str, sock: socket.socket) -> None:
        self.id = id
        self.client = client
        self.sock = sock
        self.waiting = True  # for its next request (or still receiving it): may be displaced


class _Handler(BaseHTTPRequestHandler):
    server_version = "edged"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    server: "_Server"

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the base class's reader: only its reference to the socket goes
        self._input = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._input)

    def handle(self) -> None:
        try:
            super().handle()
        except _DISCONNECTS as exc:
            log.debug("web %s: connection ended: %s", self.address_string(), exc or type(exc).__name__)

    def handle_one_request(self) -> None:
        # Each request's deadline starts when the server begins waiting for it (keep-alive included).
        self._input.deadline = time.monotonic() + REQUEST_DEADLINE_S
        self.server.set_waiting(self, True)
        super().handle_one_request()

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
        if len(body) < length:
            self.close_connection = True
            return  # the client went away mid-body
        self.server.set_waiting(self, False)
        req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                      self.client_address[0] if self.client_address else "")
        try:
            resp = self.server.routes.dispatch(req)
        except Exception:
            log.exception("web: %s %s failed", self.command, self.path)
            resp = as_json({"error": "internal error; see edged's log"}, 500)
        self._send(resp)

    def _send(self, resp: Response) -> None:
        self.connection.settimeout(WRITE_TIMEOUT_S)
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
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple, family: int, routes: Routes, on_poll: Callable[[], None]) -> None:
        self.address_family = family
        self.routes = routes
        self.on_poll = on_poll
        self._lock = threading.Lock()
        self._connections: dict[int, _Connection] = {}  # by id(socket), in accept order: the oldest first
        self.displaced = 0  # stalled connections closed to make room for new ones
        self.refused = 0  # connections answered 503 because every slot was busy answering
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] in ("::", ""):
            # [::]:8080 means every interface, IPv4 included.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    # -- connection accounting (accept thread and handler threads) ----------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        client = client_address[0] if client_address else ""
        with self._lock:
            mine = [c for c in self._connections.values() if c.client == client]
            victims = []
            if len(mine) >= MAX_PER_CLIENT:
                victims.append(next((c for c in mine if c.waiting), None))
            if len(self._connections) - len([v for v in victims if v]) >= MAX_CONNECTIONS:
                victims.append(self._oldest_waiting(exclude=victims))
            if None in victims:
                self.refused += 1
                entry = None
            else:
                for victim in victims:
                    self._connections.pop(victim.id, None)
                    self.displaced += 1
                entry = _Connection(id(request), client, request)
                self._connections[entry.id] = entry
        for victim in victims:
            if victim is not None:
                _cut(victim.sock)
        if entry is None:
            _refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(entry)
            raise

    def _oldest_waiting(self, exclude: list) -> _Connection | None:
        return next((c for c in self._connections.values() if c.waiting and c not in exclude), None)

    def set_waiting(self, handler: _Handler, waiting: bool) -> None:
        entry = self._connections.get(id(handler.connection))
        if entry is not None and entry.sock is handler.connection:
            entry.waiting = waiting

    def _forget(self, entry: _Connection) -> None:
        with self._lock:
            self._connections.pop(entry.id, None)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                entry = self._connections.get(id(request))
                if entry is not None and entry.sock is request:
                    del self._connections[entry.id]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a traceback to stderr; a broken connection is not news.
        exc = sys.exc_info()[1]
        log.debug("web %s: connection failed: %s", client_address[0] if client_address else "?",
                  exc or "unknown error")

    def close_connections(self) -> None:
        with self._lock:
            entries = list(self._connections.values())
            self._connections.clear()
        for entry in entries:
            _cut(entry.sock)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def service_actions(self) -> None:
        self.on_poll()


def _cut(sock: socket.socket) -> None:
    """End a connection another thread may be blocked on: shutdown wakes its recv, close would not."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _refuse(sock: socket.socket) -> None:
    try:
        sock.setblocking(False)
        sock.send(_BUSY_ANSWER)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


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

    def bind(self) -> None:
        """Take the listening address (ConfigError when it is in use); serving waits for ``start()``."""
        if self._server is not None:
            return
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

    def start(self) -> None:
        self.bind()
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
            self._server.close_connections()
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
