"""Talking to a broker: shared by the ingest source, the upstream publisher, the escalation replies and
`edged teacher`.

paho is not safe to drive from two threads. Without paho's own loop thread (we run our own, for
jittered backoff), a paho call such as ``ack()`` or ``publish()`` made from another thread writes to the
socket right there, racing the network thread (and, under TLS, using one SSL object from two threads).
So one thread owns the client: ``NetworkLoop.run`` selects on the socket and on a wake-up socket, and
other threads hand it work with ``call_soon``. We use paho's external-loop API (``loop_read``,
``loop_write``, ``loop_misc``) rather than ``loop()`` because ``loop()`` cannot be woken by us.
"""

from __future__ import annotations

import logging
import queue
import random
import select
import socket
import ssl
import threading
import time
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edged.config.broker_url import BrokerAddress, parse_broker_url
from edged.config.settings import BrokerSettings

__all__ = ["BrokerAddress", "ExponentialBackoff", "NetworkLoop", "make_client", "parse_broker_url"]

POLL_S = 0.5  # longest select wait; keepalive and stop are checked at least this often
DISCONNECT_FLUSH_S = 2.0


def make_client(
    settings: BrokerSettings,
    *,
    client_id: str,
    clean_session: bool,
    manual_ack: bool = False,
    address: BrokerAddress | None = None,
) -> mqtt.Client:
    """A paho client set up from ``[mqtt]``: MQTT 3.1.1, credentials, TLS. Not connected yet."""
    if address is None:
        if not settings.url:
            raise ValueError("[mqtt] url is not set")
        address = parse_broker_url(settings.url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    client.enable_logger(logging.getLogger(f"{__name__}.paho"))
    password = settings.password.get_secret_value() if settings.password is not None else None
    # A password without a user in the URL never gets here: the settings refuse it (edged.config.rules).
    if address.username is not None:
        client.username_pw_set(address.username, password)
    if address.tls:
        # ca_certs=None makes paho load the system CAs.
        client.tls_set(
            ca_certs=str(settings.ca_file) if settings.ca_file else None,
            certfile=str(settings.cert_file) if settings.cert_file else None,
            keyfile=str(settings.key_file) if settings.key_file else None,
        )
    return client


class ExponentialBackoff:
    """Delays that double from min_s to max_s, each spread by +-jitter so a fleet of boxes that lost
    the same broker does not reconnect in lockstep."""

    @classmethod
    def for_broker(cls, settings: Any) -> "ExponentialBackoff":
        """From a broker section's reconnect_min_s and reconnect_max_s (a max below the min means the min)."""
        return cls(settings.reconnect_min_s, max(settings.reconnect_min_s, settings.reconnect_max_s))

    def __init__(
        self, min_s: float, max_s: float, jitter: float = 0.2, rng: Callable[[], float] = random.random
    ) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self.jitter = jitter
        self._rng = rng
        self._base = min_s

    def next(self) -> float:
        delay = self._base * (1 + self.jitter * (2 * self._rng() - 1))
        self._base = min(self._base * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._base = self.min_s


class NetworkLoop:
    """Connects, serves the connection until it drops, waits the backoff, reconnects; until ``stop()``.

    ``run()`` is the body of the thread that owns ``client``. Every connection attempt gets a new
    ``generation``: work tied to one connection (an ack of a packet id) checks it, because packet
    ids are per connection and a stale ack could acknowledge a different, uncommitted message.
    """

    def __init__(
        self,
        client: mqtt.Client,
        address: BrokerAddress,
        keepalive: int,
        backoff: ExponentialBackoff,
        log: logging.Logger,
        read_paused: Callable[[], bool] | None = None,
    ) -> None:
        """``read_paused``: while it returns True no packets are read, so TCP flow control holds the
        broker back; call ``wake()`` when it may have changed. Reading paused for longer than the
        keepalive ends the connection (no PINGRESP is read), which is safe: unacked messages return."""
        self.client = client
        self.address = address
        self.keepalive = keepalive
        self.backoff = backoff
        self.log = log
        self.generation = 0
        self.connect_failures = 0
        self.read_paused = read_paused
        self._stop = threading.Event()
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # -- any thread --------------------------------------------------------------------------
    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the network thread, soon. Tasks left when the loop ends are dropped."""
        self._tasks.put(fn)
        self._wake()

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def wake(self) -> None:
        """Make the network thread look again (at its tasks and at ``read_paused``)."""
        self._wake()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already full (a wake-up is pending anyway) or closed (the loop has ended)

    # -- the network thread ------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._connect():
                    had_session = self._serve()
                    if self._stop.is_set():
                        break
                    if had_session:
                        self.backoff.reset()
                delay = self.backoff.next()
                self.log.info("reconnecting to %s in %.1f s", self.address, delay)
                self._stop.wait(delay)
        finally:
            self._disconnect()
            self._wake_r.close()
            self._wake_w.close()

    def _connect(self) -> bool:
        self.generation += 1
        try:
            # Blocking (TCP connect and TLS handshake, up to paho's connect_timeout); CONNACK
            # arrives later through loop_read and fires on_connect.
            self.client.connect(self.address.host, self.address.port, keepalive=self.keepalive)
        except (OSError, ValueError) as exc:
            self.connect_failures += 1
            self.log.warning("cannot connect to %s: %s", self.address, exc)
            return False
        return True

    def _serve(self) -> bool:
        """Until the connection drops or stop(); True if the broker accepted the session."""
        client = self.client
        sock = client.socket()
        accepted = False
        while sock is not None and client.socket() is sock:
            self._run_tasks()
            if self._stop.is_set():
                return accepted
            accepted = accepted or client.is_connected()
            paused = self.read_paused is not None and self.read_paused()
            # Decrypted bytes can wait inside the SSL object where select() cannot see them.
            pending = sock.pending() if isinstance(sock, ssl.SSLSocket) and not paused else 0
            rlist = [self._wake_r] if paused else [sock, self._wake_r]
            wlist = [sock] if client.want_write() else []
            try:
                readable, _, _ = select.select(rlist, wlist, [], 0 if pending else POLL_S)
            except (OSError, ValueError):
                readable = [] if paused else [sock]  # closed under us; loop_read reports it
            if self._wake_r in readable:
                self._drain_wake()
            if not paused and (sock in readable or pending):
                if self._check(client.loop_read(), "read"):
                    break
            if client.want_write() and self._check(client.loop_write(), "write"):
                break
            if self._check(client.loop_misc(), "keepalive"):
                break
        return accepted or client.is_connected()

    def _check(self, rc: MQTTErrorCode, what: str) -> bool:
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        self.log.warning("connection to %s lost (%s: %s)", self.address, what, mqtt.error_string(rc))
        return True

    def _run_tasks(self) -> None:
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                return
            try:
                task()
            except Exception:
                self.log.exception("network task failed")

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _disconnect(self) -> None:
        """A clean DISCONNECT, so a persistent session is kept without a 'lost connection' will."""
        client = self.client
        if client.socket() is None:
            return
        self._run_tasks()  # acks already committed go out before we leave
        client.disconnect()
        deadline = time.monotonic() + DISCONNECT_FLUSH_S
        while client.socket() is not None and client.want_write() and time.monotonic() < deadline:
            sock = client.socket()
            try:
                select.select([], [sock], [], 0.1)
            except (OSError, ValueError):
                break
            client.loop_write()
