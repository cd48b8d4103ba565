"""Register and flag dump lines (edged.analysis.dump_lines): a crash handler's machine state, one value
per line at the crash's level, is labelled normal, severity 0 (``classified_by = dump``), so that one
crash is one alert, not thirty; and the rule stays narrow, so that a real alarm is never silenced.

Every line here is synthetic. The model is the scripted fake backend: these tests prove who decides.
"""

from __future__ import annotations

import pytest

from edged.analysis.dump_lines import is_dump_line
from edged.analysis.evaluate import evaluate, load_csv
from edged.analysis.evidence import Evidence
from edged.analysis.pipeline import Pipeline, ResultCache
from edged.analysis.routing import DUMP, LEVEL, TRIAGE, Subject, route
from edged.analysis.templates import TemplateStore
from edged.backends.fake import FakeBackend
from edged.config import load_config
from edged.config.settings import AnalysisSettings, TriageSettings
from edged.store.database import open_database
from edged.store.inbox import Claimed
from edged.triage.router import Decision

EVIDENCE = Evidence(AnalysisSettings())


@pytest.mark.parametrize("message", [
    # a CPU's exception handler (the shapes of a PowerPC crash dump)
    "instruction address: 0x00004ed8",
    "machine state register: 0x00002000",
    "exception syndrome register: 0x00800000",
    "machine check enable..............0",
    "program interrupt: illegal instruction......1",
    "floating pt ex mode 0 enable......0",
    "floating point instr. enabled.....1",
    "problem state (0=sup,1=usr).......0",
    "program interrupt: fp cr field .............0",
    "unimplemented operation..0",
    "r24=0x0ffea4c8 r25=0x00000003 r26=0x1eeeeeee r27=0x00000000",
    "lr:00004ed0 cr:28244842 xer:20000002 ctr:00086000",
    "special purpose registers:",
    # a PLC's or CNC controller's hard fault dump
    "PC: 0x0800ABCD",
    "SP=0x20001FF0 LR=0x08001234 PSR=0x61000000",
    "R0 = 0x00000000  R1 = 0x20001FF0",
    "r24=0x0ffea4c8",
    "CFSR: 0x00008200",
    "task stack pointer = 0x20003F10",
    "watchdog enable.........1",
    "General purpose registers:",
])
def test_a_name_and_a_register_like_value_only_is_a_dump_line(message):
    assert is_dump_line(message)
    assert EVIDENCE.of(message).dump


@pytest.mark.parametrize("message", [
    "temp: 95C",  # a measurement
    "temperature: 0x005F",  # a physical quantity, even in hex
    "spindle 2 at 95 C: 0x00000001",  # a measurement in the name
    "pressure: 12",  # a decimal value
    "state: STOPPED",  # a word
    "fault code: 0x8001",  # the failure words
    "error register: 0x00000004",
    "overtemp alarm.....1",
    "drive failed.....1",
    "abort reason: 0x0000000A",
    "code=0x1F",  # error code shapes
    "rc=0x00000001 r1=0x00000002",
    "ALM 203: 0x00000001",
    "E-1234 status: 0x00000001",
    "guard door closed.....1",  # lexicon words (safety, security)
    "password check..........0",
    "Updated to version 1.0",  # one dot is no leader
    "guaranteed instruction cache block touch.0",
    "version 1..0",  # a leader after a number
    "data TLB error interrupt",  # the crash itself
    "rts panic! - stopping execution",
    "instruction address: 0x00004ed8 while loading program image",  # more than a name and a value
    "0x00004ed8",  # a value without a name
    "",
    "a" * 400 + ": 0x00000000",  # too long to be one
])
def test_anything_else_is_not_a_dump_line(message):
    assert not EVIDENCE.is_dump_line(message)
    assert not EVIDENCE.of(message).dump


def test_the_lexicon_is_the_evidences_to_check():
    assert is_dump_line("guard door closed.....1")  # the shape alone
    assert EVIDENCE.of("guard door closed.....1").words == {"safety": "guard"}


def test_a_dump_line_is_normal_whatever_its_level_and_the_crash_itself_keeps_its_level():
    got = route([Subject("instruction address: 0x00004ed8", "FATAL"), Subject("machine check enable......0", "ERROR"),
                 Subject("lr:00004ed0 cr:28244842", None), Subject("data TLB error interrupt", "FATAL"),
                 Subject("temp: 95C", "FATAL")], EVIDENCE, None)
    for r in got[:3]:
        assert (r.label, r.severity, r.by, r.review, r.ask_model) == ("normal", 0, DUMP, False, False)
    assert (got[3].label, got[3].severity, got[3].by) == ("fault", 4, LEVEL)
    assert (got[4].label, got[4].severity, got[4].by) == ("fault", 4, LEVEL)


def test_the_switch_turns_it_off_and_a_taxonomy_without_normal_never_has_dump_lines(tmp_path):
    config = tmp_path / "edged.toml"
    config.write_text("[analysis]\ndump_lines = false\n")
    off = Evidence(load_config(config).settings.analysis)
    assert not off.of("instruction address: 0x00004ed8").dump
    assert route([Subject("instruction address: 0x00004ed8", "FATAL")], off, None)[0].by == LEVEL
    other = Evidence(AnalysisSettings(labels=["ok", "fault"]))
    assert not other.of("instruction address: 0x00004ed8").dump and not other.is_dump_line("PC: 0x0800ABCD")


def test_a_confident_classifier_still_decides_before_the_dump_rule():
    class Sure:
        def decide(self, texts):
            return [Decision(label="fault", probability=0.97, severity=4, version=3) for _ in texts]

    r = route([Subject("instruction address: 0x00004ed8", "FATAL")], EVIDENCE, Sure())[0]
    assert (r.label, r.by, r.triage_version) == ("fault", TRIAGE, 3)


def claimed(i, message, level):
    header = {"format": "test", "level": level}
    return Claimed(i, f"r{i}", "test", "m", "log", f"node7 {level} {message}", "", 1, 0.0, 0, header, message)


def fake_backend():
    return FakeBackend(answer=lambda req: {"label": req.schema["properties"]["label"]["enum"][0], "severity": 1}
                       if "label" in req.schema["properties"] else {k: None for k in req.schema["properties"]})


def test_the_pipeline_labels_dump_lines_without_the_model_and_never_lends_their_answer_to_other_lines(tmp_path):
    backend = fake_backend()
    db = open_database(tmp_path / "edged.db")
    cache: dict = {}
    pipeline = Pipeline(AnalysisSettings(extract_fields={}), backend, TemplateStore.load(db),
                        ResultCache(cache.get), None, evidence=EVIDENCE, severities=TriageSettings().severities)

    def analyze(*records):
        out = pipeline.analyze(list(records))
        cache.update(out.cache_entries)
        return {r.record_id: (r.label, r.severity, r.classified_by) for r in out.results}

    # "slot: 0x0000005F" and "slot: 95C" are one template ("slot: <*>"): a dump line's answer is its own.
    got = analyze(claimed(1, "slot: 0x0000005F", "FATAL"), claimed(2, "slot: 95C", "FATAL"),
                  claimed(3, "instruction address: 0x00004ed8", "FATAL"))
    assert got == {"r1": ("normal", 0, DUMP), "r2": ("fault", 4, LEVEL), "r3": ("normal", 0, DUMP)}
    got = analyze(claimed(4, "slot: 12C", "FATAL"), claimed(5, "slot: 0x00000060", "FATAL"),
                  claimed(6, "instruction address: 0x00004ee0", "FATAL"))
    assert got == {"r4": ("fault", 4, LEVEL), "r5": ("normal", 0, DUMP), "r6": ("normal", 0, DUMP)}
    assert backend.calls == []


def test_eval_reads_the_message_column_as_a_parsed_header_splits_it_off(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("text,level,message,truth\n"
                        "1117 R02 KERNEL FATAL instruction address: 0x00004ed8,FATAL,instruction address: 0x00004ed8,normal\n"
                        "1117 R02 KERNEL FATAL data TLB error interrupt,FATAL,data TLB error interrupt,fault\n"
                        "1117 R02 KERNEL FATAL machine check enable......0,FATAL,machine check enable......0,normal\n")
    data = load_csv(csv_path, "text", "truth", level_col="level", message_col="message")
    assert data.messages[0] == "instruction address: 0x00004ed8"
    r = evaluate(FakeBackend(answer=lambda req: {"label": "warning", "severity": 2}), AnalysisSettings(), data,
                 paths=("routed",), severities=TriageSettings().severities)
    assert r["routed_by"] == {"dump": 2, "level": 1} and r["model_calls"] == 0 and r["micro_f1"] == 1.0
    # Without the message column the header is part of the text: no line is a name and a value only.
    whole = load_csv(csv_path, "text", "truth", level_col="level")
    r = evaluate(FakeBackend(answer=lambda req: {"label": "warning", "severity": 2}), AnalysisSettings(), whole,
                 paths=("routed",), severities=TriageSettings().severities)
    assert r["routed_by"] == {"level": 3}


def test_the_daemons_header_parsing_gives_the_rule_its_message(tmp_path):
    db = open_database(tmp_path / "edged.db")
    pipeline = Pipeline(AnalysisSettings(extract_fields={}), fake_backend(), TemplateStore.load(db),
                        ResultCache(lambda key: None), None, evidence=EVIDENCE, severities=TriageSettings().severities)
    lines = ["2026-11-27 10:00:01 FATAL instruction address: 0x00004ed8",
             "2026-11-27 10:00:01 FATAL machine check enable......0",
             "2026-11-27 10:00:01 FATAL data TLB error interrupt"]
    out = pipeline.analyze([Claimed(i, f"r{i}", "plc", "m", "log", t, "", 1, 0.0, 0, None, None)
                            for i, t in enumerate(lines)])
    got = {r.record_id: (r.label, r.severity, r.classified_by) for r in out.results}
    assert got == {"r0": ("normal", 0, DUMP), "r1": ("normal", 0, DUMP), "r2": ("fault", 4, LEVEL)}
