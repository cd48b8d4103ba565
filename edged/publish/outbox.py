"""Building outbox messages: the message each result (or digest) will be published as.

The rows are stored by ``edged.store.outbox`` (the outbox table's owner), by the analyzer in the same
transaction as the results they carry, so a result is never stored without its message, nor
published without being stored. The payload is documented by ``result.schema.json`` beside this
file; ``published_at`` is added when the message is sent.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Mapping

from edged.config.settings import UpstreamSettings
from edged.store.inbox import RecordFields, ResultRow, StoredRecord
from edged.store.outbox import OutboxRow, insert_rows, result_id_for

__all__ = [
    "MAX_TEXT_CHARS", "SCHEMA_PATH", "SCHEMA_VERSION", "OutboxBuilder", "OutboxRow", "escalation_topic",
    "insert_rows", "response_topic", "result_id_for", "status_topic", "topic_for", "with_published_at",
]

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("result.schema.json")  # JSON Schema of the published message
MAX_TEXT_CHARS = 4000  # the record's text travels with its result, up to this much


def topic_for(settings: UpstreamSettings, kind: str) -> str:
    return settings.topic.format(prefix=settings.prefix, site=settings.site, node=settings.node, kind=kind)


def escalation_topic(settings: UpstreamSettings) -> str:
    return settings.escalation_topic.format(prefix=settings.prefix, site=settings.site, node=settings.node)


def response_topic(settings: UpstreamSettings) -> str:
    return settings.response_topic.format(prefix=settings.prefix, site=settings.site, node=settings.node)


def status_topic(settings: UpstreamSettings) -> str:
    return f"{settings.prefix}/{settings.site}/{settings.node}/status"


class OutboxBuilder:
    """Turns results and digests into outbox rows for one node's upstream settings."""

    def __init__(self, settings: UpstreamSettings) -> None:
        self.settings = settings

    def _row(self, result_id: str, record_id: str | None, kind: str, source: str | None, payload: dict) -> OutboxRow:
        body = {"schema": SCHEMA_VERSION, "result_id": result_id, "node": self.settings.node, "site": self.settings.site}
        body.update(payload)
        return OutboxRow(
            result_id, record_id, kind, source, topic_for(self.settings, kind),
            json.dumps(body, ensure_ascii=False, separators=(",", ":")), time.time(),
        )

    def for_result(self, result: ResultRow, record: RecordFields | Mapping[str, Any], refined: bool = False) -> OutboxRow:
        """``record`` is the result's record (``Claimed``, ``StoredRecord``; a mapping of the same
        fields is accepted too)."""
        if isinstance(record, Mapping):
            record = StoredRecord.from_mapping(record)
        result_id = result_id_for(result.record_id, result.model_sha256, result.prompt_version, refined)
        payload = {
            "record_id": result.record_id,
            "kind": record.kind,
            "machine": record.machine,
            "source": record.source,
            "text": record.text[:MAX_TEXT_CHARS],
            "flags": record.flags.split() if record.flags else [],
            "template_id": result.template_id,
            "header": result.header,
            "received_at": record.received_at,
            "analyzed_at": result.analyzed_at,
            "label": result.label,
            "severity": result.severity,
            "confidence": result.confidence,
            "needs_review": result.needs_review,
            "fields": result.fields,
            "fields_source": result.fields_source,
            "summary": result.summary,
            "review_reason": result.review_reason,
            "path": result.path,
            "refined": refined,
            "classified_by": result.classified_by,
            "triage_version": result.triage_version,
            "model": {"name": result.model, "sha256": result.model_sha256, "backend": result.backend},
            "prompt_version": result.prompt_version,
            "latency_ms": result.latency_ms,
        }
        return self._row(result_id, result.record_id, record.kind, record.source, payload)

    def for_escalation(self, result: ResultRow, record: RecordFields | Mapping[str, Any]) -> OutboxRow:
        """The escalation of a result flagged for review: the result's message plus ``correlation_id``
        (its result_id, which a reply quotes) and ``respond_to``, on the escalation topic."""
        row = self.for_result(result, record)
        body = json.loads(row.payload)
        body["result_id"] = "esc:" + row.result_id.split(":", 1)[1]
        body["correlation_id"] = row.result_id
        body["respond_to"] = response_topic(self.settings)
        return row._replace(
            result_id=body["result_id"], kind="escalation", topic=escalation_topic(self.settings),
            payload=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        )

    def for_digest(self, source: str, window_start: float, window_end: float, records: int, summary: str, model: str,
                   review_reason: str | None = None) -> OutboxRow:
        h = hashlib.blake2b(f"{source}\0{window_end!r}".encode(), digest_size=12).hexdigest()
        payload = {
            "record_id": None,
            "kind": "digest",
            "source": source,
            "window_start": window_start,
            "window_end": window_end,
            "records": records,
            "summary": summary,
            "review_reason": review_reason,
            "analyzed_at": time.time(),
            "model": {"name": model},
        }
        return self._row(f"dig:{h}", None, "digest", source, payload)


def with_published_at(payload: str, published_at: float) -> str:
    """The stored payload with ``published_at`` added as its last key; every other byte unchanged, so
    a consumer comparing two copies of one result_id sees the same content."""
    if not payload.endswith("}") or payload.rstrip() == "{}":
        raise ValueError("outbox payload is not a non-empty JSON object")
    return f'{payload[:-1]},"published_at":{published_at!r}}}'
