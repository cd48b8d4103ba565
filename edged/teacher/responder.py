"""The teacher's MQTT side: receive escalations, answer each once, publish the reply (QoS 1).

One connection with a persistent session (fixed ``[teacher] client_id``, clean_session=False) and
QoS 1 subscriptions to ``[teacher] topics``, so escalations queue at the broker while the teacher is
down. An escalation is acknowledged only after its reply was confirmed by the broker (PUBACK), or
after it was found unanswerable: a crash at any point means the escalation comes again, and the
answer store (edged.teacher.answers) makes the second reply the same as the first.

Two threads: the network thread (``NetworkLoop``) owns the paho client; the answering thread takes
escalations from a queue and asks the model, which may take seconds, without holding the network up.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from edged.analysis.tasks import CLASSIFY, InvalidAnswer, TaskSpec, parse_answer, request_for
from edged.backends.base import Backend, BackendError
from edged.config.settings import TeacherSettings
from edged.broker import ExponentialBackoff, NetworkLoop, make_client, parse_broker_url
from edged.teacher.answers import AnswerStore

log = logging.getLogger(__name__)

RETRY_S = 2.0  # first wait after a failed model call; doubles per attempt
FORGET_EVERY_S = 3600.0
KINDS = ("log", "incident")


class InvalidEscalation(ValueError):
    """An escalation the teacher cannot answer (not JSON, or a field missing or wrong)."""


@dataclass(frozen=True)
class Escalation:
    correlation_id: str
    respond_to: str
    text: str
    machine: str | None
    kind: str


def parse_escalation(payload: bytes) -> Escalation:
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidEscalation(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidEscalation("not a JSON object")
    for key in ("correlation_id", "respond_to", "text"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise InvalidEscalation(f"no {key}")
    respond_to = doc["respond_to"]
    if any(c in respond_to for c in "+#\0"):
        raise InvalidEscalation(f"respond_to {respond_to[:80]!r} is not a topic one can publish to")
    machine = doc.get("machine") if isinstance(doc.get("machine"), str) else None
    kind = doc.get("kind") if doc.get("kind") in KINDS else "log"
    return Escalation(doc["correlation_id"], respond_to, doc["text"], machine, kind)


class Answerer:
    """Classifies an escalated text with the teacher's model: the same task, taxonomy and schema as
    the boxes use (edged.analysis.tasks), without retrieved examples."""

    def __init__(self, backend: Backend, spec: TaskSpec, max_attempts: int) -> None:
        self.backend = backend
        self.spec = spec
        self.max_attempts = max_attempts

    def reply(self, esc: Escalation, stop: threading.Event | None = None) -> dict[str, Any]:
        """The reply document; raises BackendError or InvalidAnswer after max_attempts failures."""
        request = request_for(self.spec, esc.text, machine=esc.machine, kind=esc.kind)
        for attempt in range(1, self.max_attempts + 1):
            try:
                answer = parse_answer(self.spec, self.backend.complete(request), request.schema)
                break
            except (BackendError, InvalidAnswer) as exc:
                if attempt == self.max_attempts:
                    raise
                log.warning("teacher model failed on %s (attempt %d): %s", esc.correlation_id, attempt, exc)
                if stop is not None and stop.wait(RETRY_S * 2 ** (attempt - 1)):
                    raise
        reply = {"correlation_id": esc.correlation_id, "label": answer["label"], "model": self.backend.model_name}
        if isinstance(answer.get("severity"), int):
            reply["severity"] = answer["severity"]
        return reply


@dataclass
class _Incoming:
    generation: int
    mid: int
    qos: int
    payload: bytes


class Teacher:
    """``start()`` once, ``stop()`` at the end."""

    name = "teacher"

    def __init__(self, settings: TeacherSettings, answerer: Answerer, answers: AnswerStore) -> None:
        if not settings.url:
            raise ValueError("[teacher] url is not set (the broker the boxes escalate to)")
        self.settings = settings
        self.answerer = answerer
        self.answers = answers
        self.address = parse_broker_url(settings.url)
        if settings.password is not None and self.address.username is None:
            raise ValueError("[teacher] password is set but [teacher] url names no user (mqtts://user@host)")
        self._client: mqtt.Client | None = None
        self._loop: NetworkLoop | None = None
        self._net_thread: threading.Thread | None = None
        self._work_thread: threading.Thread | None = None
        self._queue: queue.SimpleQueue[_Incoming | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._replies: dict[int, _Incoming] = {}  # paho mid of a reply -> the escalation it answers
        self._subscribe_mid: int | None = None
        self.subscribed = threading.Event()
        self._next_forget = 0.0
        # Figures (logged at stop, and for tests).
        self.received = 0
        self.answered = 0  # replies made by the model
        self.repeated = 0  # replies sent again from the answer store
        self.invalid = 0  # escalations that could not be read
        self.failed = 0  # escalations the model could not answer
        self.acked = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        client = make_client(s, client_id=s.client_id, clean_session=False, manual_ack=True, address=self.address)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = lambda *a: self.subscribed.clear()
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._client = client
        backoff = ExponentialBackoff.for_broker(s)
        self._loop = NetworkLoop(client, self.address, s.keepalive_s, backoff, log)
        self._net_thread = threading.Thread(target=self._loop.run, name="teacher-net", daemon=True)
        self._work_thread = threading.Thread(target=self._work, name="teacher-answer", daemon=True)
        self._work_thread.start()
        self._net_thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Escalations not yet answered stay with the broker and come again at the next start."""
        self._stop.set()
        self._queue.put(None)
        if self._work_thread is not None:
            self._work_thread.join(timeout)
        if self._loop is not None:
            self._loop.stop()
        if self._net_thread is not None:
            self._net_thread.join(timeout)
        log.info(
            "teacher stopped: %d escalations received, %d answered by the model, %d answered again from the store,"
            " %d unreadable, %d unanswerable", self.received, self.answered, self.repeated, self.invalid, self.failed,
        )

    def is_alive(self) -> bool:
        return all(t is not None and t.is_alive() for t in (self._net_thread, self._work_thread))

    # -- network thread ----------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("broker %s refused the teacher's connection: %s", self.address, reason)
            return
        log.info("teacher connected to %s (session present: %s)", self.address, flags.session_present)
        self.subscribed.clear()
        _, self._subscribe_mid = client.subscribe([(topic, 1) for topic in self.settings.topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        for topic, reason in zip(self.settings.topics, reasons):
            if reason.is_failure:
                log.error("the broker refused the subscription to %r: %s", topic, reason)
        if mid == self._subscribe_mid:
            log.info("teacher subscribed to %s", ", ".join(self.settings.topics))
            self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        assert self._loop is not None
        self.received += 1
        self._queue.put(_Incoming(self._loop.generation, msg.mid, msg.qos, bytes(msg.payload)))

    def _publish(self, incoming: _Incoming, topic: str, reply: str) -> None:
        client = self._client
        assert client is not None
        info = client.publish(topic, reply, qos=1)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._replies[info.mid] = incoming  # acked on its PUBACK
        else:
            log.error("publishing the reply to %s failed: %s", topic, mqtt.error_string(info.rc))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        incoming = self._replies.pop(mid, None)
        if incoming is not None:
            self._ack(incoming)

    def _ack(self, incoming: _Incoming) -> None:
        client, loop = self._client, self._loop
        # Packet ids are per connection: an escalation of an earlier connection comes again (and is
        # answered again from the store).
        if client is None or loop is None or incoming.qos == 0 or incoming.generation != loop.generation:
            return
        if client.is_connected():
            client.ack(incoming.mid, incoming.qos)
            self.acked += 1

    # -- answering thread --------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            incoming = self._queue.get()
            if incoming is None:
                return
            try:
                self._answer(incoming)
            except Exception:  # one bad escalation must not end the teacher
                log.exception("answering an escalation failed")
            self._forget_if_due()

    def _answer(self, incoming: _Incoming) -> None:
        loop = self._loop
        assert loop is not None
        try:
            esc = parse_escalation(incoming.payload)
        except InvalidEscalation as exc:
            self.invalid += 1
            log.warning("escalation dropped: %s", exc)
            loop.call_soon(lambda: self._ack(incoming))
            return
        stored = self.answers.get(esc.correlation_id)
        if stored is not None:
            self.repeated += 1
            topic, reply = stored
        else:
            try:
                doc = self.answerer.reply(esc, self._stop)
            except (BackendError, InvalidAnswer) as exc:
                if self._stop.is_set():
                    return  # not acked: it comes again at the next start
                self.failed += 1
                log.error("escalation %s left unanswered: %s", esc.correlation_id, exc)
                loop.call_soon(lambda: self._ack(incoming))
                return
            topic, reply = esc.respond_to, json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
            self.answers.put(esc.correlation_id, topic, reply)
            self.answered += 1
            log.info("answered %s: %s", esc.correlation_id, doc["label"])
        loop.call_soon(lambda: self._publish(incoming, topic, reply))

    def _forget_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_forget:
            self._next_forget = now + FORGET_EVERY_S
            forgotten = self.answers.forget_older_than(self.settings.keep_answers_s)
            if forgotten:
                log.info("forgot %d answers older than %.0f s", forgotten, self.settings.keep_answers_s)
