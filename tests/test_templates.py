"""Templates: only the message is mined, keyed by level and component; no line gets another template
text's answer; template state survives a restart; ``edged templates`` shows the grouping."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import zlib

import pytest

from edged.analysis.analyzer import Analyzer
from edged.analysis.templates import TemplateStore
from edged.backends.fake import FakeBackend
from edged.config.settings import AnalysisSettings, UpstreamSettings
from edged.publish.outbox import OutboxBuilder
from edged.store.database import connect, open_database
from edged.store.records import NewRecord
from edged.store.status import collect_status
from edged.store.writer import StoreWriter, WriteBatch


def scripted(request):
    text = request.user
    if "label" in request.schema["properties"]:
        return {"label": "fault" if "ERROR" in text else "normal", "severity": 0}
    return {k: None for k in request.schema["properties"]}


class Env:
    def __init__(self, path):
        self.path = path
        self.writer = StoreWriter(open_database(path))
        self.writer.start()
        self.backend = FakeBackend(answer=scripted)
        self.analyzer = Analyzer(
            # No level table or lexicon: every new template's label is asked of the model, so the call
            # counts below show the template cache alone (the evidence is tested in test_routing.py).
            AnalysisSettings(batch_size=50, levels={}, lexicon={}), self.backend, self.writer, connect(path), OutboxBuilder(UpstreamSettings())
        )
        self.n = 0

    def put(self, *texts, source="file:/var/log/cnc-1.log"):
        records = []
        for t in texts:
            self.n += 1
            records.append(NewRecord(f"t:{self.n}", source, "cnc-1", "log", t, "", None, 0.0, 0))
        self.writer.submit(WriteBatch(records=records)).result()

    def rows(self, sql):
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def close(self):
        self.writer.stop()


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path / "edged.db")
    yield e
    e.close()


def test_only_the_message_is_mined_and_level_and_component_are_part_of_the_key():
    miner = TemplateStore()
    a = miner.mine("spindle 2 overtemp 91C", "ERROR", "drive")
    b = miner.mine("spindle 3 overtemp 95C", "ERROR", "drive")
    c = miner.mine("spindle 3 overtemp 95C", "INFO", "drive")
    d = miner.mine("spindle 3 overtemp 95C", "ERROR", "coolant")
    assert a.template_id == b.template_id and a.template == "spindle <*> overtemp <*>C"
    assert b.params == ["3", "95"]
    assert len({b.template_id, c.template_id, d.template_id}) == 3


def test_a_different_constant_word_is_another_template_until_siblings_show_a_variable():
    miner = TemplateStore()
    begin, end = miner.mine("startAnimation begin"), miner.mine("startAnimation end")
    assert begin.template_id != end.template_id  # "begin" and "end" are not parameters
    users = [miner.mine(f"Invalid user {u} from 10.0.0.{i}") for i, u in enumerate(["admin", "oracle", "test", "pi"])]
    assert users[-1].template == "Invalid user <*> from <*>" and users[-1].generalised
    assert {miner.resolve(u.template_id) for u in users} == {users[0].template_id}


def test_a_numbered_name_keeps_its_family_word():
    miner = TemplateStore()
    eth0 = miner.mine("link up on interface eth0")
    eth1 = miner.mine("link up on interface eth1")
    wlan0 = miner.mine("link up on interface wlan0")
    assert eth0.template_id == eth1.template_id and eth1.template == "link up on interface eth<*>"
    assert eth1.params == ["eth1"]  # the whole name is the value a field would hold
    assert wlan0.template_id != eth0.template_id  # another family is another word, not a parameter
    # In brackets or before a colon it is still a name; a longer number (a host, an id) is variable whole.
    assert miner.mine("(sda1): mounted").template == "(sda<*>): mounted"
    assert miner.mine("reply from node228 late").template == "reply from <*> late"
    assert miner.mine("checksum deadbeef1 bad").template == "checksum <*> bad"


def test_numbered_names_of_four_families_become_a_variable_and_a_name_may_replace_a_word():
    miner = TemplateStore()
    first = [miner.mine(f"carrier lost on {name}") for name in ("eth0", "wlan0", "bond0")]
    assert len({m.template_id for m in first}) == 3
    fourth = miner.mine("carrier lost on ppp0")
    assert fourth.template == "carrier lost on <*>" and fourth.generalised
    assert {miner.resolve(m.template_id) for m in first} == {fourth.template_id}
    # A plain word then a numbered name in its place: names vary there, as with any digit-bearing token.
    word = miner.mine("Invalid user webmaster from host")
    named = miner.mine("Invalid user test9 from host")
    assert named.template_id == word.template_id and named.template == "Invalid user <*> from host"
    assert named.previous == ("Invalid user webmaster from host",)


def test_a_line_of_another_numbered_family_is_not_served_the_cached_answer(env):
    env.put(
        "2026-11-27 10:00:01 INFO link up on network 10.1.0.0 via interface alt0",
        "2026-11-27 10:00:02 INFO link up on network 10.2.0.0 via interface alt1",  # same family: served
        "2026-11-27 10:00:03 INFO link up on network 10.1.0.0 via interface scip0",  # another: asked
    )
    assert env.analyzer.run_once() == 3
    rows = env.rows("SELECT path, template_id FROM results ORDER BY record_id")
    assert [p for p, _ in rows] == ["model", "template_cache", "model"]
    assert rows[0][1] == rows[1][1] != rows[2][1]
    assert len(env.backend.calls) == 4  # classify + extract for each family


def test_a_generalised_template_keeps_its_answer_under_the_new_text(env):
    env.put(
        "2026-11-27 10:00:01 INFO login uid=0 ok",  # template "login uid=<*> ok": asked
        "2026-11-27 10:00:02 INFO login uid=root ok",  # a parameter widens it to "login <*> ok": answer moves
        "2026-11-27 10:00:03 INFO login uid=5 ok",
    )
    assert env.analyzer.run_once() == 3
    assert len(env.backend.calls) == 2  # classify + extract, once
    rows = env.rows("SELECT r.path, r.template_id FROM results r ORDER BY r.record_id")
    assert [p for p, _ in rows] == ["model", "template_cache", "template_cache"]
    status = collect_status(connect(env.path, readonly=True), env.path)
    assert (status["analysis"]["template_carried"], status["analysis"]["template_refreshes"]) == (1, 0)
    env.put("2026-11-27 10:00:04 INFO login uid=7 ok")
    env.analyzer.run_once()
    assert len(env.backend.calls) == 2  # the cache holds the answer under the new text


def test_an_answer_moves_to_the_new_text_across_batches_and_siblings(env):
    env.put("2026-11-27 10:00:01 WARN Invalid user webmaster from 10.0.0.1")
    env.analyzer.run_once()
    assert len(env.backend.calls) == 2
    # A digit-bearing token takes the word's place: the stored answer moves to "Invalid user <*> from <*>".
    env.put("2026-11-27 10:00:02 WARN Invalid user test9 from 10.0.0.2")
    env.analyzer.run_once()
    assert len(env.backend.calls) == 2
    # Different plain words are other events until four siblings show the place is a variable;
    # then the earliest sibling's answer serves the merged template and no one is asked again.
    env.put(*[f"2026-11-27 10:00:0{i} WARN Failed password for {u} from 10.0.0.{i}" for i, u in enumerate(["root", "ftp", "uucp"], 3)])
    env.analyzer.run_once()
    assert len(env.backend.calls) == 2 + 3 * 2
    env.put("2026-11-27 10:00:07 WARN Failed password for sshd from 10.0.0.7")
    env.analyzer.run_once()
    assert len(env.backend.calls) == 8
    served = env.rows("SELECT r.path FROM results r WHERE record_id = 't:6'")
    assert served == [("template_cache",)]
    # A different constant word in a template that has not generalised is still not served.
    env.put("2026-11-27 10:00:08 WARN Invalid host webmaster from 10.0.0.8")
    env.analyzer.run_once()
    assert len(env.backend.calls) == 10


def test_the_answers_of_texts_no_template_has_leave_the_cache_with_the_miner_state(env):
    def cached_templates():
        return sorted(t for (t,) in env.rows(
            "SELECT json_extract(value, '$.template') FROM analysis_cache WHERE key LIKE 'tpl:%'"))

    env.put("2026-11-27 10:00:01 INFO login uid=0 ok")
    env.analyzer.run_once()
    assert cached_templates() == ["login uid=<*> ok"]
    env.put("2026-11-27 10:00:02 INFO login uid=root ok")  # widens: the answer moves to the new text
    env.analyzer.run_once()
    assert cached_templates() == ["login <*> ok"]
    # Three siblings, one batch each, then a fourth: the merged template carries the earliest's answer;
    # the other two answers were not carried and their texts are gone, so their rows go too.
    for i, user in enumerate(["root", "ftp", "uucp"], 3):
        env.put(f"2026-11-27 10:00:0{i} WARN Failed password for {user} from 10.0.0.{i}")
        env.analyzer.run_once()
    assert len(cached_templates()) == 4
    env.put("2026-11-27 10:00:06 WARN Failed password for sshd from 10.0.0.6")
    env.analyzer.run_once()
    assert cached_templates() == ["Failed password for <*> from <*>", "login <*> ok"]
    state = env.rows("SELECT state FROM miner_state WHERE name = 'templates'")[0][0]
    texts = {" ".join(t[3]) for t in json.loads(zlib.decompress(state))["templates"]}
    assert set(cached_templates()) <= texts  # every cached answer belongs to a template the saved state has
    calls = len(env.backend.calls)
    env.put("2026-11-27 10:00:07 WARN Failed password for ftp from 10.0.0.7")  # served from the carried answer
    env.analyzer.run_once()
    assert len(env.backend.calls) == calls
    assert env.rows("SELECT path FROM results WHERE record_id = 't:7'") == [("template_cache",)]
    status = collect_status(connect(env.path, readonly=True), env.path)
    assert status["counters"]["analysis.cache_retired"] == 1 + 3


def test_a_batch_drops_the_answers_of_texts_gone_within_it(env):
    env.put(
        "2026-11-27 10:00:01 INFO login uid=0 ok",
        "2026-11-27 10:00:02 INFO login uid=3 ok",
        "2026-11-27 10:00:03 INFO login uid=root ok",  # the first text is gone before the batch is stored
    )
    env.analyzer.run_once()
    assert env.rows("SELECT json_extract(value, '$.template') FROM analysis_cache WHERE key LIKE 'tpl:%'") == [
        ("login <*> ok",)]
    assert len(env.backend.calls) == 2


def test_results_carry_the_header_fields_and_unparsed_lines_are_counted(env):
    env.put(*[f"2026-11-27 10:00:{i:02d} ERROR spindle {i} overtemp {80 + i}C" for i in range(40)])
    env.put("a line from some other program", source="file:/var/log/cnc-1.log")
    env.analyzer.run_once()
    header = json.loads(env.rows("SELECT header FROM results WHERE record_id = 't:1'")[0][0])
    assert header == {"format": "iso_level", "time": "2026-11-27 10:00:00", "level": "ERROR"}
    payload = json.loads(env.rows("SELECT payload FROM outbox WHERE record_id = 't:1'")[0][0])
    assert payload["header"] == header
    assert env.rows("SELECT header FROM results WHERE record_id = 't:41'")[0][0] is None
    status = collect_status(connect(env.path, readonly=True), env.path)
    assert status["counters"]["files.unparsed_lines"] == 1
    assert env.rows("SELECT level FROM templates") == [("ERROR",), (None,)]


def test_templates_survive_a_restart(tmp_path):
    path = tmp_path / "edged.db"
    first = Env(path)
    first.put("2026-11-27 10:00:01 WARN valve 3 slow to open after 1200 ms")
    first.analyzer.run_once()
    tid = first.rows("SELECT template_id FROM results")[0][0]
    first.close()
    second = Env(path)  # a new process: the miner and the cache come back from SQLite
    second.n = 1
    second.put("2026-11-27 10:05:01 WARN valve 4 slow to open after 900 ms")
    second.analyzer.run_once()
    assert second.rows("SELECT template_id, path FROM results WHERE record_id = 't:2'") == [(tid, "template_cache")]
    assert second.backend.calls == []
    second.close()


def test_state_round_trip_keeps_ids_and_merges():
    miner = TemplateStore()
    for u in ["admin", "oracle", "test", "pi"]:
        miner.mine(f"Invalid user {u} from host")
    restored = TemplateStore(miner.state_if_changed())
    again = restored.mine("Invalid user guest from host")
    assert again.template_id == 1 and not again.changed and restored.resolve(4) == 1 and restored.count == 1


def test_edged_templates_json_uses_the_daemon_settings_and_writes_nothing(tmp_path):
    log = tmp_path / "gw.log"
    log.write_text(
        "".join(f"2026-11-27 10:00:{i:02d},003 - modbus.poller - WARNING - register {40001 + i} timeout\n" for i in range(3))
        + "not a header at all\n"
    )
    db = tmp_path / "state" / "edged.db"
    config = tmp_path / "edged.toml"
    config.write_text(f'[store]\npath = "{db}"\n')
    out = subprocess.run(
        [sys.executable, "-m", "edged", "templates", "--json", str(log), "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["format"] == "python_logging" and rows[0]["fields"]["component"] == "modbus.poller"
    assert rows[0]["template"] == "register <*> timeout" and rows[0]["template_id"] == rows[2]["template_id"]
    assert rows[3]["format"] is None and rows[3]["template"] == "not a header at all"
    assert not db.exists()
    table = subprocess.run(
        [sys.executable, "-m", "edged", "templates", "--format", "iso_level", str(log), "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )
    assert table.returncode == 0 and "4 lines" in table.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "edged", "templates", "--format", "(?P<level>x)", str(log), "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and "message" in bad.stderr and "Traceback" not in bad.stderr
