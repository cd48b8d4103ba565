"""The upstream publisher against a real mosquitto and a real SQLite file.

What is checked: the payload matches result.schema.json; rows go out in id order and are marked sent
only when their PUBACK arrives; unacknowledged rows are sent again after a reconnect with the same
result_id; the retained status (birth, last will, clean offline); TLS with a CA (and a client
certificate) made here; sent rows expire. No timing thresholds: every wait polls for an outcome.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from edged.analysis.analyzer import Analyzer
from edged.backends.fake import FakeBackend
from edged.config.settings import AnalysisSettings, UpstreamSettings
from edged.publish.delivery import Delivered, expire_sent, mark_sent
from edged.publish.outbox import OutboxBuilder, insert_rows, status_topic, with_published_at
from edged.publish.publisher import Publisher
from edged.store.database import connect, open_database
from edged.store.inbox import ResultRow
from edged.store.records import NewRecord
from edged.store.status import collect_status
from edged.store.writer import StoreWriter, WriteBatch
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.upstream import Proxy, Subscriber, load_schema, make_ca, make_cert, schema_errors
from tests.support.wait import wait_for

DEADLINE_S = 30.0
RESULTS = "edged/plant-1/box-1/results/#"
STATUS = "edged/plant-1/box-1/status"


def upstream(url: str, **overrides) -> UpstreamSettings:
    values = dict(
        url=url, client_id="edged-test-up", site="plant-1", node="box-1",
        keepalive_s=5, reconnect_min_s=0.05, reconnect_max_s=0.5,
    )
    values.update(overrides)
    return UpstreamSettings(**values)


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = StoreWriter(open_database(path))
        self.writer.start()
        self.reader = connect(path)
        self.builder = OutboxBuilder(upstream("mqtt://127.0.0.1"))
        self.publishers: list[Publisher] = []
        self._next = 0

    def add_results(self, n: int, sources: tuple[str, ...] = ("file:/var/log/a.log", "mqtt:factory/b/logs")) -> None:
        """n results through OutboxBuilder, as the analyzer stores them (same transaction shape)."""
        rows = []
        for _ in range(n):
            i = self._next
            self._next += 1
            source = sources[i % len(sources)]
            result = ResultRow(
                record_id=f"rec:{i:06d}", template_id=1, label="normal", severity=0, confidence=0.9,
                fields={"value": i}, summary=None, needs_review=False, path="template_cache", model="fake",
                model_sha256=None, backend="fake", prompt_version="2", model_calls=0, latency_ms=None,
            )
            record = {"kind": "log", "source": source, "machine": "m", "text": f"line {i}", "flags": "", "received_at": 1.0}
            rows.append(self.builder.for_result(result, record))
        self.writer.call(lambda db: insert_rows(db, rows)).result()

    def publisher(self, settings: UpstreamSettings, start: bool = True) -> Publisher:
        p = Publisher(settings, self.writer, connect(self.path))
        self.publishers.append(p)
        if start:
            p.start()
        return p

    def q(self, sql: str, *params):
        return self.reader.execute(sql, params).fetchall()

    def one(self, sql: str, *params):
        return self.q(sql, *params)[0][0]

    def unsent(self) -> int:
        return self.one("SELECT count(*) FROM outbox WHERE sent_at IS NULL")

    def counter(self, name: str) -> int:
        rows = self.q("SELECT value FROM counters WHERE name = ?", name)
        return rows[0][0] if rows else 0

    def close(self) -> None:
        for p in self.publishers:
            p.stop()
        self.writer.stop()


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store(tmp_path / "edged.db")
    yield s
    s.close()


@pytest.fixture
def subscriber(mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto.host, mosquitto.port, [RESULTS, STATUS])
    wait_for(sub.subscribed.is_set, DEADLINE_S, what="subscriber subscribed")
    yield sub
    sub.close()


def without_published_at(payload: bytes) -> dict:
    doc = json.loads(payload)
    doc.pop("published_at")
    return doc


# -- the payload ---------------------------------------------------------------------------------


def test_outbox_rows_of_real_results_validate_against_the_schema(tmp_path):
    path = tmp_path / "edged.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    try:
        outbox = OutboxBuilder(upstream("mqtt://127.0.0.1"))
        analyzer = Analyzer(AnalysisSettings(batch_size=50), FakeBackend(), writer, connect(path), outbox)
        records = [
            NewRecord(f"t:{i}", "file:/var/log/cnc.log", "cnc-1", "log", f"spindle {i} temp {20 + i}.5 C", "", None, 1.0)
            for i in range(5)
        ]
        records.append(NewRecord("t:inc", "web", None, "incident", "coolant leak at press 3", "truncated", None, 2.0, 10))
        writer.submit(WriteBatch(records=records)).result()
        while analyzer.run_once():
            pass
        digest = outbox.for_digest("file:/var/log/cnc.log", 0.0, 60.0, 5, "all quiet", "fake")
        writer.call(lambda db: insert_rows(db, [digest])).result()
        payloads = [row[0] for row in connect(path).execute("SELECT payload FROM outbox ORDER BY id").fetchall()]
    finally:
        writer.stop()
    assert len(payloads) == 7
    schema = load_schema()
    kinds = set()
    for payload in payloads:
        sent = with_published_at(payload, 1234.5)
        doc = json.loads(sent)
        kinds.add(doc["kind"])
        assert schema_errors(doc, schema) == [], doc
        # published_at is appended; every other byte is as stored.
        assert sent.startswith(payload[:-1]) and doc["published_at"] == 1234.5
    assert kinds == {"log", "incident", "digest"}


def test_the_validator_rejects_what_the_schema_forbids():
    schema = load_schema()
    good = json.loads(with_published_at(OutboxBuilder(upstream("mqtt://h")).for_digest("s", 0.0, 1.0, 3, "ok", "m").payload, 5.0))
    assert schema_errors(good, schema) == []
    for broken in (
        {k: v for k, v in good.items() if k != "result_id"},
        {**good, "surprise": 1},
        {**good, "records": "three"},
        {**good, "kind": "log"},
        {k: v for k, v in good.items() if k != "published_at"},
    ):
        assert schema_errors(broken, schema), broken


def test_the_readme_example_payload_is_valid():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## From the machine to the central broker"):]
    example = section[section.index("```json") + len("```json"):]
    example = json.loads(example[: example.index("```")])
    assert schema_errors(example, load_schema()) == []


# -- delivery ------------------------------------------------------------------------------------


def test_rows_go_out_in_order_and_are_marked_sent_on_puback(store, mosquitto, subscriber):
    store.add_results(300)
    publisher = store.publisher(upstream(mosquitto.url, inflight=7))
    wait_for(lambda: store.unsent() == 0, DEADLINE_S, what="every row marked sent")
    wait_for(lambda: len(subscriber.results()) == 300, DEADLINE_S, what="every result at the subscriber")
    received = subscriber.results()
    stored = store.q("SELECT result_id, topic, payload, attempts, last_attempt_at FROM outbox ORDER BY id")
    assert [r["result_id"] for r in received] == [s[0] for s in stored]  # in id order, each once
    msgs = [m for m in subscriber.messages if "/results/" in m.topic]
    for msg, (result_id, topic, payload, attempts, last_attempt_at) in zip(msgs, stored):
        assert msg.topic == topic == "edged/plant-1/box-1/results/log"
        assert msg.qos == 1 and not msg.retain
        doc = json.loads(msg.payload)
        # The stored payload, byte for byte, with published_at appended.
        assert msg.payload.decode() == with_published_at(payload, doc["published_at"])
        assert attempts == 1 and last_attempt_at == doc["published_at"]
    wait_for(lambda: store.counter("publish.sent") == 300, DEADLINE_S, what="publish.sent counted")
    assert publisher.acked == publisher.published == publisher.marked == 300
    assert store.counter("publish.connects") == 1 and store.counter("publish.resent") == 0


def test_nothing_is_marked_sent_without_its_puback_and_it_is_sent_again_after_a_reconnect(store, mosquitto, subscriber):
    proxy = Proxy(mosquitto.port)
    try:
        # A long keepalive: while the replies are held, not even a PINGRESP gets through.
        publisher = store.publisher(upstream(proxy.url, inflight=10, birth=False, keepalive_s=60))
        wait_for(lambda: publisher.connected, DEADLINE_S, what="publisher connected")
        proxy.hold = True  # from now on the broker's PUBACKs never reach the publisher
        store.add_results(50)
        publisher.wake()
        # The broker has the first window of messages, but we never saw a PUBACK: nothing is sent.
        wait_for(lambda: len(subscriber.result_ids()) == 10, DEADLINE_S, what="the first window at the broker")
        wait_for(lambda: proxy.dropped_bytes >= 10 * 4, DEADLINE_S, what="the PUBACKs dropped")
        assert store.unsent() == 50
        assert publisher.unacked == 10 and publisher.acked == 0
        assert len(subscriber.result_ids()) == 10  # the window holds: nothing beyond it went out
        # The link dies; the publisher reconnects and sends the same 10 again, then the rest.
        proxy.hold = False
        proxy.cut()
        wait_for(lambda: store.unsent() == 0, DEADLINE_S, what="every row marked sent after the reconnect")
    finally:
        proxy.close()
    ids = subscriber.result_ids()
    stored = [r[0] for r in store.q("SELECT result_id FROM outbox ORDER BY id")]
    assert set(ids) == set(stored) and len(ids) == 50
    duplicates = {rid: n for rid, n in ids.items() if n > 1}
    assert set(duplicates) == set(stored[:10]) and set(duplicates.values()) == {2}
    # A duplicate is the same message (paho resends the same bytes, with DUP set).
    by_id: dict[str, set[bytes]] = {}
    for m in subscriber.messages:
        by_id.setdefault(json.loads(m.payload)["result_id"], set()).add(m.payload)
    assert all(len(p) == 1 for p in by_id.values())
    # Each connection delivered in id order.
    order = [json.loads(m.payload)["result_id"] for m in subscriber.messages]
    assert order[:10] == stored[:10] and order[10:] == stored
    wait_for(lambda: store.counter("publish.resent") == 10, DEADLINE_S, what="publish.resent counted")
    assert store.counter("publish.connects") == 2
    assert store.q("SELECT DISTINCT attempts FROM outbox WHERE id <= (SELECT min(id) + 9 FROM outbox)") == [(2,)]


def test_while_the_broker_is_down_rows_wait_and_leave_when_it_is_back(store, tmp_path, subscriber):
    broker = Mosquitto(tmp_path / "down", port=free_port())  # not started
    try:
        store.add_results(40)
        publisher = store.publisher(upstream(broker.url))
        wait_for(lambda: publisher.connect_failures >= 3, DEADLINE_S, what="failed connection attempts")
        assert store.unsent() == 40 and not publisher.connected
        broker.start()
        sub = Subscriber(broker.host, broker.port, [RESULTS])
        try:
            wait_for(lambda: store.unsent() == 0, DEADLINE_S, what="rows sent once the broker is up")
            wait_for(lambda: len(sub.result_ids()) == 40, DEADLINE_S, what="every result at a subscriber")
        finally:
            sub.close()
    finally:
        broker.stop()


def test_birth_last_will_and_clean_offline_are_retained(store, mosquitto, subscriber):
    topic = status_topic(upstream(mosquitto.url))
    assert topic == STATUS
    proxy = Proxy(mosquitto.port)
    try:
        publisher = store.publisher(upstream(proxy.url))
        wait_for(lambda: [m.payload for m in subscriber.on("/status")] == [b"online"], DEADLINE_S, what="online")
        # The link dies without a DISCONNECT: the broker publishes the last will.
        proxy.cut(refuse=True)
        wait_for(lambda: [m.payload for m in subscriber.on("/status")][-1:] == [b"offline"], DEADLINE_S, what="will")
        proxy.refuse = False
        wait_for(lambda: [m.payload for m in subscriber.on("/status")][-1:] == [b"online"], DEADLINE_S, what="online again")
        publisher.stop()
        wait_for(lambda: [m.payload for m in subscriber.on("/status")][-1:] == [b"offline"], DEADLINE_S, what="offline")
        proxy.drain(DEADLINE_S)  # the clean DISCONNECT reaches the broker before the proxy goes
    finally:
        proxy.close()
    # Retained: a consumer that connects later learns the state at once.
    late = Subscriber(mosquitto.host, mosquitto.port, [STATUS])
    try:
        wait_for(lambda: late.on("/status"), DEADLINE_S, what="the retained status")
        msg = late.on("/status")[0]
        assert msg.payload == b"offline" and msg.retain and msg.qos == 1
    finally:
        late.close()
    assert [m.payload for m in subscriber.on("/status")] == [b"online", b"offline", b"online", b"offline"]


def test_a_clean_stop_marks_everything_the_broker_acknowledged(store, mosquitto, subscriber):
    store.add_results(3000)
    publisher = store.publisher(upstream(mosquitto.url, inflight=50))
    wait_for(lambda: publisher.acked >= 500, DEADLINE_S, what="a flush under way")
    publisher.stop()
    acked = publisher.acked
    assert store.one("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL") == acked == publisher.marked
    assert store.counter("publish.sent") == acked
    # The next run sends the rest, nothing it already had confirmed.
    publisher = store.publisher(upstream(mosquitto.url, inflight=50))
    wait_for(lambda: store.unsent() == 0, DEADLINE_S, what="the rest sent by the next run")
    assert publisher.published == 3000 - acked
    wait_for(lambda: len(subscriber.result_ids()) == 3000, DEADLINE_S, what="all at the subscriber")


def test_sent_rows_expire_after_the_ttl_and_unsent_rows_never(store, mosquitto):
    store.add_results(30)
    publisher = store.publisher(upstream(mosquitto.url, sent_ttl_s=0.2))
    wait_for(lambda: store.one("SELECT count(*) FROM outbox") == 0, DEADLINE_S, what="sent rows deleted")
    wait_for(lambda: store.counter("outbox.expired") == 30, DEADLINE_S, what="outbox.expired counted")
    assert store.counter("publish.sent") == 30
    publisher.stop()
    # Unsent rows stay, however old; sent ones go only once older than the TTL.
    store.add_results(3)
    ids = [r[0] for r in store.q("SELECT id FROM outbox ORDER BY id")]
    store.writer.call(lambda db: db.execute("UPDATE outbox SET created_at = 0")).result()
    store.writer.call(lambda db: mark_sent(db, [Delivered(ids[0], 1.0, 1)], {})).result()
    assert store.writer.call(lambda db: expire_sent(db, 3600)).result() == 0
    assert store.writer.call(lambda db: expire_sent(db, 0)).result() == 1
    assert store.one("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 2


def test_status_shows_the_outbox(store, mosquitto):
    store.add_results(5)
    status = collect_status(connect(store.path, readonly=True), store.path)["upstream"]
    assert status["unsent"] == 5 and status["sent"] == 0 and status["oldest_unsent_s"] >= 0
    store.publisher(upstream(mosquitto.url))
    wait_for(lambda: store.counter("publish.sent") == 5, DEADLINE_S, what="sent")
    status = collect_status(connect(store.path, readonly=True), store.path)["upstream"]
    assert status == {
        "unsent": 0, "sent": 5, "oldest_unsent_s": None, "published": 5, "resent": 0, "connects": 1, "expired": 0,
    }


# -- TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make the test CA (apt-get install openssl)", pytrace=False)
    d = tmp_path_factory.mktemp("certs")
    ca = make_ca(d, "edged-test-ca")
    other_ca = make_ca(d, "some-other-ca")
    server = make_cert(d, "server", ca, server=True)
    client = make_cert(d, "client", ca, server=False)
    return {
        "ca": ca[0], "other_ca": other_ca[0], "server": server[0], "server_key": server[1],
        "client": client[0], "client_key": client[1],
    }


def tls_broker(tmp_path: Path, certs: dict[str, Path], require_certificate: bool) -> Mosquitto:
    return Mosquitto(
        tmp_path,
        extra_config=[
            f"cafile {certs['ca']}",
            f"certfile {certs['server']}",
            f"keyfile {certs['server_key']}",
            f"require_certificate {'true' if require_certificate else 'false'}",
        ],
    ).start()


def test_tls_with_the_test_ca_and_a_wrong_ca_fails(store, tmp_path, certs):
    broker = tls_broker(tmp_path / "tls", certs, require_certificate=False)
    try:
        url = f"mqtts://127.0.0.1:{broker.port}"
        store.add_results(20)
        wrong = store.publisher(upstream(url, ca_file=certs["other_ca"]))
        wait_for(lambda: wrong.connect_failures >= 3, DEADLINE_S, what="TLS handshakes refused")
        assert not wrong.connected and wrong.connects == 0
        wrong.stop()
        assert store.unsent() == 20
        right = store.publisher(upstream(url, ca_file=certs["ca"], client_id="edged-test-up-2"))
        wait_for(lambda: store.unsent() == 0, DEADLINE_S, what="rows sent over TLS")
        assert right.connects == 1
    finally:
        broker.stop()


def test_tls_client_certificate(store, tmp_path, certs):
    broker = tls_broker(tmp_path / "mtls", certs, require_certificate=True)
    try:
        url = f"mqtts://127.0.0.1:{broker.port}"
        store.add_results(10)
        anonymous = store.publisher(upstream(url, ca_file=certs["ca"]))
        # TLS 1.3: the server checks the client certificate after the client's handshake is done,
        # so the refusal shows as a connection lost before CONNACK rather than a failed connect.
        wait_for(lambda: anonymous.attempts >= 3, DEADLINE_S, what="connections refused")
        anonymous.stop()
        assert anonymous.connects == 0 and store.unsent() == 10
        store.publisher(upstream(url, ca_file=certs["ca"], cert_file=certs["client"], key_file=certs["client_key"]))
        wait_for(lambda: store.unsent() == 0, DEADLINE_S, what="rows sent with a client certificate")
    finally:
        broker.stop()



# -- the example bridge ----------------------------------------------------------------------------

BRIDGE_EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto-bridge.conf"


def test_the_example_bridge_carries_results_to_a_central_broker(store, tmp_path):
    """deploy/mosquitto-bridge.conf, as shipped except for the address and TLS files, on a real
    site broker: results published to the site arrive at the central broker, status retained."""
    central = Mosquitto(tmp_path / "central").start()
    lines = []
    for line in BRIDGE_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.split()[0] in ("bridge_cafile", "bridge_certfile", "bridge_keyfile", "bridge_insecure"):
            continue
        lines.append(f"address 127.0.0.1:{central.port}" if line.startswith("address ") else line)
    site = Mosquitto(tmp_path / "site", persistence=True, extra_config=lines)
    consumer = Subscriber(central.host, central.port, [RESULTS])
    try:
        site.start()
        wait_for(consumer.subscribed.is_set, DEADLINE_S, what="consumer subscribed at central")
        bridge_up = Subscriber(site.host, site.port, ["$SYS/broker/connection/+/state"])
        try:
            wait_for(lambda: bridge_up.on("/state")[-1:] and bridge_up.on("/state")[-1].payload == b"1", DEADLINE_S, what="bridge up")
        finally:
            bridge_up.close()
        store.add_results(25)
        publisher = store.publisher(upstream(site.url))
        wait_for(lambda: store.unsent() == 0, DEADLINE_S, what="sent to the site broker")
        wait_for(lambda: len(consumer.result_ids()) == 25, DEADLINE_S, what="results at the central broker")
        assert [m.topic for m in consumer.messages] == ["edged/plant-1/box-1/results/log"] * 25
        late = Subscriber(central.host, central.port, [STATUS])
        try:
            wait_for(lambda: late.on("/status"), DEADLINE_S, what="the box's retained status at central")
            assert late.on("/status")[0].payload == b"online" and late.on("/status")[0].retain
        finally:
            late.close()
        publisher.stop()
    finally:
        consumer.close()
        site.stop()
        central.stop()
