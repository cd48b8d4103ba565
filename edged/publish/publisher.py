"""The upstream publisher: sends the outbox to the upstream broker; a row is sent when its PUBACK is in.

Two threads. The network thread (``NetworkLoop``, shared with the ingest side) owns the paho client:
it publishes rows from a small in-memory buffer, keeps at most ``[upstream] inflight`` of them
unacknowledged, and on each PUBACK (``on_publish(mid)``) notes the row as delivered and publishes the
next. The feeder thread reads unsent rows from the outbox in id order (its own reader connection)
and hands them to the network thread, hands delivered rows to the store writer in batches (one
``mark_sent`` job in flight at a time, so the batch grows with the writer's latency), and deletes
rows delivered more than ``sent_ttl_s`` ago.

Nothing here is a queue of record: the outbox is. A row leaves the outbox's unsent set only in the
transaction that follows its PUBACK; a crash before it simply sends the row again on the next start,
with the same result_id (at-least-once; consumers drop duplicates by result_id).

**Clean session.** The connection uses clean_session=True. The durable queue is the outbox, not the
broker session: a publisher subscribes to nothing, so a persistent session would only keep the
broker's half of unfinished QoS 1 exchanges, which paho cannot resume after a restart anyway (its
outgoing messages live in memory only, eclipse/paho.mqtt.python#634), and it would make the broker
keep state for every box that ever connected. After a reconnect within one run, paho itself sends the
unacknowledged messages again (same packet id, DUP set) ahead of anything new, so the order per
source holds; ``on_publish(mid)`` then fires for them on the new connection. paho's ids identify a
message for the whole life of the client object (not per connection, unlike the broker's ids the
ingest side acks), so mid -> row needs no connection generation. We count those resends as
``publish.resent``.

**Escalation.** With ``[upstream] escalation`` on, escalations are outbox rows like results; their
replies arrive on a second connection with a persistent session (edged.publish.replies), and
``send_gate`` holds every publish until that connection has subscribed once, so no escalation goes
out before the broker keeps its answers for this box.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

import paho.mqtt.client as mqtt
import sqlite_utils

from edged.config.settings import UpstreamSettings
from edged.store.outbox import Delivered, expire_sent, mark_sent, read_unsent
from edged.publish.outbox import status_topic, topic_for, with_published_at
from edged.broker import (
    BrokerAddress,
    ExponentialBackoff,
    NetworkLoop,
    make_client,
    parse_broker_url,
)
from edged.store.writer import StoreWriter, WriterStopped

log = logging.getLogger(__name__)

POLL_S = 0.5  # an idle publisher looks at the outbox this often (wake() makes it look at once)
OFFLINE_WAIT_S = 2.0  # how long stop() waits for the broker to confirm the retained "offline"
FINAL_MARK_WAIT_S = 10.0  # how long stop() waits for the last delivered rows to be marked
EXPIRE_MAX_INTERVAL_S = 60.0
MIN_BUFFER_ROWS = 500  # rows read ahead of the window, so a flush never waits on a SELECT


class _Row:
    __slots__ = ("id", "topic", "payload", "published_at", "attempts")

    def __init__(self, id: int, topic: str, payload: str) -> None:
        self.id = id
        self.topic = topic
        self.payload = payload
        self.published_at = 0.0
        self.attempts = 0


class Publisher:
    """Publishes the outbox to ``[upstream] url``. ``start()`` once, ``stop()`` at the end."""

    name = "publisher"

    def __init__(
        self, settings: UpstreamSettings, writer: StoreWriter, reader: sqlite_utils.Database,
        send_gate: Callable[[], bool] | None = None,
    ) -> None:
        """``send_gate``: while it returns False nothing is published (call ``gate_opened()`` when it
        turns True)."""
        if not settings.url:
            raise ValueError("[upstream] url is not set")
        self.settings = settings
        self.writer = writer
        self.reader = reader
        self.address: BrokerAddress = parse_broker_url(settings.url)
        self.status_topic = status_topic(settings)
        self.send_gate = send_gate
        self.window = settings.inflight
        self.buffer_rows = max(4 * self.window, MIN_BUFFER_ROWS)
        self.refill_below = self.buffer_rows // 2
        self.expire_interval_s = min(EXPIRE_MAX_INTERVAL_S, max(POLL_S, settings.sent_ttl_s / 4))
        self._client: mqtt.Client | None = None
        self._loop: NetworkLoop | None = None
        self._net_thread: threading.Thread | None = None
        self._feed_thread: threading.Thread | None = None
        self._wakeup = threading.Event()  # the feeder has something to do
        self._feed_stop = threading.Event()
        # Network thread only.
        self._pending: collections.deque[_Row] = collections.deque()  # read, not yet published
        self._inflight: dict[int, _Row] = {}  # paho mid -> published, not yet acknowledged
        self._online = False  # the broker accepted this connection
        self._stopping = False  # publish nothing new (set before the retained "offline")
        self._offline_mid: int | None = None
        self._offline_acked = threading.Event()
        self._refill_wanted = False
        self._more_in_db = True  # the feeder's last read was full: ask it for more as the buffer drains
        # Shared between the threads, under _lock.
        self._lock = threading.Lock()
        self._delivered: list[Delivered] = []  # acknowledged, not yet handed to the writer
        self._outstanding = 0  # rows handed to the network thread and not yet marked (or dropped)
        # Feeder thread only.
        self._cursor = 0  # highest outbox id handed to the network thread
        self._handed = 0  # rows handed to the network thread, ever
        self._mark_future: Future | None = None
        self._flushed = {"publish.resent": 0, "publish.connects": 0}
        self._expire_future: Future | None = None
        self._next_expire = 0.0
        # Figures for status, the banner and tests.
        self.taken = 0  # rows the network thread took from its buffer (network thread)
        self.published = 0  # first publishes of rows
        self.acked = 0  # PUBACKs of rows
        self.resent = 0  # rows published again after a reconnect
        self.connects = 0  # connections the broker accepted
        self.marked = 0  # rows marked sent in the database
        self.expired = 0
        self.error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.is_alive():
            raise RuntimeError("publisher already running")
        s = self.settings
        client = make_client(s, client_id=s.client_id, clean_session=True, address=self.address)
        # The window is ours (self.window); paho must not queue behind a limit of its own, or it
        # could hold back the resends of a reconnect.
        client.max_inflight_messages_set(0)
        if s.birth:
            client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        backoff = ExponentialBackoff.for_broker(s)
        self._loop = NetworkLoop(client, self.address, s.keepalive_s, backoff, log)
        self._net_thread = threading.Thread(target=self._run_network, name="publisher-net", daemon=True)
        self._feed_thread = threading.Thread(target=self._run_feeder, name="publisher-feed", daemon=True)
        log.info(
            "upstream publisher: broker %s, client id %s, topic %s, %d in flight",
            self.address, s.client_id, topic_for(s, "{kind}"), self.window,
        )
        self._net_thread.start()
        self._feed_thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Publish the retained "offline", disconnect, and mark what was acknowledged. Rows still
        unacknowledged stay unsent in the outbox and go out again on the next start."""
        loop = self._loop
        if loop is not None and self._net_thread is not None and self._net_thread.is_alive():
            loop.call_soon(self._say_offline)
            deadline = time.monotonic() + OFFLINE_WAIT_S
            # Not beyond the connection: a broker that is gone will not confirm anything.
            while not self._offline_acked.wait(0.05) and self._online and time.monotonic() < deadline:
                pass
            loop.stop()
            self._net_thread.join(timeout)
            if self._net_thread.is_alive():
                log.warning("upstream network thread did not stop within %.0f s", timeout)
        self._feed_stop.set()
        self._wakeup.set()
        if self._feed_thread is not None:
            self._feed_thread.join(timeout + FINAL_MARK_WAIT_S)

    def is_alive(self) -> bool:
        return all(t is not None and t.is_alive() for t in (self._net_thread, self._feed_thread))

    def wake(self) -> None:
        """New rows are in the outbox (the analyzer calls this after storing results): look now."""
        self._more_in_db = True
        self._wakeup.set()

    @property
    def connected(self) -> bool:
        return self._online and self.is_alive()

    @property
    def connect_failures(self) -> int:
        """Connection attempts that failed before MQTT started (refused, unreachable, TLS)."""
        return self._loop.connect_failures if self._loop is not None else 0

    @property
    def attempts(self) -> int:
        """Connection attempts so far, successful or not."""
        return self._loop.generation if self._loop is not None else 0

    @property
    def unacked(self) -> int:
        return len(self._inflight)

    def _run_network(self) -> None:
        assert self._loop is not None
        try:
            self._loop.run()
        except BaseException as exc:
            self.error = exc
            log.exception("upstream network thread crashed")
            raise
        finally:
            self._online = False

    # -- paho callbacks and tasks (network thread) -------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("upstream broker %s refused the connection: %s", self.address, reason)
            return
        self.connects += 1
        resend = len(self._inflight)
        if resend:
            # paho sends these again right after this callback, before anything newer.
            self.resent += resend
            for row in self._inflight.values():
                row.attempts += 1
        log.info(
            "connected to upstream %s%s", self.address,
            f"; sending {resend} unacknowledged results again" if resend else "",
        )
        self._online = True
        if self.settings.birth:
            client.publish(self.status_topic, "online", qos=1, retain=True)
        assert self._loop is not None
        self._loop.call_soon(self._fill_window)  # after paho's resends
        self._wakeup.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was_online, self._online = self._online, False
        if was_online and self._inflight:
            log.info("upstream link lost with %d results unacknowledged; they go again on reconnect", len(self._inflight))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        row = self._inflight.pop(mid, None)
        if row is None:
            if mid == self._offline_mid:
                self._offline_acked.set()
            return  # the birth message
        self.acked += 1
        with self._lock:
            first = not self._delivered
            self._delivered.append(Delivered(row.id, row.published_at, row.attempts))
        if first:
            self._wakeup.set()
        self._fill_window()

    def gate_opened(self) -> None:
        """``send_gate`` turned True: publish what waits."""
        if self._loop is not None:
            self._loop.call_soon(self._fill_window)
        self._wakeup.set()

    def _enqueue(self, rows: list[_Row]) -> None:
        self._pending.extend(rows)
        self._fill_window()

    def _fill_window(self) -> None:
        client = self._client
        assert client is not None
        pending, inflight = self._pending, self._inflight
        if self.send_gate is not None and not self.send_gate():
            return
        while self._online and not self._stopping and pending and len(inflight) < self.window:
            row = pending.popleft()
            self.taken += 1
            row.published_at = time.time()
            row.attempts = 1
            try:
                info = client.publish(row.topic, with_published_at(row.payload, row.published_at), qos=1)
            except ValueError as exc:  # a payload paho refuses; leave the row unsent, retried later
                log.error("outbox row %d cannot be published: %s", row.id, exc)
                self._dropped(1)
                continue
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                # NO_CONN: paho keeps the message and sends it after the reconnect. Anything else:
                # the row stays unsent in the outbox and is read again when the publisher is idle.
                log.error("publishing outbox row %d failed: %s", row.id, mqtt.error_string(info.rc))
                self._dropped(1)
                continue
            self.published += 1
            inflight[info.mid] = row
        if len(pending) < self.refill_below and self._more_in_db and not self._refill_wanted:
            self._refill_wanted = True
            self._wakeup.set()

    def _dropped(self, n: int) -> None:
        with self._lock:
            self._outstanding -= n

    def _say_offline(self) -> None:
        self._stopping = True
        client = self._client
        if not (self.settings.birth and self._online and client is not None):
            self._offline_acked.set()
            return
        info = client.publish(self.status_topic, "offline", qos=1, retain=True)
        self._offline_mid = info.mid

    # -- the feeder thread -------------------------------------------------------------------
    def _run_feeder(self) -> None:
        try:
            while True:
                self._wakeup.clear()
                stopping = self._feed_stop.is_set()
                self._flush_delivered(final=stopping)
                if stopping:
                    return
                if self._online:
                    self._read_more()
                self._expire_if_due()
                self._wakeup.wait(POLL_S)
        except WriterStopped:
            log.warning("store writer stopped before the publisher; acknowledged rows are sent again next start")
        except BaseException as exc:
            self.error = exc
            log.exception("upstream feeder crashed")
            raise

    def _read_more(self) -> None:
        self._refill_wanted = False  # before measuring: a later drain asks again
        buffered = self._handed - self.taken
        if buffered >= self.refill_below:
            return
        limit = self.buffer_rows - buffered
        rows = read_unsent(self.reader, self._cursor, limit)
        self._more_in_db = len(rows) == limit
        if not rows:
            with self._lock:
                idle = self._outstanding == 0
            if not idle or self._cursor == 0:
                return
            # Nothing in flight and nothing unmarked: start over from the lowest unsent id. This
            # picks up rows an earlier pass left behind (a failed mark, a refused publish) and rows
            # that reused an id after the highest row was deleted.
            self._cursor = 0
            rows = read_unsent(self.reader, 0, limit)
            self._more_in_db = len(rows) == limit
            if not rows:
                return
        self._cursor = rows[-1][0]
        with self._lock:
            self._outstanding += len(rows)
        self._handed += len(rows)
        assert self._loop is not None
        self._loop.call_soon(functools.partial(self._enqueue, [_Row(*r) for r in rows]))

    def _flush_delivered(self, final: bool = False) -> None:
        """Hand acknowledged rows to the writer; one job at a time, so the next one takes all that
        were acknowledged meanwhile."""
        previous = self._mark_future
        if previous is not None and not previous.done():
            if not final:
                return  # its done-callback wakes us
            try:
                previous.result(FINAL_MARK_WAIT_S)
            except Exception:
                pass  # reported by its callback
        counters = {"publish.resent": self.resent, "publish.connects": self.connects}
        with self._lock:
            deltas = {name: value - self._flushed[name] for name, value in counters.items()}
            if not self._delivered and not any(deltas.values()):
                return
            delivered, self._delivered = self._delivered, []
            self._flushed.update(counters)
        future = self.writer.call(lambda db: mark_sent(db, delivered, deltas))
        self._mark_future = future
        future.add_done_callback(functools.partial(self._marked, len(delivered), deltas))
        if final:
            try:
                future.result(FINAL_MARK_WAIT_S)
            except Exception:
                pass

    def _marked(self, handed: int, deltas: dict[str, int], future: Future) -> None:
        """Writer thread, after the mark commit (or its failure)."""
        exc = future.exception()
        with self._lock:
            self._outstanding -= handed
            if exc is not None:
                for name, value in deltas.items():
                    self._flushed[name] -= value  # counted again with the next batch
        if exc is not None:
            # The rows stay unsent and are sent again (same result_id) when the publisher is idle.
            log.error("marking %d delivered results failed: %s", handed, exc)
        else:
            self.marked += future.result()
        self._wakeup.set()

    def _expire_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_expire or (self._expire_future is not None and not self._expire_future.done()):
            return
        self._next_expire = now + self.expire_interval_s
        ttl = self.settings.sent_ttl_s
        self._expire_future = self.writer.call(lambda db: expire_sent(db, ttl))
        self._expire_future.add_done_callback(self._expired)

    def _expired(self, future: Future) -> None:
        exc = future.exception()
        if exc is not None:
            log.error("deleting expired outbox rows failed: %s", exc)
            return
        deleted = future.result()
        self.expired += deleted
        if deleted:
            log.debug("deleted %d delivered results older than %.0f s", deleted, self.settings.sent_ttl_s)
            self._next_expire = 0.0  # maybe more than one batch: go on at the next look
