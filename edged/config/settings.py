"""The settings model: every key edged understands, its default and its meaning.

Public names (scripts and the Ansible role rely on them): ``[store] path``, ``[logs] paths``,
``[mqtt] url``, ``[mqtt] topics``, ``[mqtt] client_id``. ``deploy/edged.example.toml`` documents
every key and a test keeps it in step with this file.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Literal
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from edged.backends import DEFAULT_BACKEND, BackendConfig, default_config
from edged.models.resolve import ModelSettings
from edged.logformats import resolve_spec
from edged.config.broker_url import parse_broker_url
from edged.config.rules import cross_section_problems

CROSS_SECTION_ERROR = "cross_section"  # the error type of Settings' own validator (see load._format_errors)


def state_dir() -> Path:
    """Where state lives: systemd's StateDirectory when run as a service, else ./var."""
    return Path(os.environ.get("STATE_DIRECTORY", "var").split(":")[0])


def _check_regex(value: str | None) -> str | None:
    if value:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


def _check_format(value: str) -> str:
    resolve_spec(value)  # ValueError says why (not a format name, no 'message' group, does not compile)
    return value


def _check_formats(value: dict[str, str]) -> dict[str, str]:
    for key, spec in value.items():
        try:
            resolve_spec(spec)
        except ValueError as exc:
            raise ValueError(f"{key!r}: {exc}") from None
    return value


_FORMAT_HELP = (
    "header format of lines: 'auto' (per file or topic, the format that parses most of its first lines), a"
    " format name (edged templates --list-formats) or a regex with named groups time, level, host, component,"
    " pid and message"
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class StoreSettings(Section):
    path: Path = Field(default_factory=lambda: state_dir() / "edged.db", description="SQLite database file")
    batch_max_rows: int = Field(20_000, ge=1, description="most rows committed in one transaction")
    queue_max_rows: int = Field(
        100_000, ge=1000, description="rows waiting for the writer before sources are made to wait"
    )
    max_bytes: int = Field(
        2_000_000_000,
        ge=0,
        description="database size cap in bytes (pages in use + write-ahead log); above it the oldest results"
        " are evicted (see edged.store.retention); 0 = no cap",
    )
    high_water: int = Field(
        200_000, ge=1, description="unanalyzed + unsent rows above which the sources pause reading"
    )
    low_water: int = Field(150_000, ge=0, description="paused sources resume below this many unanalyzed + unsent rows")
    check_interval_s: float = Field(2.0, gt=0, description="how often the size cap and the backlog are checked")

    @field_validator("max_bytes")
    @classmethod
    def _cap_not_tiny(cls, value: int) -> int:
        if 0 < value < 1 << 20:  # a smaller cap would hold little more than the schema
            raise ValueError("must be 0 (no cap) or at least 1048576 bytes (1 MiB)")
        return value

    @field_validator("low_water")
    @classmethod
    def _low_below_high(cls, value: int, info: ValidationInfo) -> int:
        high = info.data.get("high_water")
        if high is not None and value >= high:
            raise ValueError(f"must be less than high_water ({high})")
        return value


class LogsSettings(Section):
    paths: list[str] = Field(
        default_factory=lambda: [str(state_dir() / "logs" / "*.log")],
        description="glob patterns of log files to follow; '**' recurses into subdirectories",
    )
    start_at: Literal["beginning", "end"] = Field(
        "beginning",
        description="where to start in files found on the very first start; later files always start at the beginning",
    )
    multiline_start: str | None = Field(
        None, description="regex that matches the first line of a record; other lines join the record before them"
    )
    multiline_timeout_s: float = Field(2.0, gt=0, description="a pending multiline record is stored after this quiet time")
    partial_line_timeout_s: float = Field(
        5.0, gt=0, description="a last line without newline is stored after this quiet time"
    )
    max_line_bytes: int = Field(65_536, ge=256, description="longer records are truncated and flagged")
    rescan_interval_s: float = Field(10.0, gt=0, description="safety-net rescan of the globs and files")
    follow_rotated: bool = Field(
        True,
        description="also read rotated names of matched files (app.log.1, app.log-20261127), so files"
        " rotated away while edged was down are not missed; compressed ones are ignored",
    )
    rotate_wait_s: float = Field(5.0, ge=0, description="how long a rotated-away file is watched for late writes")
    read_chunk_bytes: int = Field(1 << 20, ge=4096, description="bytes read from a file at a time")
    machine_pattern: str = Field(
        r"(?P<machine>[^/]+?)(?:\.log)?$",
        description="regex searched in the file path; its group 'machine' names the machine",
    )

    format: str = Field("auto", description=_FORMAT_HELP)
    formats: dict[str, str] = Field(
        default_factory=dict,
        description="header format per glob (matched against the path or the file name), overriding format",
    )
    timezone: str = Field(
        "local",
        description="time zone of log timestamps that carry none: local (the box's zone), UTC, or an IANA name"
        " such as Europe/Berlin",
    )

    _regexes = field_validator("multiline_start", "machine_pattern")(_check_regex)
    _format = field_validator("format")(_check_format)
    _formats = field_validator("formats")(_check_formats)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value == "local" or value.upper() == "UTC":
            return value
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use local, UTC or an IANA name such as Europe/Berlin") from None
        return value


class BrokerSettings(Section):
    """How to reach an MQTT broker; shared by the ingest side ([mqtt]) and the upstream side ([upstream])."""

    url: str | None = Field(None, description="broker, mqtt://[user@]host[:port] or mqtts://...; unset = off")
    password: SecretStr | None = Field(None, description="broker password (prefer password_file)")
    password_file: Path | None = Field(
        None, description="file holding the password; default: the systemd credential mqtt_password ([mqtt]) or upstream_password ([upstream]) when present"
    )
    client_id: str = Field(
        default_factory=lambda: f"edged-{socket.gethostname()}",
        description="fixed client id: the broker keeps the session (and queued messages) under it",
    )
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive")
    reconnect_min_s: float = Field(1.0, gt=0, description="first reconnect delay; doubles up to reconnect_max_s")
    reconnect_max_s: float = Field(60.0, gt=0, description="longest reconnect delay (with +-20% jitter)")
    ca_file: Path | None = Field(None, description="CA bundle for mqtts:// (default: system CAs)")
    cert_file: Path | None = Field(None, description="client certificate for mqtts://")
    key_file: Path | None = Field(None, description="client key for mqtts://")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parse_broker_url(value)  # the parser the connections use: what validates here, connects there
        return value


class MqttSettings(BrokerSettings):
    """The ingest broker: where machines publish log lines and incident reports."""

    topics: list[str] = Field(
        default_factory=lambda: ["factory/+/logs", "factory/+/incidents"],
        description="subscriptions (QoS below)",
    )
    incident_topics: list[str] = Field(
        default_factory=lambda: ["factory/+/incidents"],
        description="messages on topics matching these filters are incident reports, unless the payload says its kind",
    )
    machine_pattern: str = Field(
        r"^[^/]+/(?P<machine>[^/]+)/",
        description="regex searched in the topic; its group 'machine' names the machine for plain-text payloads",
    )
    qos: Literal[0, 1] = Field(1, description="subscription QoS; 1 = nothing lost while edged is down")
    max_payload_bytes: int = Field(65_536, ge=256, description="longer texts are truncated and flagged")
    format: str = Field("auto", description=_FORMAT_HELP.replace("lines", "plain-text payloads", 1))
    formats: dict[str, str] = Field(
        default_factory=dict, description="header format per topic filter (+ and # allowed), overriding format"
    )

    _regexes = field_validator("machine_pattern")(_check_regex)
    _format = field_validator("format")(_check_format)
    _formats = field_validator("formats")(_check_formats)


class UpstreamSettings(BrokerSettings):
    """The upstream broker results are published to (may be the same broker as [mqtt])."""

    client_id: str = Field(
        default_factory=lambda: f"edged-{socket.gethostname()}-up",
        description="client id of the publishing connection (must differ from [mqtt] client_id)",
    )
    prefix: str = Field("edged", description="first topic level of everything edged publishes")
    site: str = Field("site", description="the plant or site this box belongs to (a topic level)")
    node: str = Field(default_factory=socket.gethostname, description="this box's name (a topic level)")
    topic: str = Field(
        "{prefix}/{site}/{node}/results/{kind}",
        description="topic of a result; {kind} is log, incident or digest",
    )
    inflight: int = Field(20, ge=1, le=1000, description="results published and not yet acknowledged at most")
    birth: bool = Field(True, description="retained {prefix}/{site}/{node}/status online, last will offline")
    sent_ttl_s: float = Field(7 * 86400.0, gt=0, description="results acknowledged upstream are deleted after this")
    escalation: bool = Field(
        False, description="also publish results flagged for review to escalation_topic, and take refined results back"
    )
    escalation_topic: str = Field(
        "{prefix}/{site}/{node}/escalation", description="topic results flagged for review are escalated to"
    )
    response_topic: str = Field(
        "{prefix}/{site}/{node}/escalation/response",
        description="topic edged subscribes to for refined results (replies with the escalation's correlation_id)",
    )
    response_client_id: str | None = Field(
        None,
        description="client id of the persistent session that receives the replies (the broker keeps them while"
        " the box is offline); unset = client_id + \"-replies\"",
    )

    @field_validator("prefix", "site", "node")
    @classmethod
    def _topic_level(cls, value: str) -> str:
        if not value or any(c in value for c in "/+#\0"):
            raise ValueError("must be one non-empty topic level without / + #")
        return value


DEFAULT_LABELS = ["normal", "warning", "fault", "safety", "security"]
DEFAULT_EXTRACT_FIELDS = {
    "machine": "string",
    "component": "string",
    "error_code": "string",
    "value": "number",
    "unit": "string",
    "event_time": "string",
    "level": "string",
}


# A record's own level, as its source wrote it, is evidence of its label: "label severity" per level.
# Spellings such as WARNING, ERR, SEVERE, syslog/journald numbers or Android's single letters are
# read as these names (edged.analysis.evidence); a key written here as the source spells it wins.
DEFAULT_LEVELS = {
    "EMERG": "fault 4",
    "ALERT": "fault 4",
    "CRIT": "fault 4",
    "FATAL": "fault 4",
    "ERROR": "fault 3",
    "WARN": "warning 2",
    "NOTICE": "normal 0",
    "INFO": "normal 0",
    "DEBUG": "normal 0",
}
# Words that mark a label whatever the level says (whole words, any case, a plural s allowed).
DEFAULT_LEXICON = {
    "safety": ["e-stop", "estop", "emergency stop", "guard", "light curtain", "fire", "injury", "injured"],
    "security": ["login", "password", "denied", "certificate"],
}


def parse_level_rule(value: str) -> tuple[str, int]:
    """``"fault 4"`` -> ("fault", 4)."""
    parts = value.split()
    if len(parts) != 2 or not parts[1].isdigit() or not 0 <= int(parts[1]) <= 5:
        raise ValueError(f"{value!r} must be a label and a severity 0 to 5, e.g. \"fault 4\"")
    return parts[0], int(parts[1])


class AnalysisSettings(Section):
    enabled: bool = Field(True, description="analyze ingested records with the model")
    labels: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LABELS), min_length=2, description="the classification taxonomy"
    )
    extract_fields: dict[str, Literal["string", "number", "integer"]] = Field(
        default_factory=lambda: dict(DEFAULT_EXTRACT_FIELDS),
        description="fields extracted from each record, with their JSON type",
    )
    patterns: dict[str, list[str]] = Field(
        default_factory=dict,
        description="regexes that read a field from the text without the model, per field, tried in order; a"
        " field listed here replaces its built-in patterns (value, error_code, level; [] switches them off);"
        " a group named like the field (or 'code') is the value, else the whole match; 'unit' goes with value",
    )
    max_string_chars: int = Field(
        48, ge=8, le=512, description="longest extracted string; small models loop on unbounded strings"
    )
    cut_ungrounded_values: bool = Field(
        False,
        description="the backend writes null for an extracted string as soon as it stops occurring in the text"
        " (llama_cpp): fewer tokens, but the fields after it may come out differently",
    )
    summary_max_chars: int = Field(240, ge=40, le=2000, description="longest summary")
    confidence_threshold: float = Field(
        0.5, ge=0, le=1, description="results less confident than this are flagged for review"
    )
    max_attempts: int = Field(3, ge=1, description="model failures before a record is parked with its error")
    lease_s: float = Field(120.0, gt=0, description="a claimed record returns to the queue after this")
    batch_size: int = Field(16, ge=1, description="records claimed at a time")
    digest_interval_s: float = Field(
        3600.0, ge=0, description="summarize each source's recent log lines this often; 0 = never"
    )
    stuck_after_s: float = Field(
        300.0,
        gt=0,
        description="under systemd, the watchdog ping is withheld (and edged restarted) when the analyzer has"
        " been on one batch for longer than this; keep it above the time batch_size records take",
    )

    levels: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_LEVELS),
        description="a record's level -> \"label severity\": the label the level alone gives, without the model",
    )
    lexicon: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_LEXICON.items()},
        description="label -> words that mark it (whole words, any case)",
    )
    dump_lines: bool = Field(
        True,
        description="a line of a register or flag dump (a name and a hex value or a 0/1 flag only, e.g."
        " 'instruction address: 0x00004ed8') is labelled normal, severity 0, whatever its level says: it describes"
        " a crash another line reports (edged.analysis.dump_lines); false = its level decides",
    )

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, regexes in value.items():
            for regex in regexes:
                try:
                    re.compile(regex)
                except re.error as exc:
                    raise ValueError(f"{name}: {regex!r} is not a valid regular expression: {exc}") from None
        return value

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value) or not all(v.strip() for v in value):
            raise ValueError("labels must be unique and non-empty")
        return value

    @field_validator("levels")
    @classmethod
    def _level_rules(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        # The built-in table serves the built-in labels: with another taxonomy its entries whose label
        # is not in it are left out (edged.analysis.evidence). A table someone wrote must fit the taxonomy.
        explicit = value != DEFAULT_LEVELS
        labels = info.data.get("labels") or []
        out = {}
        for level, rule in value.items():
            label, _ = parse_level_rule(rule)
            if explicit and label not in labels:
                raise ValueError(f"{level} = {rule!r}: label {label!r} is not in [analysis] labels ({', '.join(labels)})")
            out[level.strip().upper()] = rule
        return out

    @field_validator("lexicon")
    @classmethod
    def _lexicon_labels(cls, value: dict[str, list[str]], info: ValidationInfo) -> dict[str, list[str]]:
        labels = info.data.get("labels") or []
        if value != DEFAULT_LEXICON:
            for label, words in value.items():
                if label not in labels:
                    raise ValueError(f"{label}: not a label in [analysis] labels ({', '.join(labels)})")
                if not all(w.strip() for w in words):
                    raise ValueError(f"{label}: words must be non-empty")
        return value


class TriageSettings(Section):
    """The triage classifier and example retrieval, learned from labels in the store (edged.triage)."""

    enabled: bool = Field(True, description="route classifications through the triage classifier when one is trained")
    confidence_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="a triage label at least this probable is the result; below it the record is unsure (see"
        " route_unsure). Unset = chosen per trained version from its held-out labels (0.8 where not measured)",
    )
    route_unsure: Literal["measured", "model", "guess"] = Field(
        "measured",
        description="who decides an unsure record: measured = the language model where, on the version's held-out"
        " labels, it beat the classifier's guess, else the guess (flagged for review); model = always the"
        " model; guess = always the classifier's guess, flagged for review",
    )
    routing_sample: int = Field(
        200,
        ge=0,
        description="most held-out labels the language model is asked about to measure a new version's"
        " routing (the least sure first); 0 = never measured (unsure records keep the guess)",
    )
    examples: int = Field(
        8, ge=0, le=32, description="most similar labeled examples put into the model's prompt; 0 = none"
    )
    candidates: int = Field(
        3,
        ge=0,
        description="when the classifier is unsure, the model chooses among its this many most probable labels"
        " (a small model does far better choosing among a few); 0 = among the whole taxonomy",
    )
    min_labels: int = Field(30, ge=4, description="labels needed before a classifier is trained")
    retrain_after: int = Field(
        50, ge=0, description="new labels that start an automatic training; 0 = only edged learn trains"
    )
    heldout_percent: int = Field(
        20, ge=5, le=50, description="share of labels (by a hash of the text) kept out of training to score versions"
    )
    max_labels: int = Field(
        20_000,
        ge=10,
        description="newest distinct labeled texts used for training and retrieval (bounds memory: the example"
        " index holds ~1 KB per short text, more for long ones)",
    )
    hash_buckets: int = Field(16384, ge=256, le=1 << 20, description="feature buckets of the hashed n-grams")
    epochs: int = Field(30, ge=1, le=500, description="training passes over the labels")
    learn_from_model_confidence: float | None = Field(
        None,
        gt=0,
        le=1,
        description="also learn from language-model answers at least this confident; unset = never (a small"
        " model's confidence is a poor guide, and its mistakes would be learned)",
    )
    severities: dict[str, int] = Field(
        default_factory=lambda: {"normal": 0, "warning": 2, "fault": 4, "safety": 5, "security": 3},
        description="severity given with a triage label (the classifier learns labels only); labels not listed"
        " get no severity",
    )

    @field_validator("severities")
    @classmethod
    def _severity_range(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [k for k, v in value.items() if not 0 <= v <= 5]
        if bad:
            raise ValueError("severities must be 0 to 5; out of range: " + ", ".join(bad))
        return value


class TeacherSettings(BrokerSettings):
    """``edged teacher``: the central responder that answers the escalations of many boxes with a bigger
    model behind an OpenAI-compatible server (edged.teacher). ``edged run`` does not use this section."""

    client_id: str = Field(
        default_factory=lambda: f"edged-teacher-{socket.gethostname()}",
        description="client id of the teacher's persistent session (escalations queue under it while it is down)",
    )
    topics: list[str] = Field(
        default_factory=lambda: ["edged/+/+/escalation"],
        min_length=1,
        description="escalation topics of the boxes to answer (wildcards over site and node)",
    )
    answers_path: Path = Field(
        default_factory=lambda: state_dir() / "teacher.db",
        description="SQLite file of the answers given, by correlation id: a redelivered escalation gets the same"
        " reply again, without asking the model",
    )
    keep_answers_s: float = Field(30 * 86400.0, gt=0, description="answers are forgotten after this")
    model_url: str = Field(
        "http://127.0.0.1:8000/v1", description="base URL of the OpenAI-compatible server that answers"
    )
    model: str = Field("default", description="model id to ask the server for; \"default\": the first it lists")
    api_key_file: Path | None = Field(None, description="file holding a bearer token, if the server wants one")
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout")
    structured_output: Literal["auto", "json_schema", "json_object", "grammar"] = Field(
        "auto", description="how the output schema is sent (see [backend] structured_output of openai_http)"
    )
    max_attempts: int = Field(
        3, ge=1, description="model failures before an escalation is left unanswered (acknowledged, logged, counted)"
    )


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); an IPv6 address goes in brackets: ``[::1]:8080``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("must be host:port, e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise ValueError("an IPv6 address must be written in brackets, e.g. [::1]:8080")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address must be written in brackets, e.g. [::]:8080")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number from 0 to 65535")
    return host, int(port)


class WebSettings(Section):
    """The technician web page, its JSON API, /healthz and /metrics (see edged.web)."""

    enabled: bool = Field(True, description="serve the web page")
    listen: str = Field(
        "127.0.0.1:8080", description="host:port to listen on ([::1]:8080 for IPv6; 0.0.0.0:8080 = every interface)"
    )
    token: SecretStr | None = Field(None, description="token that allows changes (prefer token_file)")
    token_file: Path | None = Field(
        None,
        description="file holding the token; default: the systemd credential web_token when present, else"
        " web_token in the state directory, generated at first start",
    )
    refresh_s: float = Field(10.0, ge=0, description="seconds between refreshes of the overview; 0 = never")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("token")
    @classmethod
    def _token_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 12:
            raise ValueError("must be at least 12 characters")
        return value


class Settings(BaseSettings):
    """All of edged's configuration. Precedence: EDGED_* environment > TOML file > defaults."""

    model_config = SettingsConfigDict(
        env_prefix="EDGED_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    store: StoreSettings = Field(default_factory=StoreSettings)
    logs: LogsSettings = Field(default_factory=LogsSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    backend: BackendConfig = Field(default_factory=default_config)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    triage: TriageSettings = Field(default_factory=TriageSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)

    @model_validator(mode="after")
    def _cross_section_rules(self) -> "Settings":
        """Every rule that spans keys or sections (edged.config.rules), so that ``config check``
        refuses exactly what ``run`` would."""
        problems = cross_section_problems(self)
        if problems:
            text = "; ".join(f"[{section}] {key}: {message}" for (section, key), message in problems)
            raise PydanticCustomError(CROSS_SECTION_ERROR, "{text}", {"text": text, "problems": problems})
        return self

    @field_validator("backend", mode="before")
    @classmethod
    def _default_backend_type(cls, value: object) -> object:
        # [backend] with only tuning keys means the default backend, llama_cpp.
        if isinstance(value, dict) and "type" not in value:
            return {"type": DEFAULT_BACKEND, **value}
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init arguments; the environment must override it.
        return (env_settings, init_settings)
