"""Header regexes for the 12 Loghub systems and their true time, level and component columns.

Benchmark and test helper only, not product code: edged's own header parsing is what fills
``Claimed.header`` in the daemon. These regexes exist so that the extraction benchmark can feed
headers to the analysis path the way the daemon would, and each is written from the system's
documented line format (Loghub's structured CSVs name the same parts).

``TRUTH`` says which structured-CSV columns hold each field's true value. Left out where Loghub's
column is not that field: OpenSSH's "Component" is the host (LabSZ), Linux's "Level" the host
(combo); HPC, Linux, OpenSSH and Thunderbird have no level. Thunderbird's true time is its epoch
column (the instant; its "Nov 9 12:01:01" is local time without a year).
"""

from __future__ import annotations

import re

_T = r"\d{2}:\d{2}:\d{2}"
HEADERS: dict[str, re.Pattern] = {
    "Android": re.compile(rf"(?P<time>\d{{2}}-\d{{2}} {_T}\.\d{{3}})\s+(?P<pid>\d+)\s+\d+\s+(?P<level>[VDIWEFA])\s+"
                          r"(?P<component>.*?)\s*:\s?(?P<message>.*)"),
    "Apache": re.compile(r"\[(?P<time>[^\]]+)\] \[(?P<level>\w+)\] (?P<message>.*)"),
    "BGL": re.compile(r"\S+ \d+ \d{4}\.\d{2}\.\d{2} (?P<host>\S+) (?P<time>\S+) \S+ \S+ (?P<component>\S+)"
                      r" (?P<level>\S+) (?P<message>.*)"),
    "HDFS": re.compile(r"(?P<time>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\w+) (?P<component>[^:]+): (?P<message>.*)"),
    "HPC": re.compile(r"\d+ (?P<host>\S+) (?P<component>\S+) \S+ (?P<time>\d+) -?\d+ (?P<message>.*)"),
    "Hadoop": re.compile(rf"(?P<time>\d{{4}}-\d{{2}}-\d{{2}} {_T},\d{{3}}) (?P<level>\w+) \[(?P<pid>[^\]]*)\]"
                         r" (?P<component>[^:\s]+): (?P<message>.*)"),
    "Linux": re.compile(rf"(?P<time>\w{{3}}\s+\d+ {_T}) (?P<host>\S+) (?P<component>[^\[:]+?)(?:\[(?P<pid>\d+)\])?:"
                        r" ?(?P<message>.*)"),
    "OpenSSH": re.compile(rf"(?P<time>\w{{3}}\s+\d+ {_T}) (?P<host>\S+) (?P<component>[^\[:]+)\[(?P<pid>\d+)\]:"
                          r" (?P<message>.*)"),
    "Spark": re.compile(rf"(?P<time>\d{{2}}/\d{{2}}/\d{{2}} {_T}) (?P<level>\w+) (?P<component>[^:]+): (?P<message>.*)"),
    "Thunderbird": re.compile(rf"\S+ (?P<time>\d+) \d{{4}}\.\d{{2}}\.\d{{2}} (?P<host>\S+) \w{{3}}\s+\d+ {_T} \S+"
                              r" (?P<component>[^\[:]+?)(?:\[(?P<pid>\d+)\])?: ?(?P<message>.*)"),
    "Windows": re.compile(rf"(?P<time>\d{{4}}-\d{{2}}-\d{{2}} {_T}), (?P<level>\w+)\s+(?P<component>\S+)\s+(?P<message>.*)"),
    "Zookeeper": re.compile(rf"(?P<time>\d{{4}}-\d{{2}}-\d{{2}} {_T},\d{{3}}) - (?P<level>\w+)\s+\[[^:]*:"
                            r"(?P<component>.*)@(?P<pid>\d+)\] - (?P<message>.*)"),
}

TRUTH: dict[str, dict[str, str]] = {
    "Android": {"event_time": "Date+Time", "level": "Level", "component": "Component"},
    "Apache": {"event_time": "Time", "level": "Level"},
    "BGL": {"event_time": "Time", "level": "Level", "component": "Component"},
    "HDFS": {"event_time": "Date+Time", "level": "Level", "component": "Component"},
    "HPC": {"event_time": "Time", "component": "Component"},
    "Hadoop": {"event_time": "Date+Time", "level": "Level", "component": "Component"},
    "Linux": {"event_time": "Month+Date+Time", "component": "Component"},
    "OpenSSH": {"event_time": "Date+Day+Time"},
    "Spark": {"event_time": "Date+Time", "level": "Level", "component": "Component"},
    "Thunderbird": {"event_time": "Timestamp", "component": "Component"},
    "Windows": {"event_time": "Date+Time", "level": "Level", "component": "Component"},
    "Zookeeper": {"event_time": "Date+Time", "level": "Level", "component": "Component"},
}


def parser_for(system: str):
    """A ``text -> (header, message)`` function for one system: (None, None) when a line does not match."""
    rx = HEADERS[system]

    def parse(text: str):
        m = rx.fullmatch(text.rstrip("\n"))
        if m is None:
            return None, None
        header = {k: v.strip() for k, v in m.groupdict().items() if v is not None and k != "message"}
        header["format"] = system.lower()
        return header, m.group("message")

    return parse
