"""Grounded extraction without a model: time normalisation, field patterns, the grounding check,
repetition stops and the summary check; and, with the scripted backend (pipeline logic only), that
structure comes first, the model is asked only for what it left empty, and invented values are
dropped and counted."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone

import pytest

from edged.analysis.analyzer import Analyzer
from edged.analysis.field_patterns import FieldPatterns
from edged.analysis.grounding import grounded
from edged.analysis.structured_fields import FieldReader
from edged.analysis.summary_check import check_summary, claims, cut_before, first_sentence, unsupported
from edged.analysis.timestamps import find_time, normalize_time, zone
from edged.backends.fake import FakeBackend
from edged.backends.repetition import close_json, cut_at_repeat, first_repeat
from edged.config.settings import AnalysisSettings
from edged.store.database import connect, open_database
from edged.store.inbox import Claimed
from edged.store.records import NewRecord
from edged.store.status import collect_status
from edged.store.writer import StoreWriter, WriteBatch

UTC = timezone.utc
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()


# -- time ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, iso",
    [
        ("2005-06-03-15.42.50.675872", "2005-06-03T15:42:50.675872+00:00"),  # BlueGene
        ("03-17 16:13:38.811", "2026-03-17T16:13:38.811000+00:00"),  # logcat, no year
        ("081109 203615", "2008-11-09T20:36:15+00:00"),  # HDFS
        ("Jun 14 15:16:01", "2026-06-14T15:16:01+00:00"),  # syslog, no year
        ("Jun  4 15:16:01", "2026-06-04T15:16:01+00:00"),
        ("[Sun Dec 04 04:47:44 2005]", "2005-12-04T04:47:44+00:00"),  # Apache
        ("2015-10-18 18:01:47,978", "2015-10-18T18:01:47.978000+00:00"),
        ("2016-09-28 04:30:30,", "2016-09-28T04:30:30+00:00"),
        ("17/06/09 20:10:40", "2017-06-09T20:10:40+00:00"),
        ("2005.11.09 12:01:01", "2005-11-09T12:01:01+00:00"),
        ("1117838570", "2005-06-03T22:42:50+00:00"),  # epoch seconds are UTC whatever the zone
        ("1117838570123", "2005-06-03T22:42:50.123000+00:00"),
        ("2026-11-27T10:00:01.5+02:00", "2026-11-27T10:00:01.500000+02:00"),
        ("2026-11-27T10:00:01Z", "2026-11-27T10:00:01+00:00"),
    ],
)
def test_timestamps_are_normalised_to_iso(raw, iso):
    assert normalize_time(raw, UTC, NOW) == iso


def test_a_stamp_without_a_year_is_never_in_the_future():
    # read on 29 November 2026: a December stamp is from 2025, and a leap day from the last leap year
    assert normalize_time("Dec 31 23:59:59", UTC, NOW) == "2025-12-31T23:59:59+00:00"
    assert normalize_time("Nov 30 08:00:00", UTC, NOW) == "2026-11-30T08:00:00+00:00"  # within a day: clock skew
    assert normalize_time("Feb 29 10:00:00", UTC, NOW) == "2024-02-29T10:00:00+00:00"


def test_zone_less_stamps_take_the_configured_zone():
    assert normalize_time("2026-07-01 12:00:00", zone("Europe/Berlin"), NOW) == "2026-07-01T12:00:00+02:00"
    assert normalize_time("2026-07-01 12:00:00+00:00", zone("Europe/Berlin"), NOW) == "2026-07-01T12:00:00+00:00"


@pytest.mark.parametrize("raw", ["", "garbage", "13-45 10:00:00", "2026-02-30 10:00:00", "10:00", "4711"])
def test_a_time_that_does_not_parse_is_none_never_now(raw):
    assert normalize_time(raw, UTC, NOW) is None


def test_a_full_date_is_found_in_free_text_but_not_a_bare_time():
    assert find_time("seen 2026-11-27 10:00:01 at press 3", UTC, NOW) == (
        "2026-11-27 10:00:01", "2026-11-27T10:00:01+00:00")
    assert find_time("shift change at 10:00, part 2026-118", UTC, NOW) is None


# -- patterns --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, value, unit",
    [
        ("ERROR spindle 2 overtemp 91C", "91", "C"),
        ("bearing at 91.5 °C", "91.5", "°C"),
        ("fan 3000rpm", "3000", "rpm"),
        ("pressure 4.2 bar", "4.2", "bar"),
        ("coolant low (18%)", "18", "%"),
        ("motor current 12.5 A", "12.5", "A"),
        ("cycle took 32.1 s", "32.1", "s"),
        ("timeout of 10000ms exceeded", "10000", "ms"),
    ],
)
def test_values_with_units(text, value, unit):
    match = FieldPatterns().find("value", text)
    assert match is not None and match.values == {"value": value, "unit": unit}


@pytest.mark.parametrize("text", ["excavator EX-12 on site", "node R23-M0-NE-C:J05", "mac FF:F2:9F:16", "spindle 2 stopped"])
def test_numbers_in_identifiers_are_not_values(text):
    assert FieldPatterns().find("value", text) is None


@pytest.mark.parametrize(
    "text, code",
    [
        ("drive fault E-1234 at axis X", "E-1234"),
        ("ALM 203 raised", "ALM 203"),
        ("read failed code=0x1F", "0x1F"),
        ("open: errno 5", "5"),
        ("query failed: SQLSTATE[08006] connection failure", "08006"),
        ("servo F0021 tripped", "F0021"),
    ],
)
def test_error_code_shapes(text, code):
    match = FieldPatterns().find("error_code", text)
    assert match is not None and match.values["error_code"] == code


def test_no_error_code_in_machine_and_part_ids():
    assert FieldPatterns().find("error_code", "excavator EX-12, hose H-44 worn") is None


def test_configured_patterns_replace_the_built_in_ones():
    patterns = FieldPatterns({"error_code": [r"PLC-(?P<code>\d{3})"]})
    assert patterns.find("error_code", "E-1234 and PLC-042").values["error_code"] == "042"
    assert FieldPatterns({"error_code": []}).find("error_code", "E-1234") is None


def test_reader_takes_header_first_then_record_then_patterns():
    reader = FieldReader(AnalysisSettings().extract_fields, timezone="UTC")
    header = {"format": "syslog", "time": "Jun 14 15:16:01", "host": "plc-04", "component": "modbus", "pid": "812"}
    got = reader.read("Jun 14 15:16:01 plc-04 modbus[812]: ERROR timeout ALM 203 at 4.2 bar", header=header,
                      message="ERROR timeout ALM 203 at 4.2 bar", machine="file-name", received_at=NOW)
    assert got.fields == {"event_time": "2026-06-14T15:16:01+00:00", "machine": "plc-04", "component": "modbus",
                          "level": "ERROR", "value": 4.2, "unit": "bar", "error_code": "ALM 203"}
    assert got.sources == {"event_time": "header", "machine": "header", "component": "header", "level": "pattern",
                           "value": "pattern", "unit": "pattern", "error_code": "pattern"}
    assert reader.for_model(got.fields) == []
    bare = reader.read("left cylinder leaking", machine="press-3", received_at=NOW)
    assert bare.fields == {"machine": "press-3"} and bare.sources == {"machine": "record"}
    assert reader.for_model(bare.fields) == ["component", "error_code", "value", "unit"]  # never time or level


def test_an_unparsable_header_time_leaves_event_time_null():
    reader = FieldReader(AnalysisSettings().extract_fields, timezone="UTC")
    got = reader.read("xx 2026-11-27 10:00:00 y", header={"time": "xx"}, message="2026-11-27 10:00:00 y",
                      received_at=NOW)
    assert "event_time" not in got.fields  # not the message's date, and never now


# -- grounding -------------------------------------------------------------------------------------
REPORT = ("Operator reported hydraulic oil leaking from the left boom cylinder on excavator EX-12, about 2 L of oil"
          " lost. Replace seal kit SK-7 and check hose H-44 for abrasion.")


@pytest.mark.parametrize("value", ["EX-12", "left  BOOM cylinder", "hose H-44", 2, 2.0, "2 L"])
def test_values_in_the_text_are_grounded(value):
    assert grounded(value, REPORT)


@pytest.mark.parametrize("value", ["2022-01-01T12:30:00Z", "EX-13", "seals", 12.5, 44.0 + 1, "H-4", "1", "12", 12, 44])
def test_values_not_in_the_text_are_not(value):
    assert not grounded(value, REPORT)


# -- repetition and the summary check ----------------------------------------------------------------
def test_a_summary_ends_at_its_first_repeated_4gram():
    text = "Hydraulic leak on EX-12: 2 L of oil lost, 2 L of oil lost, 2 L of oil"
    assert first_repeat(text, 4) == text.index("2 L of oil lost, 2 L of oil") + len("2 L of oil lost, ")
    assert cut_at_repeat(text) == ("Hydraulic leak on EX-12: 2 L of oil lost", True)
    assert cut_at_repeat("no repetition here at all") == ("no repetition here at all", False)


def test_a_json_document_cut_in_a_string_is_closed():
    assert json.loads(close_json('{"summary": "leak on EX-12, 2 L of oil')) == {"summary": "leak on EX-12, 2 L of oil"}
    assert json.loads(close_json('{"summary": "a \\')) == {"summary": "a"}
    assert close_json('{"summary":') is None


def test_a_failing_summary_is_cut_before_its_first_unsupported_claim():
    assert cut_before("Change out alternator, 2023-01-22, 12, 32", ["2023-01-22", "12", "32"]) == "Change out alternator"
    assert cut_before("Leak on EX-12 at 2023-01-22", ["2023-01-22"]) == "Leak on EX-12"
    assert cut_before("2023-01-22 leak", ["2023-01-22"]) is None  # nothing left: the report stands in
    assert check_summary("Incident report: change out alternator", "change out alternator")[0] == "change out alternator"
    assert first_sentence("Pump 3 leaks. Seal kit ordered.", 240) == "Pump 3 leaks."


def test_summary_claims_must_be_in_the_report():
    assert claims("Seal kit SK-8 replaced on EX12 at 2022-01-01, 2 L lost") == ["SK-8", "EX12", "2022-01-01", "2"]
    assert unsupported("Seal kit SK-8 replaced on EX12 at 2022-01-01, 2 L lost", REPORT) == ["SK-8", "2022-01-01"]
    assert check_summary("Leak on EX-12; replace seal kit SK-7, check hose H-44.", REPORT)[2] == []


# -- the pipeline, scripted backend ----------------------------------------------------------------
class Inventing:
    """Answers like a small model at its worst: every field filled, none from the text."""

    def __call__(self, request):
        props = request.schema["properties"]
        if "label" in props:
            return {"label": "fault", "severity": 3}
        if "summary" in props:
            return {"summary": "Seal kit SK-8 replaced on EX-12 on 2022-01-01"}
        return {k: (99.5 if props[k]["type"][0] == "number" else "L") if k != "component" else "left boom"
                for k in props}


@pytest.fixture
def env(tmp_path):
    path = tmp_path / "edged.db"
    writer = StoreWriter(open_database(path))
    writer.start()
    backend = FakeBackend(answer=Inventing())
    analyzer = Analyzer(AnalysisSettings(batch_size=50, digest_interval_s=0), backend, writer, connect(path),
                        timezone="UTC")
    yield writer, backend, analyzer, path
    writer.stop()


def _rows(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_invented_values_are_dropped_and_counted(env):
    writer, backend, analyzer, path = env
    writer.submit(WriteBatch(records=[NewRecord("i:1", "test", "ex-12", "incident", REPORT, "", None, NOW, 10)])).result()
    analyzer.run_once()
    fields, sources, summary, review, reason = _rows(
        path, "SELECT fields, fields_source, summary, needs_review, review_reason FROM results")[0]
    fields, sources = json.loads(fields), json.loads(sources)
    assert fields["component"] == "left boom" and sources["component"] == "model"  # in the text: kept
    assert fields["value"] == 2 and fields["unit"] == "L" and sources["value"] == "pattern"
    assert fields["error_code"] is None  # "L" is in the text, but an error code without a digit is none
    assert fields["event_time"] is None and fields["level"] is None  # never asked, never invented
    status = collect_status(connect(path), path)
    assert status["analysis"]["ungrounded"] == {"error_code": 1}
    # the summary named SK-8 and 2022-01-01: asked again once, then kept and flagged with the reason
    assert [next(iter(r.schema["properties"])) for r in backend.calls].count("summary") == 2
    assert review == 1 and "SK-8" in reason and "2022-01-01" in reason
    assert summary == "Seal kit"  # cut before the first claim the report does not contain
    assert status["analysis"]["summaries"] == {"regenerated": 1, "failed_check": 1}


def test_a_value_not_in_the_text_is_nulled_and_counted_per_field(env):
    writer, backend, analyzer, path = env
    writer.submit(WriteBatch(records=[NewRecord("l:1", "test", None, "log", "door 3 opened by badge", "", None, NOW)])).result()
    analyzer.run_once()
    fields = json.loads(_rows(path, "SELECT fields FROM results")[0][0])
    # component "left boom", error_code "L", value 99.5, unit "L", machine "L": none of them in the line
    assert fields == dict.fromkeys(AnalysisSettings().extract_fields)
    counted = collect_status(connect(path), path)["analysis"]["ungrounded"]
    assert counted == {"machine": 1, "component": 1, "error_code": 1, "value": 1, "unit": 1}


def test_a_line_whose_structure_fills_every_field_makes_no_extract_call(env):
    writer, backend, analyzer, path = env
    text = "Jun 14 15:16:01 plc-04 modbus[812]: ERROR ALM 203 pressure 4.2 bar"
    header = {"format": "syslog", "time": "Jun 14 15:16:01", "host": "plc-04", "component": "modbus", "pid": "812"}
    rec = Claimed(1, "h:1", "test", None, "log", text, "", 1, NOW, 0, header, "ERROR ALM 203 pressure 4.2 bar")
    outcome = analyzer.pipeline.analyze([rec])
    asked = [next(iter(r.schema["properties"])) for r in backend.calls]
    assert asked == ["label"]  # classify only
    result = outcome.results[0]
    assert result.fields["event_time"] == "2026-06-14T15:16:01+00:00"
    assert result.fields_source == {"event_time": "header", "machine": "header", "component": "header",
                                    "level": "pattern", "error_code": "pattern", "value": "pattern", "unit": "pattern"}


def test_the_model_is_asked_only_for_what_structure_left(env):
    writer, backend, analyzer, path = env
    rec = Claimed(1, "h:2", "test", "cnc-7", "log", "2026-11-27 10:00:01 ERROR spindle 2 overtemp 91C", "", 1, NOW, 0)
    analyzer.pipeline.analyze([rec])
    extract = [r for r in backend.calls if "label" not in r.schema["properties"]]
    assert len(extract) == 1 and list(extract[0].schema["properties"]) == ["component", "error_code"]


def test_a_value_that_may_still_occur_is_told_from_one_that_cannot():
    from edged.analysis.grounding import grounded, may_become_grounded

    text = "2024-05-01 ERROR [PLC-3] Watchdog timeout E4711, restarting task MAIN"
    for value in ("PLC-3", "Watchdog timeout", "E4711", "restarting task MAIN"):
        assert grounded(value, text)
        assert all(may_become_grounded(value[:n], text) for n in range(len(value) + 1))
    assert not may_become_grounded("LC-3", text)  # inside a word
    assert not may_become_grounded("Watchdog timer", text)
    assert not may_become_grounded("1.1.1.1", text)
    assert may_become_grounded("watchdog   TIME", text)  # case and runs of whitespace, as grounded()


@pytest.mark.parametrize(
    "name, value, ok",
    [
        ("unit", "°C", True), ("unit", "rpm", True), ("unit", "bar", True), ("unit", "%", True),
        ("unit", "Cylinder", False), ("unit", "engine", False), ("unit", "tty", False),
        ("machine", "EX-12", True), ("machine", "10.0.0.7", True),
        ("machine", "Deleting", False), ("machine", "Swing Box", False),
        ("error_code", "E-1234", True), ("error_code", "0x800f080d", True),
        ("error_code", "blk_-6891122177443047531", False), ("error_code", "2005-06-03", False),
        ("component", "left boom cylinder", True),
    ],
)
def test_a_model_value_must_have_its_fields_shape(name, value, ok):
    from edged.analysis.grounding import plausible

    assert plausible(name, value) is ok


def test_pieces_of_an_address_are_not_numbers():
    from edged.analysis.grounding import grounded, numbers_in

    assert numbers_in("from 10.190.173.170 port 22") == {22.0}
    assert not grounded(10.19, "from 10.190.173.170 port 22")
    assert grounded(91.5, "bearing at 91.5C.")
