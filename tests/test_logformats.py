"""Header formats: each named format parses its documented layout; auto-detection; fallback; bad config."""

from __future__ import annotations

import pytest

from edged.config import ConfigError, load_config
from edged.logformats import BY_NAME, FORMATS, HeaderParser, StreamFormat, compile_format, resolve_spec
from edged.logformats.detect import DETECT_LINES, mqtt_filter_matches

EXAMPLES = {
    "rfc3164": (
        "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
        {"time": "Dec 10 06:55:46", "host": "LabSZ", "component": "sshd", "pid": "24200"},
        "Invalid user webmaster from 173.234.31.186",
    ),
    "rfc5424": (
        "<165>1 2026-11-27T10:00:01.003Z plc-07 opcua-gw 4121 ID47 - session closed for client 10.0.0.5",
        {"time": "2026-11-27T10:00:01.003Z", "host": "plc-07", "component": "opcua-gw", "pid": "4121"},
        "session closed for client 10.0.0.5",
    ),
    "journald_iso": (
        "2026-11-27T10:00:01+0100 cnc-07 kernel: usb 1-1.3: new high-speed USB device number 5",
        {"time": "2026-11-27T10:00:01+0100", "host": "cnc-07", "component": "kernel"},
        "usb 1-1.3: new high-speed USB device number 5",
    ),
    "log4j_thread": (
        "2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: Created MRAppMaster",
        {"time": "2015-10-18 18:01:47,978", "level": "INFO", "component": "org.apache.hadoop.mapreduce.v2.app.MRAppMaster"},
        "Created MRAppMaster",
    ),
    "python_logging": (
        "2026-11-27 10:00:01,003 - modbus.poller - WARNING - register 40001 read timeout after 2.0 s",
        {"time": "2026-11-27 10:00:01,003", "level": "WARNING", "component": "modbus.poller"},
        "register 40001 read timeout after 2.0 s",
    ),
    "iso_level": (
        "2026-11-27 10:00:01 ERROR spindle 2 overtemp 91C",
        {"time": "2026-11-27 10:00:01", "level": "ERROR"},
        "spindle 2 overtemp 91C",
    ),
    "apache_error": (
        "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
        {"time": "Sun Dec 04 04:47:44 2005", "level": "error"},
        "mod_jk child workerEnv in error state 6",
    ),
    "nginx_error": (
        "2026/11/27 10:00:01 [error] 4121#4121: *7 connect() failed (111: Connection refused)",
        {"time": "2026/11/27 10:00:01", "level": "error", "pid": "4121"},
        "connect() failed (111: Connection refused)",
    ),
    "logcat": (
        "03-17 16:13:38.811  1702  2395 D WindowManager: startAnimation begin",
        {"time": "03-17 16:13:38.811", "level": "D", "component": "WindowManager", "pid": "1702"},
        "startAnimation begin",
    ),
    "json": (
        '{"ts": "2026-11-27T10:00:01Z", "level": "ERROR", "component": "spindle", "message": "overtemp 91C"}',
        {"time": "2026-11-27T10:00:01Z", "level": "ERROR", "component": "spindle"},
        "overtemp 91C",
    ),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_named_format_splits_header_and_message(name):
    line, fields, message = EXAMPLES[name]
    parsed = BY_NAME[name].parse(line)
    assert parsed is not None
    assert parsed.pop("message") == message
    assert parsed == fields


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_every_format_documents_an_example_it_parses(fmt):
    assert fmt.description and fmt.example
    assert fmt.parse(fmt.example) is not None


def test_auto_picks_the_format_that_parses_most_first_lines():
    stream = StreamFormat("file:/var/log/gw.log")
    lines = [f"2026-11-27 10:00:{i:02d},003 - modbus.poller - INFO - poll {i} ok" for i in range(DETECT_LINES)]
    results = [stream.parse(ln) for ln in lines]
    assert stream.settled and stream.choice.name == "python_logging"
    assert all(r.header["format"] == "python_logging" for r in results)
    assert results[0].header["component"] == "modbus.poller" and results[0].message == "poll 0 ok"


def test_lines_that_stop_matching_are_mined_whole_and_flagged():
    stream = StreamFormat("file:/var/log/gw.log")
    for i in range(DETECT_LINES):
        stream.parse(f"Dec 10 06:55:{i:02d} box sshd[1]: session {i} opened")
    other = stream.parse("some other program writes here now")
    assert other.unparsed and other.header is None and other.message is None


def test_a_stream_no_format_parses_is_mined_whole():
    stream = StreamFormat("mqtt:factory/m1/logs")
    assert all(stream.parse(f"free text {i}").unparsed for i in range(DETECT_LINES + 2))
    assert stream.choice is None


def test_rules_per_glob_and_topic_filter():
    parser = HeaderParser(
        default="auto",
        file_rules=[("/var/log/cnc/*.log", "iso_level"), ("gw-*.log", r"(?P<level>\w) (?P<message>.*)")],
        topic_rules=[("factory/+/syslog", "rfc3164")],
    )
    assert parser.stream("file:/var/log/cnc/a.log").fixed.name == "iso_level"
    parsed = parser.parse("file:/srv/gw-1.log", "E door open")
    assert parsed.header == {"level": "E", "format": "custom"} and parsed.message == "door open"
    assert parser.stream("mqtt:factory/m1/syslog").fixed.name == "rfc3164"
    assert parser.stream("mqtt:factory/m1/logs").fixed is None
    assert mqtt_filter_matches("factory/#", "factory/a/b") and not mqtt_filter_matches("factory/+", "factory/a/b")


def test_user_regex_needs_a_message_group_and_must_compile():
    with pytest.raises(ValueError, match="message"):
        compile_format("x", r"(?P<level>\w+) .*")
    with pytest.raises(ValueError, match="regular expression"):
        compile_format("x", r"(?P<message>.*")
    with pytest.raises(ValueError, match="neither"):
        resolve_spec("no_such_format")


@pytest.mark.parametrize(
    "toml, key",
    [
        ('[logs]\nformat = "(?P<level>\\\\w+) rest"\n', "[logs] format"),
        ('[logs.formats]\n"*.log" = "(?P<message>.*"\n', "[logs] formats"),
        ('[mqtt.formats]\n"factory/#" = "nope"\n', "[mqtt] formats"),
    ],
)
def test_bad_format_in_config_names_key_and_file(tmp_path, toml, key):
    path = tmp_path / "edged.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert key in str(err.value) and str(path) in str(err.value)


def test_detection_state_round_trips_and_a_named_format_wins() -> None:
    from edged.logformats.detect import DETECT_LINES

    first = HeaderParser()
    for i in range(DETECT_LINES):
        first.parse("file:/a.log", f"Dec 10 06:55:{i % 60:02d} box sshd[{i}]: session opened")
    state = first.state_if_changed()
    assert state is not None and first.state_if_changed() is None  # saved once, until it moves again
    again = HeaderParser()
    again.restore(state)
    assert again.stream("file:/a.log").settled and again.stream("file:/a.log").choice.name == "rfc3164"
    named = HeaderParser(file_rules=[("*.log", "iso_level")])
    named.restore(state)
    assert named.stream("file:/a.log").choice.name == "iso_level"
