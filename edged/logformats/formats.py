"""The named header layouts edged knows, each a regex with named groups and an example line.

A format names a layout (how a program writes its lines), never a particular machine or data set.
Groups: ``time``, ``level``, ``host``, ``component``, ``pid`` (each optional) and ``message``
(required: the part after the header, which is what the template miner sees). Other named groups
(``thread``, ``epoch`` ...) are parsed but not reported. The order of ``FORMATS`` is the order
auto-detection prefers when two formats parse the same share of lines: more specific ones first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

FIELDS = ("time", "level", "host", "component", "pid")

_MON = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_DOW = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_ISO = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?"
_LEVEL = (
    r"(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|CRITICAL|CRIT|FATAL|SEVERE|ALERT|EMERG|PANIC|FINE|FINER"
    r"|FINEST|CONFIG|Trace|Debug|Info|Notice|Warn|Warning|Error|Critical|Fatal|trace|debug|info|notice|warn"
    r"|warning|error|critical|fatal)"
)
# A program name as syslog writes it: "sshd", "sshd(pam_unix)", "kernel", "CRON"; pid in brackets.
_PROG = r"(?P<component>[^\s\[\]:]+?)(?:\[(?P<pid>\d+)\])?"


@dataclass(frozen=True)
class LogFormat:
    name: str
    pattern: re.Pattern[str]
    description: str
    example: str

    def parse(self, line: str) -> dict[str, str] | None:
        """Header fields (raw text, as in the line) plus ``message``, or None when the line does not fit."""
        m = self.pattern.match(line)
        if m is None:
            return None
        groups = m.groupdict()
        out = {k: v for k in FIELDS if (v := groups.get(k)) is not None and v != ""}
        out["message"] = groups["message"] or ""
        return out


def compile_format(name: str, regex: str) -> LogFormat:
    """A user's format from a regex; ValueError (saying why) when it does not compile or lacks ``message``."""
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    if "message" not in pattern.groupindex:
        raise ValueError("the regular expression has no named group 'message', e.g. (?P<message>.*)")
    return LogFormat(name, pattern, "user-defined", "")


class JsonFormat(LogFormat):
    """A JSON object per line: the header fields come from its keys, not from a layout."""

    KEYS = {
        "time": ("ts", "time", "timestamp", "@timestamp"),
        "level": ("level", "severity", "lvl", "levelname"),
        "host": ("host", "hostname"),
        "component": ("component", "logger", "name", "module", "source"),
        "pid": ("pid",),
    }
    MESSAGE_KEYS = ("message", "msg", "text")

    def parse(self, line: str) -> dict[str, str] | None:
        if not line.startswith("{"):
            return None
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        message = next((obj[k] for k in self.MESSAGE_KEYS if isinstance(obj.get(k), str)), None)
        if message is None:
            return None
        out = self.header_fields(obj)
        out["message"] = message
        return out

    @classmethod
    def header_fields(cls, obj: dict) -> dict[str, str]:
        """The header fields a JSON object's keys give (a file's JSON line or a JSON MQTT payload)."""
        out = {}
        for field_name, keys in cls.KEYS.items():
            value = next((obj[k] for k in keys if k in obj and isinstance(obj[k], (str, int, float))), None)
            if value is not None and not isinstance(value, bool):
                out[field_name] = str(value)
        return out


def _f(name: str, regex: str, description: str, example: str, cls: type[LogFormat] = LogFormat) -> LogFormat:
    fmt = cls(name, re.compile(regex), description, example)
    assert fmt.parse(example) is not None, name  # every shipped format parses its own example
    return fmt


FORMATS: list[LogFormat] = [
    _f(
        "json",
        r"(?P<message>\{.*\})\s*$",
        "one JSON object per line; level/component/time/host/pid and message are read from its keys",
        '{"ts": "2026-11-27T10:00:01Z", "level": "ERROR", "component": "spindle", "message": "overtemp 91C"}',
        JsonFormat,
    ),
    _f(
        "rfc5424",
        r"<\d{1,3}>1 (?P<time>\S+) (?P<host>\S+) (?P<component>\S+) (?P<pid>\S+) \S+ (?:-|(?:\[.*?\])+) ?(?P<message>.*)",
        "syslog RFC 5424: <PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG",
        "<165>1 2026-11-27T10:00:01.003Z plc-07 opcua-gw 4121 ID47 - session closed for client 10.0.0.5",
    ),
    _f(
        "cluster_syslog",
        # The time is the epoch: the exact instant, where the syslog stamp after it has no year and no zone.
        r"(?:(?P<alert>\S+) )?(?P<time>\d{9,11}) \d{4}\.\d{2}\.\d{2} (?P<host>\S+) " + _MON + r" +\d{1,2} \d{2}:\d{2}:\d{2}"
        r" \S+ " + _PROG + r": ?(?P<message>.*)",
        "a cluster log collector's syslog: alert tag, epoch seconds (the time), date, node, then an RFC 3164 line",
        "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root",
    ),
    _f(
        "bluegene_ras",
        r"(?:(?P<alert>\S+) )?(?P<epoch>\d{9,11}) \d{4}\.\d{2}\.\d{2} (?P<host>\S+) (?P<time>\d{4}-\d{2}-\d{2}-\d{2}\.\d{2}\.\d{2}\.\d+)"
        r" \S+ (?P<type>[A-Z_]+) (?P<component>[A-Z_]+) (?P<level>[A-Z]+) (?P<message>.*)",
        "IBM Blue Gene RAS event log: alert tag, epoch, date, location, timestamp, location, type, component, severity",
        "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO"
        " instruction cache parity error corrected",
    ),
    _f(
        "rfc3164",
        r"(?:<\d{1,3}>)?(?P<time>" + _MON + r" +\d{1,2} \d{2}:\d{2}:\d{2}) (?P<host>\S+) " + _PROG + r": ?(?P<message>.*)",
        "BSD syslog RFC 3164 (also /var/log/messages, auth.log, journalctl -o short): MMM DD HH:MM:SS HOST PROG[PID]: MSG",
        "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
    ),
    _f(
        "journald_iso",
        r"(?P<time>" + _ISO + r") (?P<host>\S+) " + _PROG + r": ?(?P<message>.*)",
        "journalctl -o short-iso (and rsyslog's ISO timestamps): ISO-TIME HOST PROG[PID]: MSG",
        "2026-11-27T10:00:01+0100 cnc-07 kernel: usb 1-1.3: new high-speed USB device number 5",
    ),
    _f(
        "logcat",
        r"(?P<time>\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}) +(?P<pid>\d+) +(?P<tid>\d+) (?P<level>[VDIWEFA]) "
        r"(?P<component>[^:]*?) *: ?(?P<message>.*)",
        "Android logcat -v threadtime (HMIs and tablets on Android): MM-DD TIME PID TID LEVEL TAG: MSG",
        "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogsopening app wtoken",
    ),
    _f(
        "log4j_dash",
        r"(?P<time>" + _ISO + r") - (?P<level>" + _LEVEL + r") +\[(?P<thread>.*?):(?P<component>[^:\[\]]+?)(?:@\d+)?\] - (?P<message>.*)",
        "log4j '%d - %-5p [%t:%C{1}@%L] - %m' (ZooKeeper and others): TIME - LEVEL [THREAD:CLASS@LINE] - MSG",
        "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: 3200",
    ),
    _f(
        "log4j_thread",
        r"(?P<time>" + _ISO + r") +(?P<level>" + _LEVEL + r") +\[(?P<thread>[^\]]*)\] +(?P<component>[^\s:]+?) ?: (?P<message>.*)",
        "log4j/logback '%d %p [%t] %c: %m' (Hadoop, Spring Boot without pid): TIME LEVEL [THREAD] LOGGER: MSG",
        "2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: Created MRAppMaster",
    ),
    _f(
        "logback_spring",
        r"(?P<time>" + _ISO + r") +(?P<level>" + _LEVEL + r") +(?P<pid>\d+) --- \[ *(?P<thread>[^\]]*)\] +(?P<component>\S+) +: (?P<message>.*)",
        "Spring Boot's logback default: TIME LEVEL PID --- [THREAD] LOGGER : MSG",
        "2026-11-27 10:00:01.003  INFO 4121 --- [           main] c.a.plant.GatewayApplication             : Started in 3.2 s",
    ),
    _f(
        "python_logging",
        r"(?P<time>" + _ISO + r") +(?:-\s+)?(?P<component>[\w.$-]+) +- +(?P<level>" + _LEVEL + r") +- +(?P<message>.*)",
        "Python logging '%(asctime)s - %(name)s - %(levelname)s - %(message)s'",
        "2026-11-27 10:00:01,003 - modbus.poller - WARNING - register 40001 read timeout after 2.0 s",
    ),
    _f(
        "iso_level_logger",
        r"(?P<time>" + _ISO + r") +\[?(?P<level>" + _LEVEL + r")\]? +(?P<component>[\w.$/-]+(?:\[(?P<pid>\d+)\])?) ?: (?P<message>.*)",
        "ISO time, level and a logger then a colon (log4j '%d %p %c: %m', Python '%(asctime)s %(levelname)s %(name)s: %(message)s')",
        "2026-11-27 10:00:01,003 ERROR spindle.drive: overtemp 91C",
    ),
    _f(
        "short_level_logger",
        r"(?P<time>\d{2,4}[/-]?\d{2}[/-]?\d{2} \d{2}:?\d{2}:?\d{2}(?:[.,]\d+)?)(?: (?P<pid>\d+))? (?P<level>" + _LEVEL
        + r") (?P<component>[^\s:]+): (?P<message>.*)",
        "log4j with a compact date (yy/MM/dd HH:mm:ss or yyMMdd HHmmss), optional pid, LEVEL LOGGER: MSG (Spark, HDFS)",
        "17/06/09 20:10:40 INFO spark.SecurityManager: Changing view acls to: yarn,curi",
    ),
    _f(
        "windows_cbs",
        r"(?P<time>" + _ISO + r"), (?P<level>" + _LEVEL + r") +(?P<component>\S+)? +(?P<message>.*)",
        "Windows servicing logs (CBS.log, DISM.log): TIME, Level  COMPONENT  MSG",
        "2016-09-28 04:30:30, Info                  CBS    Loaded Servicing Stack v6.1.7601.23505",
    ),
    _f(
        "windows_event_csv",
        r"(?P<level>Information|Warning|Error|Critical|Verbose),(?P<time>\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2}(?: [AP]M)?),"
        r"(?P<component>[^,]+),(?P<eventid>\d+),[^,]*,(?P<message>.*)",
        "Windows Event Viewer 'Save as CSV': Level,Date and Time,Source,Event ID,Task Category,Message",
        "Error,11/27/2026 10:00:01 AM,Service Control Manager,7034,None,The OPC Server service terminated unexpectedly.",
    ),
    _f(
        "apache_error",
        r"\[(?P<time>(?:" + _DOW + r" )?" + _MON + r" \d{1,2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4})\] \[(?:(?P<component>[\w-]+):)?(?P<level>\w+)\]"
        r"(?: \[pid (?P<pid>\d+)(?::tid \d+)?\])?(?: \[client [^\]]+\])? (?P<message>.*)",
        "Apache httpd error log: [DOW MMM DD TIME YYYY] [module:level] [pid N] MSG",
        "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
    ),
    _f(
        "nginx_error",
        r"(?P<time>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[(?P<level>\w+)\] (?P<pid>\d+)#\d+: (?:\*\d+ )?(?P<message>.*)",
        "nginx error log: YYYY/MM/DD TIME [level] PID#TID: *CID MSG",
        "2026/11/27 10:00:01 [error] 4121#4121: *7 connect() failed (111: Connection refused) while connecting to upstream",
    ),
    _f(
        "node_event_log",
        r"(?P<logid>\d+) (?P<host>\S+) (?P<component>\S+) (?P<event>\S+) (?P<time>\d{9,11}) (?P<flag>-?\d+) (?P<message>.*)",
        "a cluster node event log: ID NODE COMPONENT STATE EPOCH (the time) FLAG MSG",
        "134681 node-246 unix.hw state_change.unavailable 1077804742 1 Component State Change: Component alt0 is unavailable",
    ),
    _f(
        "iso_level",
        r"\[?(?P<time>" + _ISO + r")\]? +\[?(?P<level>" + _LEVEL + r")\]?:? +(?P<message>.*)",
        "an ISO-8601 timestamp and a level, then the message (many gateways and PLC runtimes)",
        "2026-11-27 10:00:01 ERROR spindle 2 overtemp 91C",
    ),
    _f(
        "bracket_level",
        r"\[(?P<time>[^\]]{8,40})\] *\[?(?P<level>" + _LEVEL + r")\]?:? +(?:\[(?P<component>[^\]]+)\] +)?(?P<message>.*)",
        "[TIME] LEVEL [COMPONENT] MSG (CODESYS and other PLC/CNC runtimes, many embedded loggers)",
        "[2026-11-27 10:00:01.003] [WARN] [EtherCAT] slave 3 working counter mismatch",
    ),
    _f(
        "iso_time",
        r"\[?(?P<time>" + _ISO + r")\]?:? +(?P<message>.*)",
        "an ISO-8601 timestamp, then the message (no level)",
        "2026-11-27T10:00:01Z door 2 opened",
    ),
]

BY_NAME: dict[str, LogFormat] = {f.name: f for f in FORMATS}
