"""Helpers for the upstream tests: a subscriber that records what the broker delivers, a TCP proxy
that can swallow the broker's replies or cut the link, test certificates, and a small JSON Schema
validator for the keywords result.schema.json uses (jsonschema is not a dependency of edged)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

# -- JSON Schema (draft 2020-12), the subset result.schema.json uses -----------------------------

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
KNOWN_KEYWORDS = {
    "$schema", "$id", "$defs", "$ref", "title", "description", "type", "properties", "required",
    "additionalProperties", "items", "enum", "const", "oneOf", "anyOf", "minimum", "maximum",
    "minLength", "maxLength", "pattern",
}


def schema_errors(instance: Any, schema: dict, root: dict | None = None, where: str = "$") -> list[str]:
    """Every way ``instance`` breaks ``schema``; [] when it is valid. Unknown keywords are an error
    (of the schema), so the validator never silently ignores a rule the schema relies on."""
    root = schema if root is None else root
    unknown = set(schema) - KNOWN_KEYWORDS
    if unknown:
        return [f"{where}: schema uses keywords this validator does not know: {sorted(unknown)}"]
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        errors = schema_errors(instance, target, root, where)
        if errors:
            return errors
    errors: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](instance) for t in types):
            return [f"{where}: {instance!r:.60} is not of type {types}"]
    if "const" in schema and (instance != schema["const"] or type(instance) is not type(schema["const"])):
        errors.append(f"{where}: {instance!r:.60} is not {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{where}: {instance!r:.60} is not one of {schema['enum']}")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append(f"{where}: {instance} < {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            errors.append(f"{where}: {instance} > {schema['maximum']}")
    if isinstance(instance, str):
        if "minLength" in schema and len(instance) < schema["minLength"]:
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            errors.append(f"{where}: {instance!r:.60} does not match {schema['pattern']}")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in instance:
                errors.append(f"{where}: missing {key!r}")
        for key, value in instance.items():
            if key in props:
                errors += schema_errors(value, props[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: unexpected key {key!r}")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            errors += schema_errors(item, schema["items"], root, f"{where}[{i}]")
    if "oneOf" in schema:
        results = [schema_errors(instance, sub, root, where) for sub in schema["oneOf"]]
        matched = sum(not r for r in results)
        if matched != 1:
            detail = "; ".join(e for r in results for e in r[:3])
            errors.append(f"{where}: matches {matched} of oneOf, not exactly 1 ({detail})")
    if "anyOf" in schema:
        results = [schema_errors(instance, sub, root, where) for sub in schema["anyOf"]]
        if all(results):
            errors.append(f"{where}: matches none of anyOf")
    return errors


def load_schema() -> dict:
    from edged.publish.outbox import SCHEMA_PATH

    return json.loads(SCHEMA_PATH.read_text())


# -- a subscriber ----------------------------------------------------------------------------------


class Subscriber:
    """Subscribes (QoS 1) on every connect and records each message. ``clean=False`` with a fixed
    client id makes the broker queue messages for it while it is away."""

    def __init__(self, host: str, port: int, topics: list[str], client_id: str | None = None, clean: bool = True):
        self.topics = topics
        self.messages: list[mqtt.MQTTMessage] = []
        self._ids: Counter = Counter()  # result_id -> times received, kept up to date on arrival
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.connects = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sub-{uuid.uuid4().hex[:8]}",
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.subscribed.clear()
        self.client.reconnect_delay_set(0.05, 0.5)
        # Asynchronous: the broker may be down now; paho's thread keeps trying.
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            return
        self.connects += 1
        # Always (also with a session present): a broker restarted from an older state may not
        # know the subscription any more.
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        # Cheap, so the consumer keeps up with a flush: a consumer that lags leaves messages in
        # the broker's socket buffers, which a killed broker loses although it acknowledged them.
        result_id = None
        if "/results/" in msg.topic:
            start = msg.payload.find(b'"result_id":"') + 13
            result_id = msg.payload[start : msg.payload.find(b'"', start)].decode()
        with self._lock:
            self.messages.append(msg)
            if result_id is not None:
                self._ids[result_id] += 1

    def on(self, topic_suffix: str) -> list[mqtt.MQTTMessage]:
        return [m for m in list(self.messages) if m.topic.endswith(topic_suffix)]

    def results(self) -> list[dict]:
        return [json.loads(m.payload) for m in list(self.messages) if "/results/" in m.topic]

    def result_ids(self) -> Counter:
        with self._lock:
            return Counter(self._ids)

    def unique(self) -> int:
        return len(self._ids)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- a TCP proxy -----------------------------------------------------------------------------------


class Proxy:
    """127.0.0.1:<port> -> 127.0.0.1:<target>. ``hold`` drops what the broker sends back (set it only
    while the link is quiet, between packets); ``cut()`` closes every connection without an MQTT
    DISCONNECT, as a dead link or a crashed box would; with ``refuse`` new connections are closed at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.hold = False
        self.refuse = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._pumps: list[threading.Thread] = []
        self._closed = False
        self.dropped_bytes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pumps = [threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True),
                     threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True)]
            with self._lock:
                self._socks += [client, upstream]
                self._pumps += pumps
            for pump in pumps:
                pump.start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_broker: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_broker and self.hold:
                    self.dropped_bytes += len(data)
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self, refuse: bool = False) -> None:
        self.refuse = refuse
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until the connections that their ends closed have passed on everything (an MQTT
        DISCONNECT still on its way would otherwise be cut, and the broker would send the will)."""
        with self._lock:
            pumps = list(self._pumps)
        for pump in pumps:
            pump.join(timeout)

    def close(self) -> None:
        self._closed = True
        self.cut(refuse=True)
        self._listener.close()


# -- certificates ------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    return cert, key


def make_cert(directory: Path, name: str, ca: tuple[Path, Path], server: bool) -> tuple[Path, Path]:
    """A certificate signed by ``ca``: for 127.0.0.1/localhost (server) or a client: (certificate, key)."""
    cert, key, csr, ext = (directory / f"{name}{s}" for s in (".pem", ".key", ".csr", ".ext"))
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={'127.0.0.1' if server else name}",
        cwd=directory,
    )
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid,issuer",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={'serverAuth' if server else 'clientAuth'}",
    ]
    if server:
        lines.append("subjectAltName=IP:127.0.0.1,DNS:localhost")
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext),
        cwd=directory,
    )
    return cert, key
