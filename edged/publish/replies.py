"""The box's subscription to escalation replies, in a persistent session: a reply sent while the box
is down or offline is kept by the broker and arrives when it is back.

Like the ingest source (edged.sources.mqtt.source): its own connection under a fixed client id
(``[upstream] response_client_id``, default ``[upstream] client_id`` + ``-replies``) with
clean_session=False, a QoS 1 subscription to the response topic, and manual acks: a reply is
acknowledged only after the transaction that applied it (or counted it as rejected) committed, so a
crash between receiving and committing loses nothing. The publisher's own connection stays a clean
session (edged.publish.publisher explains why); the two are separate so that one design choice does
not force the other.

The broker keeps messages for a session only once it holds the subscription, so the publisher sends
nothing until this connection has subscribed once (``subscribed_once``): an escalation is never out
before the box can receive its answer. (A subscription the broker refuses opens the gate too, with an
error in the log: results must not wait for replies that cannot come.)
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Callable

import paho.mqtt.client as mqtt

from edged.config.settings import UpstreamSettings
from edged.publish.escalation import EscalationReplies
from edged.publish.outbox import response_topic
from edged.broker import ExponentialBackoff, NetworkLoop, make_client, parse_broker_url

log = logging.getLogger(__name__)


def response_client_id(settings: UpstreamSettings) -> str:
    return settings.response_client_id or f"{settings.client_id}-replies"


class ReplySubscriber:
    """Receives escalation replies and hands them to ``EscalationReplies``. ``start()`` once, ``stop()`` at the end."""

    name = "escalation-replies"

    def __init__(self, settings: UpstreamSettings, replies: EscalationReplies) -> None:
        if not settings.url:
            raise ValueError("[upstream] url is not set")
        self.settings = settings
        self.replies = replies
        self.topic = response_topic(settings)
        self.client_id = response_client_id(settings)
        self.address = parse_broker_url(settings.url)
        if settings.password is not None and self.address.username is None:
            raise ValueError("[upstream] password is set but [upstream] url names no user (mqtts://user@host)")
        self._client: mqtt.Client | None = None
        self._loop: NetworkLoop | None = None
        self._thread: threading.Thread | None = None
        self._subscribe_mid: int | None = None
        self._subscribed = False
        self.subscribed_once = threading.Event()
        self.on_subscribed: Callable[[], None] | None = None  # the publisher's gate opens
        self.received = 0
        self.acked = 0
        self.stale_acks = 0

    def start(self) -> None:
        s = self.settings
        client = make_client(s, client_id=self.client_id, clean_session=False, manual_ack=True, address=self.address)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        backoff = ExponentialBackoff.for_broker(s)
        self._loop = NetworkLoop(client, self.address, s.keepalive_s, backoff, log)
        self._thread = threading.Thread(target=self._loop.run, name="escalation-replies", daemon=True)
        log.info("escalation replies: broker %s, client id %s, topic %s (persistent session)",
                 self.address, self.client_id, self.topic)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly; replies not yet acknowledged stay with the broker for the next start."""
        if self._loop is not None:
            self._loop.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def subscribed(self) -> bool:
        return self._subscribed and self.is_alive()

    # -- paho callbacks (network thread) -----------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("upstream broker %s refused the replies connection: %s", self.address, reason)
            return
        log.info("escalation replies connected (session present: %s)", flags.session_present)
        # Also with a session present: a broker that lost its state would leave us subscribed to nothing.
        self._subscribed = False
        rc, self._subscribe_mid = client.subscribe(self.topic, qos=1)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            log.error("subscribing to %s failed: %s", self.topic, mqtt.error_string(rc))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        if mid != self._subscribe_mid:
            return
        if any(r.is_failure for r in reasons):
            # Replies cannot arrive (an ACL?); holding every result back would not make them.
            log.error("the broker refused the subscription to %s (%s): escalations go out, their replies cannot"
                      " come back", self.topic, reasons)
        else:
            self._subscribed = True
        if not self.subscribed_once.is_set():
            self.subscribed_once.set()
            if self.on_subscribed is not None:
                self.on_subscribed()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._subscribed = False

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        loop = self._loop
        assert loop is not None
        ack = functools.partial(loop.call_soon, functools.partial(self._ack, loop.generation, msg.mid, msg.qos))
        try:
            self.replies.handle(msg.payload, on_committed=ack if msg.qos > 0 else None)
        except Exception:  # an exception would escape paho's loop and drop the connection
            log.exception("handling an escalation reply failed")

    def _ack(self, generation: int, mid: int, qos: int) -> None:
        """Network thread, after the commit. Packet ids are per connection: an ack for an earlier
        connection is dropped and the broker redelivers that reply (applied once: a duplicate)."""
        client, loop = self._client, self._loop
        if client is None or loop is None or generation != loop.generation or not client.is_connected():
            self.stale_acks += 1
            return
        client.ack(mid, qos)
        self.acked += 1
