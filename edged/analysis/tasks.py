"""The three tasks: their JSON schemas, their prompts, and reading their answers.

The system prompt of each task is built once from the settings and never changes while edged runs:
llama.cpp reuses the KV cache of a prefix shared by consecutive calls, so everything variable goes
into the user message, after the shared part. Bump PROMPT_VERSION when a prompt changes: cached
results are keyed by it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from edged.backends.base import Completion, CompletionRequest
from edged.backends.grammar import validate
from edged.config.settings import AnalysisSettings

# 4: a parsed line is classified from its level, component and message (pipeline.classified_text).
PROMPT_VERSION = "4"
CLASSIFY, EXTRACT, SUMMARIZE = "classify", "extract", "summarize"
TASKS = (CLASSIFY, EXTRACT, SUMMARIZE)
MAX_INPUT_CHARS = 1000  # what of a record the model sees: digits are one token each, and the
# system prompt plus the longest answer must still fit a 2048-token context

_JSON_TYPES = {"string": "string", "number": "number", "integer": "integer"}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    system: str
    schema: dict[str, Any]
    max_tokens: int


# What the default labels mean, and one example each. Only labels in the configured taxonomy are
# described and exemplified; a 135M model needs the examples far more than a longer instruction.
LABEL_HINTS = {
    "normal": "routine operation",
    "warning": "something to watch before it fails",
    "fault": "a machine, part or program failed or stopped",
    "safety": "danger to people: emergency stop, guard open, fire, injury",
    "security": "logins, access, attacks, certificates",
}
CLASSIFY_EXAMPLES = [
    ("cycle complete part 4411 in 32.1 s", "normal", 0),
    ("WARN coolant level low (18%)", "warning", 2),
    ("ERROR spindle 2 overtemp 91C, axis stopped", "fault", 4),
    ("E-STOP pressed at station 3, light curtain interrupted", "safety", 5),
    ("failed password for admin from 10.0.0.7 port 22", "security", 3),
]


def classify_spec(s: AnalysisSettings) -> TaskSpec:
    described = "; ".join(f"{label} ({LABEL_HINTS[label]})" if label in LABEL_HINTS else label for label in s.labels)
    examples = "".join(
        f'\n"{text}" -> {{"label": "{label}", "severity": {severity}}}'
        for text, label, severity in CLASSIFY_EXAMPLES
        if label in s.labels
    )
    system = (
        "You label log lines and incident reports from industrial machines (PLCs, CNC machines, robots, "
        f"gateways). Labels: {described}. "
        "Severity: 0 = routine, 1 = notice, 2 = minor, 3 = needs attention, 4 = stops production, 5 = danger to people."
        + (f"\nExamples:{examples}" if examples else "")
        + "\nAnswer only with JSON."
    )
    schema = {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": list(s.labels)},
            "severity": {"type": "integer", "minimum": 0, "maximum": 5},
        },
        "required": ["label", "severity"],
        "additionalProperties": False,
    }
    return TaskSpec(CLASSIFY, system, schema, max_tokens=32)


STRUCTURE_ONLY_FIELDS = ("event_time", "level")  # read from the header or patterns, never asked of the model


def model_fields(s: AnalysisSettings) -> list[str]:
    """The fields the model may be asked for (see edged.analysis.structured_fields)."""
    return [name for name in s.extract_fields if name not in STRUCTURE_ONLY_FIELDS]


def extract_spec(s: AnalysisSettings) -> TaskSpec:
    names = ", ".join(model_fields(s)) or "none"
    system = (
        "You extract fields from log lines and incident reports of industrial machines. "
        f"Fields: {names}. Copy each value exactly as it is written in the text; use null when a field is "
        "not in the text. Never make up a value. Answer only with JSON."
    )
    schema = extract_schema(s, model_fields(s))
    return TaskSpec(EXTRACT, system, schema, max_tokens=extract_budget(s, model_fields(s)))


def extract_schema(s: AnalysisSettings, names: list[str]) -> dict[str, Any]:
    """The extract schema for only ``names``: the fields structure left empty."""
    properties: dict[str, Any] = {}
    for name in names:
        kind = s.extract_fields[name]
        prop: dict[str, Any] = {"type": [_JSON_TYPES[kind], "null"]}
        if kind == "string":
            prop["maxLength"] = s.max_string_chars  # unbounded strings make small models loop
        properties[name] = prop
    return {"type": "object", "properties": properties, "required": list(names), "additionalProperties": False}


def extract_budget(s: AnalysisSettings, names: list[str]) -> int:
    # Room for every string at its longest (one token per character at worst), so the grammar,
    # not the token limit, ends the answer: a cut-off answer is not JSON.
    return 16 + sum(s.max_string_chars + 8 if s.extract_fields[n] == "string" else 16 for n in names)


def summarize_spec(s: AnalysisSettings) -> TaskSpec:
    system = (
        "You summarize incident reports and machine logs for a technician on the shop floor: "
        "what happened, where, and what to check, in one or two short sentences. Answer only with JSON."
    )
    schema = {
        "type": "object",
        "properties": {"summary": {"type": "string", "maxLength": s.summary_max_chars}},
        "required": ["summary"],
        "additionalProperties": False,
    }
    return TaskSpec(SUMMARIZE, system, schema, max_tokens=s.summary_max_chars + 24)


def build_specs(s: AnalysisSettings) -> dict[str, TaskSpec]:
    return {CLASSIFY: classify_spec(s), EXTRACT: extract_spec(s), SUMMARIZE: summarize_spec(s)}


EXAMPLE_CHARS = 160  # of each retrieved example in a prompt: eight of them must leave room for the text


def examples_block(examples: list[tuple[str, str]]) -> str:
    """Labeled texts like the one to classify, most similar last (nearest the text: small models
    weigh what they read last most)."""
    if not examples:
        return ""
    lines = "".join(f'\n"{text[:EXAMPLE_CHARS]}" -> {label}' for text, label in reversed(examples))
    return f"Labeled examples like this one:{lines}\n\n"


def request_for(
    spec: TaskSpec,
    text: str,
    *,
    machine: str | None = None,
    kind: str = "log",
    examples: list[tuple[str, str]] | None = None,
) -> CompletionRequest:
    """The request for one record. Examples go into the user message, after the system prompt,
    so the shared prefix (and llama.cpp's cache of it) stays the same for every call of the task."""
    head = {"incident": "Incident report", "digest": "Recent log lines, grouped"}.get(kind, "Log line")
    where = f" from machine {machine}" if machine else ""
    return CompletionRequest(
        system=spec.system,
        user=f"{examples_block(examples or [])}{head}{where}:\n{text[:MAX_INPUT_CHARS]}",
        schema=spec.schema,
        max_tokens=spec.max_tokens,
    )


def among(spec: TaskSpec, labels: list[str]) -> dict[str, Any]:
    """The classify schema with its label enum narrowed to ``labels`` (the system prompt, and so the
    cached prefix, stays the same: only the grammar changes)."""
    schema = json.loads(json.dumps(spec.schema))
    schema["properties"]["label"]["enum"] = list(labels)
    return schema


class InvalidAnswer(ValueError):
    """The model's text did not parse or does not fit the schema (a backend contract breach)."""


def parse_answer(spec: TaskSpec, completion: Completion, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The answer as a dict, checked against ``schema`` (the request's; default the task's)."""
    try:
        doc = json.loads(completion.text)
    except ValueError as exc:
        raise InvalidAnswer(f"{spec.name}: not JSON: {exc}: {completion.text[:200]!r}") from None
    if not isinstance(doc, dict):
        raise InvalidAnswer(f"{spec.name}: not a JSON object: {completion.text[:200]!r}")
    problems = schema_problems(schema or spec.schema, doc)
    if problems:
        raise InvalidAnswer(f"{spec.name}: {'; '.join(problems)}")
    return doc


def schema_problems(schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """What in ``doc`` breaks ``schema``: the validator the backends check their output with."""
    return validate(doc, schema)


def label_confidence(completion: Completion, label: str, labels: list[str]) -> float | None:
    """How sure the model was of ``label``, from the token probabilities where the label starts.

    The raw distribution at that position also holds tokens the grammar forbids, so it is
    renormalised over the taxonomy: each label gets the probability of the most likely alternative
    token that begins it, and the chosen label's share of their sum is its confidence. Without
    token probabilities (a backend that cannot give them) there is no confidence: None.
    """
    if not completion.tokens:
        return None
    needle = f'"{label}"'
    start = completion.text.find(needle)
    if start < 0:
        return None
    start += 1  # the first character of the label itself
    pos = 0
    for token in completion.tokens:
        end = pos + len(token.text)
        if end > start:
            break
        pos = end
    else:
        return None
    # The token may begin with the opening quote (or a space): what follows must start the label.
    offset = start - pos
    alternatives = dict(token.top_logprobs) or {token.text: token.logprob}
    alternatives.setdefault(token.text, token.logprob)
    scores: dict[str, float] = {}
    for alt, logprob in alternatives.items():
        piece = alt[offset:] if alt[:offset].strip(' "') == "" else ""
        if not piece:
            continue
        for candidate in labels:
            if candidate.startswith(piece) or piece.startswith(candidate):
                scores[candidate] = max(scores.get(candidate, 0.0), math.exp(logprob))
    if label not in scores:
        return None
    # A label none of whose first tokens made the top list had at most the smallest listed
    # probability: count it at that bound, so a short list cannot fake certainty.
    floor = math.exp(min(alternatives.values())) if len(alternatives) > 1 else 0.0
    total = sum(scores.values()) + floor * sum(1 for candidate in labels if candidate not in scores)
    if total <= 0:
        return None
    return round(scores[label] / total, 4)
