"""The MQTT ingest source: subscribe, store every message, acknowledge it only once it is committed.

A persistent session (fixed client id, clean_session=False) makes the broker queue messages while
edged is down, and manual acks make it redeliver any message whose PUBACK we never sent: a crash
between receiving and committing loses nothing.

The broker's in-flight window ought to bound how many messages wait for the writer, but mosquitto
2.0.11 (Debian 12) releases up to a whole window of queued messages for each in-order PUBACK
(eclipse-mosquitto/mosquitto#2301), so a session backlog arrives all at once. We therefore stop
reading from the socket while ``max_uncommitted`` messages wait for the writer: TCP flow control then
holds the broker back, and a slow disk never grows our memory. The same pause holds reading while the
retention job says so (edged.store.retention.Backpressure: backlog over high water, or the database
full): no new messages are read and so none is acknowledged; the broker keeps them.
Redeliveries are not deduplicated here: the record id is a hash of topic and payload, and the writer
counts the second copy under ``duplicates.mqtt``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from edged.config.settings import MqttSettings
from edged.ids import mqtt_record_id
from edged.broker import (
    BrokerAddress,
    ExponentialBackoff,
    NetworkLoop,
    make_client,
    parse_broker_url,
)
from edged.sources.mqtt.payload import parse_message
from edged.store.records import FLAG_BOUNDED, SAMPLE_BYTES, Rejected
from edged.store.writer import BatchResult, StoreWriter, WriteBatch, WriterStopped

if TYPE_CHECKING:
    from edged.store.retention import Backpressure

log = logging.getLogger(__name__)

MAX_UNCOMMITTED = 1000


class MqttSource:
    """Ingests the ``[mqtt] topics`` into the inbox. ``start()`` once, ``stop()`` at the end."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings, writer: StoreWriter, backpressure: Backpressure | None = None) -> None:
        if not settings.url:
            raise ValueError("[mqtt] url is not set")
        self.settings = settings
        self.writer = writer
        self.address: BrokerAddress = parse_broker_url(settings.url)
        self._client: mqtt.Client | None = None
        self._loop: NetworkLoop | None = None
        self._thread: threading.Thread | None = None
        self._subscribe_mid: int | None = None
        self._subscribed = False
        self.max_uncommitted = MAX_UNCOMMITTED
        # Held by the retention job (backlog over high water, or the database full): no reading, so
        # no new messages and no acks; the broker keeps them.
        self.backpressure = backpressure
        if backpressure is not None:
            backpressure.on_release(self._wake_loop)
        # A future's done-callback runs in the writer thread, or in ours if the commit was quicker
        # than add_done_callback: the two counters it touches need a lock.
        self._done_lock = threading.Lock()
        # Figures for status and metrics; the others are written by the network thread only.
        self.received = 0  # messages delivered by the broker, redeliveries included
        self.redelivered = 0  # of those, marked DUP by the broker
        self.submitted = 0  # handed to the writer
        self.finished = 0  # of those, committed or failed
        self.rejected = 0
        self.acked = 0
        self.stale_acks = 0  # committed after their connection ended; the broker redelivers them
        self.submit_failures = 0  # the writer had stopped; left unacked for the broker to redeliver
        self.write_failures = 0
        self.connections = 0  # sessions the broker accepted
        self.last_message_at: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.is_alive():
            raise RuntimeError("MQTT source already running")
        s = self.settings
        client = make_client(s, client_id=s.client_id, clean_session=False, manual_ack=True, address=self.address)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        backoff = ExponentialBackoff.for_broker(s)
        self._client = client
        self._loop = NetworkLoop(client, self.address, s.keepalive_s, backoff, log, read_paused=self._read_paused)
        self._thread = threading.Thread(target=self._run, name="mqtt-source", daemon=True)
        log.info("MQTT source: broker %s, client id %s, topics %s", self.address, s.client_id, ", ".join(s.topics))
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        """Disconnect cleanly. Messages not yet acked stay with the broker and come again next time."""
        if self._loop is not None:
            self._loop.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("MQTT network thread did not stop within %.0f s", timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def connected(self) -> bool:
        return self._client is not None and self.is_alive() and self._client.is_connected()

    @property
    def connect_failures(self) -> int:
        """Connection attempts that failed before MQTT started (refused, unreachable, TLS)."""
        return self._loop.connect_failures if self._loop is not None else 0

    @property
    def uncommitted(self) -> int:
        """Messages handed to the writer and not yet committed."""
        return self.submitted - self.finished

    def _writer_behind(self) -> bool:
        return self.uncommitted >= self.max_uncommitted

    def _read_paused(self) -> bool:
        return self._writer_behind() or (self.backpressure is not None and self.backpressure.paused)

    def _wake_loop(self) -> None:
        if self._loop is not None:
            self._loop.wake()

    @property
    def subscribed(self) -> bool:
        """Connected and the broker has granted the subscriptions of this connection."""
        return self.connected and self._subscribed

    def _run(self) -> None:
        assert self._loop is not None
        try:
            self._loop.run()
        except Exception:
            log.exception("MQTT network thread crashed")
            raise
        finally:
            self._subscribed = False

    # -- paho callbacks (network thread) -----------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("broker %s refused the connection: %s", self.address, reason)
            return
        self.connections += 1
        log.info("connected to %s (session present: %s)", self.address, flags.session_present)
        # Also with a session present: a broker that lost its state (restart without
        # persistence) would otherwise leave us connected but subscribed to nothing.
        self._subscribed = False
        rc, mid = client.subscribe([(topic, self.settings.qos) for topic in self.settings.topics])
        if rc != mqtt.MQTT_ERR_SUCCESS:
            log.error("subscribe failed: %s", mqtt.error_string(rc))
        self._subscribe_mid = mid

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        for topic, reason in zip(self.settings.topics, reasons):
            if reason.is_failure:
                log.error("broker refused the subscription to %r: %s", topic, reason)
        if mid == self._subscribe_mid:
            self._subscribed = True

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._subscribed = False
        log.debug("disconnected from %s: %s", self.address, reason)  # the network loop logs the loss

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # An exception here would escape paho's loop and take the connection down: catch all.
        try:
            self._ingest(msg)
        except Exception:
            log.exception("MQTT message (mid %d) could not be handed to the store", msg.mid)

    # -- ingest ------------------------------------------------------------------------------
    def _ingest(self, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        self.received += 1
        self.last_message_at = now
        if msg.dup:
            self.redelivered += 1
        item = self._parse(msg, now)
        if isinstance(item, Rejected):
            self.rejected += 1
            batch = WriteBatch(rejected=[item], source_type="mqtt")
        else:
            bounded = FLAG_BOUNDED in item.flags.split()
            batch = WriteBatch(records=[item], source_type="mqtt", counters={"fields.bounded": 1} if bounded else {})
        if msg.qos > 0:
            loop = self._loop
            assert loop is not None
            batch.on_commit = functools.partial(self._committed, loop, loop.generation, msg.mid, msg.qos)
        self.submitted += 1  # before submit: the commit may complete before submit returns
        try:
            future = self.writer.submit(batch, wait_for_room=False)
        except WriterStopped:
            self.submitted -= 1
            # Not acked: the broker redelivers it to the next run.
            self.submit_failures += 1
            log.error("store writer has stopped; MQTT message (mid %d) left to the broker", msg.mid)
            return
        future.add_done_callback(self._write_done)

    def _parse(self, msg: mqtt.MQTTMessage, now: float) -> Any:
        try:
            return parse_message(msg.topic, msg.payload, self.settings, now)
        except Exception as exc:
            # A bug in parsing must not leave a message unacked for ever; keep it as rejected.
            log.exception("parsing an MQTT message failed")
            topic = msg.topic  # the broker has validated it as UTF-8
            return Rejected(
                input_id=mqtt_record_id(topic, msg.payload),
                source=f"mqtt:{topic}",
                reason="internal error",
                detail=repr(exc)[:500],
                size=len(msg.payload),
                sample=bytes(msg.payload[:SAMPLE_BYTES]),
                received_at=now,
            )

    def _committed(self, loop: NetworkLoop, generation: int, mid: int, qos: int, result: BatchResult) -> None:
        """Writer thread, after the commit: hand the ack to the network thread (see connection.py).
        The loop and generation it was received on travel along: packet ids are per connection."""
        loop.call_soon(functools.partial(self._ack, loop, generation, mid, qos))

    def _ack(self, loop: NetworkLoop, generation: int, mid: int, qos: int) -> None:
        client = self._client
        if loop is not self._loop or generation != loop.generation or client is None or not client.is_connected():
            self.stale_acks += 1
            return
        client.ack(mid, qos)
        self.acked += 1

    def _write_done(self, future: Future) -> None:
        """After the commit (or the failure) of one message."""
        exc = future.exception()
        with self._done_lock:
            self.finished += 1
            if exc is not None:
                self.write_failures += 1
        if exc is not None:
            log.error("storing an MQTT message failed; it stays unacked until the next connection: %s", exc)
        loop = self._loop
        if loop is not None and self.uncommitted >= self.max_uncommitted - 1:
            loop.wake()  # reading was paused at the bound; resume
