"""Which structured-CSV columns of the 12 Loghub systems hold each field's true value (a bench helper).

Left out where Loghub's column is not that field: OpenSSH's "Component" is the host (LabSZ), Linux's
"Level" the host (combo), Zookeeper's "Component" the tail of the thread name cut at its first "/"
("0:0:0:0:0:0:0:2181:FastLeaderElection" where the logger is FastLeaderElection); HPC, Linux, OpenSSH and Thunderbird have no level. Thunderbird's true time
is its epoch column (the instant; its "Nov 9 12:01:01" is local time without a year).
"""

from __future__ import annotations

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
    "Zookeeper": {"event_time": "Date+Time", "level": "Level"},
}
