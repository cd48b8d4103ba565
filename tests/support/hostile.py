"""Hostile MQTT payloads generated from a seed: what a broken or malicious plant network sends."""

from __future__ import annotations

import json
import random


def _deep(rng: random.Random) -> bytes:
    depth = rng.choice([100, 999, 1000, 5000, 100_000])
    return rng.choice([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth, b"[" * depth])


def hostile_payloads(seed: int, n: int) -> list[tuple[str, bytes]]:
    """``n`` (topic, payload) pairs; none of them is a valid record with a text starting 'valid '."""
    rng = random.Random(seed)
    topics = ["factory/press-1/logs", "factory/press-1/incidents", "factory/" + "t" * 5000 + "/logs",
              "factory/\u00e9\u00e8/logs", "factory/a b/logs", "factory/\u202e/logs"]
    out = []
    for i in range(n):
        topic = rng.choice(topics)
        kind = rng.randrange(14)
        if kind == 0:
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))
        elif kind == 1:
            payload = _deep(rng)
        elif kind == 2:  # an empty or blank id must not merge different texts
            payload = json.dumps({"id": rng.choice(["", " ", "\t"]), "text": f"empty-id {seed} {i}"}).encode()
        elif kind == 3:
            payload = json.dumps({"machine": "m" * rng.choice([200, 100_000, 1_000_000]), "text": f"big machine {i}"}).encode()
        elif kind == 4:
            payload = json.dumps({"text": f"nul \u0000 inside {i}", "machine": "a\u0000b"}).encode()
        elif kind == 5:
            payload = rng.choice([b"null", b"1", b"[]", b'"text"', b"{}", b'{"text": 5}', b'{"text": null}',
                                  b'{"text": ""}', b'{"text": "   "}', b'{"message": ["x"]}'])
        elif kind == 6:
            payload = json.dumps({"text": f"kind {i}", "kind": rng.choice(["alarm", 5, None, [], "LOG"])}).encode()
        elif kind == 7:
            payload = json.dumps({"text": f"id {i}", "id": rng.choice([[1], {"a": 1}, True, 1.5, "i" * 10_000])}).encode()
        elif kind == 8:
            payload = b'{"text": "lone surrogate \\ud800 ' + str(i).encode() + b'"}'
        elif kind == 9:
            payload = b"\xff\xfe invalid utf-8 " + str(i).encode()
        elif kind == 10:
            payload = b"{" + bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 300)))
        elif kind == 11:
            payload = json.dumps({"text": f"ts {i}", "ts": rng.choice([1e308, -1, "x" * 1000, [], {"a": 1}])}).encode()
        elif kind == 12:
            payload = ("x" * rng.choice([70_000, 300_000])).encode()  # longer than max_payload_bytes
        else:
            payload = ("\u0007\u001b[31m control " + str(i)).encode()
        out.append((topic, payload))
    return out


def valid_messages(n: int) -> list[tuple[str, bytes]]:
    return [("factory/press-2/logs", json.dumps({"id": f"v{i}", "text": f"valid {i}", "machine": "press-2"}).encode())
            for i in range(n)]
