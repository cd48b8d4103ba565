"""Turning one MQTT message into an inbox record, or into a rejection with its reason. No network here.

A payload is either a JSON object (first non-space byte ``{``) with ``text`` or ``message`` and optional
``machine``, ``ts``, ``kind`` and ``id``, or plain text. A JSON object's header keys (``level``,
``component``, ``ts``/``time``/``timestamp``, ``host``, ``pid`` and the aliases of the ``json`` log
format) are kept in the record's origin under ``header``: the analysis uses them as the line's header
fields, as it does for a JSON line in a file. Plain text that is not valid UTF-8 is still
data: it is stored with the bad bytes replaced and flagged. Only inputs that cannot be a record at all
(empty, binary, broken JSON, a kind we do not know) are rejected.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from paho.mqtt.client import topic_matches_sub

from edged.config.settings import MqttSettings
from edged.ids import mqtt_record_id
from edged.logformats import JsonFormat
from edged.priority import INCIDENT, ROUTINE
from edged.store.limits import MAX_GIVEN_ID_CHARS, bound_record, bound_rejected
from edged.store.records import FLAG_BOUNDED, FLAG_INVALID_UTF8, FLAG_TRUNCATED, KINDS, SAMPLE_BYTES, NewRecord, Rejected

INCIDENT_PRIORITY = INCIDENT
LOG_PRIORITY = ROUTINE

# Looking at the start is enough to tell text from binary, and keeps a 100 MB blob cheap.
_SNIFF_BYTES = 4096
_BINARY_SHARE = 0.3
# Control characters other than tab/newline/CR/FF, plus bytes that are not UTF-8 (surrogateescape).
_NON_TEXT = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\udc80-\udcff]")
_JSON_START = (ord("{"), ord("["))
_WHITESPACE = b" \t\r\n"
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_TS_CHARS = 64
_MAX_HEADER_VALUE_CHARS = 128  # a level, component or time is short; the origin stays within its limit
ORIGIN_HEADER = "header"  # the origin key holding the header fields a JSON payload gave


class _Reject(Exception):
    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class _Fields:
    """What a payload says about itself; None where it says nothing."""

    __slots__ = ("text", "machine", "kind", "message_id", "ts", "header", "flags")

    def __init__(self, text: str) -> None:
        self.text = text
        self.machine: str | None = None
        self.kind: str | None = None
        self.message_id: str | None = None
        self.ts: Any = None
        self.header: dict[str, str] | None = None
        self.flags: list[str] = []


def parse_message(topic: str, payload: bytes, settings: MqttSettings, received_at: float) -> NewRecord | Rejected:
    """The record for one message, or why there is none. Never raises for any payload.

    The record's fields are within edged.store.limits; ``FLAG_BOUNDED`` says one had to be cut."""
    payload = bytes(payload)
    try:
        fields = _read_payload(payload)
        text = fields.text.rstrip("\r\n")
        if not text.strip():
            raise _Reject("empty text")
    except _Reject as rej:
        return bound_rejected(Rejected(
            input_id=mqtt_record_id(topic, payload),
            source=f"mqtt:{topic}",
            reason=rej.reason,
            detail=rej.detail,
            size=len(payload),
            sample=payload[:SAMPLE_BYTES],
            received_at=received_at,
        ))

    flags = fields.flags
    text, truncated = _truncate(text, settings.max_payload_bytes)
    if truncated:
        flags.append(FLAG_TRUNCATED)
    machine = fields.machine or _machine_from_topic(topic, settings.machine_pattern)
    kind = fields.kind
    if kind is None:
        kind = "incident" if any(topic_matches_sub(f, topic) for f in settings.incident_topics) else "log"
    origin: dict[str, Any] = {"topic": topic}
    if fields.ts is not None:
        origin["ts"] = fields.ts
    if fields.header:
        origin[ORIGIN_HEADER] = fields.header
    record, bounded = bound_record(NewRecord(
        record_id=mqtt_record_id(topic, payload, fields.message_id),
        source=f"mqtt:{topic}",
        machine=machine,
        kind=kind,
        text=text,
        flags=" ".join(flags),
        origin=_SURROGATE.sub("\ufffd", json.dumps(origin, ensure_ascii=False, separators=(",", ":"))),
        received_at=received_at,
        priority=INCIDENT_PRIORITY if kind == "incident" else LOG_PRIORITY,  # alerts: raised by the store
    ))
    if bounded:
        record = record._replace(flags=" ".join(flags + [FLAG_BOUNDED]))
    return record


def _read_payload(payload: bytes) -> _Fields:
    if not payload:
        raise _Reject("empty payload")
    if _looks_binary(payload):
        raise _Reject("binary payload")
    stripped = payload.lstrip(_WHITESPACE)
    if stripped and stripped[0] in _JSON_START:
        return _read_json(payload)
    try:
        return _Fields(payload.decode("utf-8"))
    except UnicodeDecodeError:
        fields = _Fields(payload.decode("utf-8", errors="replace"))
        fields.flags.append(FLAG_INVALID_UTF8)
        return fields


def _read_json(payload: bytes) -> _Fields:
    try:
        doc = json.loads(payload)
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for JSON that is not UTF-8
        raise _Reject("malformed JSON", str(exc)) from None
    except RecursionError:  # nested deeper than the interpreter's stack allows: not a log message
        raise _Reject("malformed JSON", "nested too deeply") from None
    if not isinstance(doc, dict):
        raise _Reject("JSON payload is not an object", f"got a JSON {type(doc).__name__}")
    text = doc.get("text")
    if not isinstance(text, str):
        text = doc.get("message")
    if not isinstance(text, str):
        raise _Reject("JSON object has no 'text' or 'message' string")
    fields = _Fields(text)
    if _SURROGATE.search(text):
        # JSON escapes can encode lone surrogates, which SQLite cannot store.
        fields.text = _SURROGATE.sub("\ufffd", text)
        fields.flags.append(FLAG_INVALID_UTF8)

    machine = doc.get("machine")
    if machine is not None:
        if isinstance(machine, bool) or not isinstance(machine, (str, int)):
            raise _Reject("invalid machine", f"'machine' must be a string, got {machine!r:.100}")
        fields.machine = _SURROGATE.sub("\ufffd", str(machine)) or None
    kind = doc.get("kind")
    if kind is not None:
        if kind not in KINDS:
            raise _Reject("unknown kind", f"'kind' must be one of {', '.join(KINDS)}, got {kind!r:.100}")
        fields.kind = kind
    message_id = doc.get("id")
    if message_id is not None:
        if isinstance(message_id, bool) or not isinstance(message_id, (str, int)):
            raise _Reject("invalid id", f"'id' must be a string or an integer, got {message_id!r:.100}")
        message_id = str(message_id)
        if len(message_id) > MAX_GIVEN_ID_CHARS:
            raise _Reject("invalid id", f"'id' is longer than {MAX_GIVEN_ID_CHARS} characters")
        # An empty id names nothing: treating it as an id would make every such message one record.
        fields.message_id = message_id if message_id.strip() else None
    ts = doc.get("ts")
    if isinstance(ts, str):
        fields.ts = ts[:_MAX_TS_CHARS]
    elif isinstance(ts, int) and not isinstance(ts, bool) or isinstance(ts, float) and math.isfinite(ts):
        fields.ts = ts
    header = {k: _SURROGATE.sub("\ufffd", v[:_MAX_HEADER_VALUE_CHARS]) for k, v in JsonFormat.header_fields(doc).items() if v}
    if header:
        fields.header = {"format": "json", **header}
    return fields


def _looks_binary(payload: bytes) -> bool:
    if b"\0" in payload:
        return True
    sample = payload[:_SNIFF_BYTES].decode("utf-8", errors="surrogateescape")
    return len(_NON_TEXT.findall(sample)) > _BINARY_SHARE * len(sample)


def _truncate(text: str, max_bytes: int) -> tuple[str, bool]:
    # A character is at most 4 UTF-8 bytes, so short texts need no encoding at all.
    if len(text) * 4 <= max_bytes:
        return text, False
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text, False
    # "ignore" drops a multi-byte character cut in half at the end.
    return encoded[:max_bytes].decode("utf-8", errors="ignore"), True


def _machine_from_topic(topic: str, pattern: str) -> str | None:
    match = re.search(pattern, topic)
    if match is None:
        return None
    return match.groupdict().get("machine") or None
