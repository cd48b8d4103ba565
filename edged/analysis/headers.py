"""The header parser the daemon and ``edged templates`` use, built from the [logs] and [mqtt] settings."""

from __future__ import annotations

from edged.config.settings import LogsSettings, MqttSettings
from edged.logformats import HeaderParser


def header_parser(logs: LogsSettings, mqtt: MqttSettings, override: str | None = None) -> HeaderParser:
    """``override``: one format (name, regex or auto) for every stream, as ``edged templates --format``."""
    if override is not None:
        return HeaderParser(default=override)
    # A source's records carry "file:PATH" or "mqtt:TOPIC"; each side has its own default.
    parser = HeaderParser(default=logs.format, file_rules=list(logs.formats.items()), topic_rules=list(mqtt.formats.items()))
    if mqtt.format != logs.format:
        parser.topic_rules.append(("#", mqtt.format))
    return parser
