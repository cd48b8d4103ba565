"""Stable record ids: the same input always gets the same id, so re-reads and redeliveries dedupe.

- file lines: ``f:<file_key>:<byte offset>``; file_key names one file instance (see sources.files)
- MQTT messages: ``m:<hash of topic and payload>`` (a payload's own ``id`` replaces the payload)
- submitted incident reports: ``s:<id given by the submitter or a random one>``
"""

from __future__ import annotations

import hashlib
import uuid


def file_record_id(file_key: str, offset: int) -> str:
    return f"f:{file_key}:{offset}"


def mqtt_record_id(topic: str, payload: bytes, message_id: str | None = None) -> str:
    """Topic plus payload (which carries the machine's timestamp), or topic plus the sender's id."""
    h = hashlib.blake2b(digest_size=16)
    h.update(topic.encode("utf-8", "surrogateescape"))
    h.update(b"\0")
    if message_id is not None:
        h.update(b"id\0" + message_id.encode("utf-8", "surrogateescape"))
    else:
        h.update(payload)
    return "m:" + h.hexdigest()


def submitted_record_id(given: str | None = None) -> str:
    return "s:" + (given if given else uuid.uuid4().hex)
