"""Slow, many and hostile web clients against the real server (in-process, real sockets): /healthz,
which rollouts and monitors poll, must keep answering within a second, and nothing a client sends or
does (a reset, garbage, a stall) may put a traceback into the log."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import urllib.request
from types import SimpleNamespace

import pytest

from edged.config import Settings
from edged.store.database import open_database
from edged.store.writer import StoreWriter
from edged.web import server as web_server
from edged.web.server import WebServer

HEALTHZ_DEADLINE_S = 1.0  # the answer time a health gate allows: a functional requirement, not a benchmark
SLOW_CLIENTS = 64


@pytest.fixture
def web(tmp_path, monkeypatch):
    monkeypatch.setattr(web_server, "REQUEST_DEADLINE_S", 3.0, raising=False)  # so a trickling client is cut off in the test
    path = tmp_path / "edged.db"
    settings = Settings(store={"path": path}, logs={"paths": []},
                        web={"listen": "127.0.0.1:0", "token": "test-token-0123456789"})
    writer = StoreWriter(open_database(path))
    writer.start()
    owner = SimpleNamespace(writer=writer, analyzer=None, sources=[], publisher=None, backend=None)
    server = WebServer(settings, owner, workers=lambda: [])
    server.start()
    yield server
    server.stop()
    writer.stop()


def healthz(port: int) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=HEALTHZ_DEADLINE_S) as resp:
        assert resp.status == 200
        resp.read()
    return time.monotonic() - started


def test_healthz_answers_while_64_slow_clients_trickle_headers(web):
    stop = threading.Event()
    cut_off = []

    def trickle(i: int) -> None:
        sock = socket.create_connection(("127.0.0.1", web.port))
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            n = 0
            while not stop.wait(0.5):
                n += 1
                sock.sendall(f"X-Slow-{n}: {'a' * 10}\r\n".encode())
        except OSError:
            cut_off.append(i)  # the server ended the connection (deadline or displaced)
        finally:
            sock.close()

    threads = [threading.Thread(target=trickle, args=(i,), daemon=True) for i in range(SLOW_CLIENTS)]
    for t in threads:
        t.start()
    try:
        times = []
        end = time.monotonic() + 5.0  # longer than the request deadline: the slow ones are cut and reconnect
        while time.monotonic() < end:
            times.append(healthz(web.port))
            time.sleep(0.2)
        assert max(times) < HEALTHZ_DEADLINE_S
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert cut_off, "no slow client was ever cut off"


def test_healthz_answers_with_hundreds_of_idle_connections(web):
    idle = []
    try:
        for _ in range(400):
            idle.append(socket.create_connection(("127.0.0.1", web.port)))
        for _ in range(5):
            assert healthz(web.port) < HEALTHZ_DEADLINE_S
    finally:
        for sock in idle:
            sock.close()


def _hostile_requests(seed: int, n: int):
    rng = random.Random(seed)
    methods = [b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"\x00\xff", b"G" * 5000, b""]
    paths = [b"/", b"/healthz", b"/api/results?since=1e999", b"/api/results?since=nan&limit=-1",
             b"/record/" + b"%00" * 50, b"/" + b"a" * 70_000, b"/static/../../etc/passwd", b"/login",
             b"/api/incidents", b"/submit", b"/api/results?q=" + b"%ff" * 300, b"*", b"http://evil/"]
    for i in range(n):
        kind = rng.randrange(6)
        if kind == 0:  # random bytes
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        elif kind == 1:  # a request line with hostile parts
            yield rng.choice(methods) + b" " + rng.choice(paths) + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        elif kind == 2:  # a lying or absurd Content-Length
            length = rng.choice([b"-1", b"99999999999999999999", b"abc", b"10", b"1e3"])
            yield b"POST /api/incidents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" \
                b"Content-Length: " + length + b"\r\n\r\n{\"te"
        elif kind == 3:  # deep JSON, and JSON that is not an object
            body = rng.choice([b"[" * 5000 + b"]" * 5000, b"{\"text\": " * 2000, b"null", b"\"x\"", b"{}"])
            yield (b"POST /api/incidents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Authorization: Bearer test-token-0123456789\r\nContent-Length: "
                   + str(len(body)).encode() + b"\r\n\r\n" + body)
        elif kind == 4:  # too many or too long headers
            yield b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (j, b"v" * rng.randrange(1, 9000))
                                                   for j in range(rng.randrange(1, 120))) + b"\r\n"
        else:  # a reset in the middle of a request
            yield None


def send_hostile_request(port: int, payload: bytes | None) -> None:
    """One hostile request; None: a body cut short, then the connection reset (SO_LINGER 0)."""
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        if payload is None:
            sock.sendall(b"POST /api/incidents HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"text\":")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        else:
            sock.settimeout(5)
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
            except OSError:
                pass  # the server may close on a bad request before reading it all
    finally:
        sock.close()


def test_hostile_requests_leave_the_server_answering_and_the_log_clean(web, caplog, capfd):
    sent = 0
    with caplog.at_level(logging.INFO):
        for payload in _hostile_requests(seed=14, n=2000):
            send_hostile_request(web.port, payload)
            sent += 1
        assert healthz(web.port) < HEALTHZ_DEADLINE_S
    assert sent == 2000
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad[:5]]
    assert "Traceback" not in caplog.text
    # socketserver prints a failed connection's traceback straight to stderr, past the logging setup.
    assert "Traceback" not in capfd.readouterr().err
