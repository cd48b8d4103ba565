"""parse_message: what a single MQTT message becomes, without any network."""

from __future__ import annotations

import json

import pytest

from edged.config.settings import MqttSettings
from edged.ids import mqtt_record_id
from edged.sources.mqtt.payload import parse_message
from edged.store.records import FLAG_INVALID_UTF8, FLAG_TRUNCATED, SAMPLE_BYTES, NewRecord, Rejected

SETTINGS = MqttSettings(url="mqtt://127.0.0.1", client_id="test", max_payload_bytes=256)
LOGS = "factory/press-1/logs"
INCIDENTS = "factory/press-1/incidents"
NOW = 1_700_000_000.0


def record(topic: str, payload: bytes, settings: MqttSettings = SETTINGS) -> NewRecord:
    result = parse_message(topic, payload, settings, NOW)
    assert isinstance(result, NewRecord), result
    return result


def rejected(topic: str, payload: bytes) -> Rejected:
    result = parse_message(topic, payload, SETTINGS, NOW)
    assert isinstance(result, Rejected), result
    return result


def test_plain_text_log() -> None:
    rec = record(LOGS, b"spindle temperature 81 C\n")
    assert rec.text == "spindle temperature 81 C"
    assert rec.machine == "press-1"
    assert rec.kind == "log"
    assert rec.priority == 0
    assert rec.flags == ""
    assert rec.source == f"mqtt:{LOGS}"
    assert rec.received_at == NOW
    assert json.loads(rec.origin) == {"topic": LOGS}
    assert rec.record_id == mqtt_record_id(LOGS, b"spindle temperature 81 C\n")


@pytest.mark.parametrize("key", ["text", "message"])
def test_json_text_or_message(key: str) -> None:
    rec = record(LOGS, json.dumps({key: "door opened", "ts": "2024-05-01T10:00:00Z"}).encode())
    assert rec.text == "door opened"
    assert json.loads(rec.origin) == {
        "topic": LOGS, "ts": "2024-05-01T10:00:00Z", "header": {"format": "json", "time": "2024-05-01T10:00:00Z"},
    }


def test_json_header_keys_are_kept_with_the_record() -> None:
    rec = record(LOGS, json.dumps({
        "text": "overtemp 91C", "level": "ERROR", "component": "spindle", "timestamp": 1700000000.5, "pid": 41,
    }).encode())
    assert rec.text == "overtemp 91C"
    assert json.loads(rec.origin)["header"] == {
        "format": "json", "time": "1700000000.5", "level": "ERROR", "component": "spindle", "pid": "41",
    }


def test_json_header_values_are_bounded_and_empty_ones_dropped() -> None:
    rec = record(LOGS, json.dumps({"text": "x", "level": "", "component": "c" * 5000, "time": True}).encode())
    header = json.loads(rec.origin)["header"]
    assert header == {"format": "json", "component": "c" * 128}  # a boolean is no time, an empty level no level
    assert "header" not in json.loads(record(LOGS, b'{"text": "x", "machine": "m"}').origin)


def test_json_text_wins_over_message() -> None:
    assert record(LOGS, b'{"text": "a", "message": "b"}').text == "a"


def test_leading_whitespace_still_json() -> None:
    assert record(LOGS, b'  \n {"text": "x"}').text == "x"


def test_machine_from_json_beats_topic() -> None:
    assert record(LOGS, b'{"text": "x", "machine": "cnc-9"}').machine == "cnc-9"
    assert record(LOGS, b'{"text": "x"}').machine == "press-1"
    assert record(LOGS, b'{"text": "x", "machine": 17}').machine == "17"


def test_no_machine_when_topic_does_not_match() -> None:
    assert record("plain", b"hello").machine is None


def test_kind_from_topic() -> None:
    rec = record(INCIDENTS, b"hydraulic leak at station 3")
    assert rec.kind == "incident"
    assert rec.priority == 10
    assert record(LOGS, b"x").kind == "log"
    assert record("other/topic", b"x").kind == "log"


def test_kind_from_json_beats_topic() -> None:
    rec = record(LOGS, b'{"text": "x", "kind": "incident"}')
    assert (rec.kind, rec.priority) == ("incident", 10)
    rec = record(INCIDENTS, b'{"text": "x", "kind": "log"}')
    assert (rec.kind, rec.priority) == ("log", 0)


def test_unknown_kind_rejected() -> None:
    rej = rejected(LOGS, b'{"text": "x", "kind": "alarm"}')
    assert rej.reason == "unknown kind"
    assert "alarm" in rej.detail


def test_same_payload_same_record_id() -> None:
    payload = b'{"text": "x", "ts": 1}'
    assert record(LOGS, payload).record_id == record(LOGS, payload).record_id
    assert record(LOGS, payload).record_id != record(INCIDENTS, payload).record_id
    assert record(LOGS, payload).record_id != record(LOGS, b'{"text": "x", "ts": 2}').record_id


def test_id_makes_record_id_stable_across_payloads() -> None:
    a = record(LOGS, b'{"id": "evt-42", "text": "first", "ts": 1}')
    b = record(LOGS, b'{"id": "evt-42", "text": "resent", "ts": 2}')
    assert a.record_id == b.record_id == mqtt_record_id(LOGS, b"", "evt-42")
    assert record(LOGS, b'{"id": 42, "text": "x"}').record_id == mqtt_record_id(LOGS, b"", "42")
    assert record(LOGS, b'{"id": 43, "text": "x"}').record_id != a.record_id


@pytest.mark.parametrize("payload", [b'{"text": "x"', b"{not json}", b"[1, 2", b'{"text": "\xff"}'])
def test_malformed_json(payload: bytes) -> None:
    rej = rejected(LOGS, payload)
    assert rej.reason == "malformed JSON"
    assert rej.detail
    assert rej.sample == payload
    assert rej.size == len(payload)
    assert rej.source == f"mqtt:{LOGS}"
    assert rej.input_id == rejected(LOGS, payload).input_id == mqtt_record_id(LOGS, payload)


@pytest.mark.parametrize("payload", [b"[1, 2]", b'["text"]'])
def test_json_array_rejected(payload: bytes) -> None:
    assert rejected(LOGS, payload).reason == "JSON payload is not an object"


@pytest.mark.parametrize("payload", [b"{}", b'{"text": 5}', b'{"message": null}', b'{"msg": "x"}'])
def test_json_without_text_rejected(payload: bytes) -> None:
    assert rejected(LOGS, payload).reason == "JSON object has no 'text' or 'message' string"


def test_json_with_bad_id_or_machine_rejected() -> None:
    assert rejected(LOGS, b'{"text": "x", "id": [1]}').reason == "invalid id"
    assert rejected(LOGS, b'{"text": "x", "machine": {"a": 1}}').reason == "invalid machine"


def test_json_scalars_are_plain_text() -> None:
    # Only objects and arrays are taken for JSON; a bare number or string is a log line.
    assert record(LOGS, b"42").text == "42"
    assert record(LOGS, b'"quoted"').text == '"quoted"'


def test_empty_payload() -> None:
    rej = rejected(LOGS, b"")
    assert (rej.reason, rej.size, rej.sample) == ("empty payload", 0, b"")


@pytest.mark.parametrize("payload", [b"\n", b"  \r\n", b'{"text": " \\n"}'])
def test_empty_text(payload: bytes) -> None:
    assert rejected(LOGS, payload).reason == "empty text"


@pytest.mark.parametrize(
    "payload",
    [b"abc\x00def", bytes(range(1, 32)) * 10, bytes(range(128, 256)) * 4, b"\x89PNG\r\n\x1a\n" + bytes(range(200))],
)
def test_binary_rejected(payload: bytes) -> None:
    rej = rejected(LOGS, payload)
    assert rej.reason == "binary payload"
    assert rej.sample == payload[:SAMPLE_BYTES]


def test_binary_sample_is_capped() -> None:
    payload = b"\x00" * (SAMPLE_BYTES * 3)
    rej = rejected(LOGS, payload)
    assert rej.size == len(payload)
    assert rej.sample == payload[:SAMPLE_BYTES]


def test_invalid_utf8_is_data_and_flagged() -> None:
    rec = record(LOGS, "Temperatur überschritten".encode("latin-1"))
    assert rec.text == "Temperatur \ufffdberschritten"
    assert rec.flags == FLAG_INVALID_UTF8


def test_valid_utf8_not_flagged() -> None:
    assert record(LOGS, "Überdruck ⚠".encode()).flags == ""


def test_lone_surrogate_escape_in_json_is_replaced() -> None:
    rec = record(LOGS, b'{"text": "bad \\ud800 char"}')
    assert rec.text == "bad \ufffd char"
    assert rec.flags == FLAG_INVALID_UTF8
    rec.text.encode("utf-8")  # storable


def test_truncation() -> None:
    rec = record(LOGS, b"x" * 1000)
    assert rec.text == "x" * 256
    assert rec.flags == FLAG_TRUNCATED


def test_truncation_counts_utf8_bytes_and_keeps_whole_characters() -> None:
    rec = record(LOGS, ("é" * 200).encode())  # 400 bytes
    assert rec.text == "é" * 128
    assert rec.flags == FLAG_TRUNCATED
    assert record(LOGS, ("é" * 128).encode()).flags == ""


def test_truncated_and_invalid_utf8_flags_combine() -> None:
    rec = record(LOGS, b"\xff" + b"y" * 1000)
    assert set(rec.flags.split()) == {FLAG_INVALID_UTF8, FLAG_TRUNCATED}


def test_json_text_truncated() -> None:
    rec = record(LOGS, json.dumps({"text": "z" * 300}).encode())
    assert (len(rec.text), rec.flags) == (256, FLAG_TRUNCATED)


def test_trailing_newlines_stripped_not_inner_ones() -> None:
    assert record(LOGS, b"line 1\nline 2\r\n\n").text == "line 1\nline 2"


def test_incident_filters_from_settings() -> None:
    settings = MqttSettings(
        url="mqtt://h", client_id="t", incident_topics=["alarms/#"], machine_pattern=r"^alarms/(?P<machine>[^/]+)"
    )
    rec = record("alarms/robot-2/arm", b"collision", settings)
    assert (rec.kind, rec.machine) == ("incident", "robot-2")
    assert record(INCIDENTS, b"x", settings).kind == "log"
