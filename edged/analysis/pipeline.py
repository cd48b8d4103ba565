"""Deciding, for a batch of claimed records, what the model must be asked and what caches answer.

- A log line's header is split off (edged.logformats) and only its message is mined into templates,
  keyed with the line's level and component. A template is classified and extracted once (on its
  first line); every later line of it reuses the classification, and takes the extracted values that
  came from the template's variable parts from its own parameters. Exact repeats of a line hit a cache.
- A template's answer is cached under its text, never its id alone, and a line whose constant words
  differ from every template's gets its own template and answer. The miner generalises a template
  only where its words proved to be parameters (edged.analysis.templates), so the answer computed for
  the earlier text moves to the new one (counted as carried); a new text without an earlier answer
  is answered afresh (a template refresh).
- Incident reports always go to the model: classify, extract and summarize.
- Classification is routed (edged.analysis.routing): a confident triage classifier, or the record's
  own level and words, decide without the model; otherwise the model is asked, shown similar labeled
  examples and choosing among the labels left, or the classifier's unsure guess stands for review.
- Fields come from structure first (edged.analysis.structured_fields: the log header, then
  documented patterns); the model is asked only for the fields structure left empty (no call when
  it filled them all), and a value it returns is kept only when it occurs in the text
  (edged.analysis.grounding; rejections are counted per field).
- A summary ends at its first repeated 4-word sequence, and one that names a number or code its
  report does not is generated once more, then kept flagged for review with the reason.
- Calls are grouped by task (all classifications, then all extractions, then summaries), so
  consecutive calls share their task's system prompt and llama.cpp reuses its KV cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from edged.analysis.tasks import (
    CLASSIFY,
    EXTRACT,
    PROMPT_VERSION,
    SUMMARIZE,
    InvalidAnswer,
    TaskSpec,
    among,
    build_specs,
    extract_budget,
    extract_schema,
    label_confidence,
    parse_answer,
    request_for,
)
from edged.analysis.grounding import grounded, may_become_grounded, plausible
from edged.analysis.structured_fields import MODEL, FieldReader, Structured
from edged.analysis.summary_check import REPEAT_NGRAM, RETRY_NOTE, check_summary, settle_failed
from edged.analysis.evidence import Evidence
from edged.analysis.routing import SLM, Subject, route
from edged.analysis.templates import Mined, TemplateStore
from edged.backends.base import Backend, BackendError
from edged.config.settings import AnalysisSettings
from edged.logformats import HeaderParser
from edged.store.inbox import Claimed, ResultRow
from edged.triage.retrieval import Example
from edged.triage.router import Router

log = logging.getLogger(__name__)


def _text_key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


@dataclass
class _Work:
    record: Claimed
    mined: Mined | None = None
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    confidence: float | None = None
    path: str = "model"
    calls: int = 0
    latency_s: float = 0.0
    error: str | None = None
    param_map: dict[str, int] = field(default_factory=dict)
    classified_by: str | None = None
    triage_version: int | None = None
    examples: list[Example] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    served_from: str | None = None  # the record whose answer a template cache hit reused
    structured: Structured = field(default_factory=Structured)
    model_fields: list[str] = field(default_factory=list)  # fields structure left for the model
    ungrounded: list[str] = field(default_factory=list)  # fields whose model value was not in the text
    review: list[str] = field(default_factory=list)  # why the result needs review, beyond confidence
    summary_events: list[str] = field(default_factory=list)  # cut, regenerated, failed_check
    routed_review: bool | None = None  # routing's say on needs_review (None: from the confidence)
    dump_line: bool = False  # a register or flag dump line (edged.analysis.dump_lines): its own template answers


@dataclass
class BatchOutcome:
    results: list[ResultRow]
    failures: list[tuple[str, str]]  # (record_id, error)
    cache_entries: dict[str, dict[str, Any]]  # new cache rows to store
    templates: dict[int, tuple[str, int]]  # template_id -> (template, lines seen in this batch)
    miner_state: bytes | None
    model_calls: int
    cache_hits: dict[str, int]
    records: dict[str, Claimed] = field(default_factory=dict)  # the claimed records, by record_id
    template_refreshes: int = 0  # templates answered afresh because their text changed
    template_carried: int = 0  # generalised templates that kept their earlier text's answer
    unparsed_lines: int = 0  # log lines no header format parsed (mined whole)
    template_keys: dict[int, tuple[str | None, str | None]] = field(default_factory=dict)  # id -> (level, component)
    served_from: dict[str, str] = field(default_factory=dict)  # record_id -> record whose answer it reused
    ungrounded: dict[str, int] = field(default_factory=dict)  # field -> model values rejected as not in the text
    summaries: dict[str, int] = field(default_factory=dict)  # cut, regenerated, failed_check -> summaries
    format_state: dict[str, dict] | None = None  # header format detection per source, when it moved
    retired_cache_keys: list[str] = field(default_factory=list)  # answers of template texts no template has now


class Interrupted(Exception):
    """edged is stopping: the batch is abandoned and its records released, not stored."""


class ResultCache:
    """Template and exact-text results: memory in front of the analysis_cache table."""

    def __init__(self, load: Any) -> None:
        self._load = load  # callable(key) -> dict | None, reading the store
        self._memory: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        value = self._memory.get(key)
        if value is None:
            value = self._load(key)
            if value is None:
                return None
            self._memory[key] = value
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._memory[key] = value

    def discard(self, key: str) -> None:
        """Drop an entry whose template text is gone (the store deletes its row in the batch's transaction)."""
        self._memory.pop(key, None)

    def forget(self) -> None:
        """Drop what memory holds, because the store changed under it (a teacher refined a cached
        answer); entries load again when next asked. Safe from another thread: one assignment."""
        self._memory = {}


class Pipeline:
    def __init__(
        self,
        settings: AnalysisSettings,
        backend: Backend,
        templates: TemplateStore,
        cache: ResultCache,
        router: Router | None = None,
        *,
        headers: HeaderParser | None = None,
        timezone: str = "local",
        tasks: tuple[str, ...] = (CLASSIFY, EXTRACT, SUMMARIZE),
        evidence: Evidence | None = None,
        severities: dict[str, int] | None = None,
    ):
        self.settings = settings
        self.headers = headers if headers is not None else HeaderParser()
        self.tasks = tasks  # what this pipeline asks the model (edged eval --task extract: only extract)
        self.reader = FieldReader(settings.extract_fields, settings.patterns, timezone)
        self.router = router
        self.evidence = evidence or Evidence(settings)
        self.severities = severities or {}  # of a label the lexicon gave
        self.backend = backend
        self.templates = templates
        self.cache = cache
        self.specs: dict[str, TaskSpec] = build_specs(settings)
        model_id = f"{backend.name}:{backend.model_name}:{backend.model_sha256 or ''}"
        self._cache_scope = hashlib.blake2b(
            f"{model_id}:{PROMPT_VERSION}:{_answer_settings(settings)}".encode(), digest_size=6
        ).hexdigest()

    # -- cache keys: a cached answer belongs to one model and one prompt version ---------------
    def _template_key(self, mined: Mined, template: str | None = None, dump_line: bool = False) -> str:
        text = f"{mined.level or ''}\0{mined.component or ''}\0{mined.template if template is None else template}"
        # A dump line's answer depends on its value's shape ("temp: <*>" holds 0x005F and 95C alike), so
        # dump lines and other lines of one template never share an answer.
        if dump_line:
            text += "\0dump"
        return f"tpl:{self._cache_scope}:{_text_key(text)}"

    def _carried_over(self, mined: Mined, tkey: str, first_of_template: dict[str, "_Work"],
                      new_cache: dict[str, dict[str, Any]], dump_line: bool = False) -> bool:
        """Move the answer of a generalised template's earlier text to its new text (True when there was one).

        The words that became variable were shown to be parameters (edged.analysis.templates), so the
        answer computed for the earlier text stays right for the new one and no refresh is asked."""
        for text in mined.previous:
            pkey = self._template_key(mined, text, dump_line)
            if pkey in first_of_template:  # answered in this batch: the new text takes the same answer
                first_of_template[tkey] = first_of_template[pkey]
                return True
            entry = self.cache.get(pkey)
            if entry is not None:
                moved = {**entry, "template": mined.template}
                new_cache[tkey] = moved
                self.cache.put(tkey, moved)
                return True
        return False

    def _with_header(self, record: Claimed) -> Claimed:
        """The record with its header fields and message (parsed here unless a source already did).

        A JSON MQTT payload's own header keys (level, component, ts ...) travel in its origin; they
        win over what the text's format parses, and the text is still split when it has a header."""
        if record.header is not None or record.message is not None:
            return record
        given = _given_header(record.origin)
        parsed = self.headers.parse(record.source, record.text)
        if given is None:
            if parsed.unparsed:
                return record
            return dataclasses.replace(record, header=parsed.header, message=parsed.message)
        if parsed.unparsed:
            return dataclasses.replace(record, header=given, message=record.text)
        return dataclasses.replace(record, header={**parsed.header, **given}, message=parsed.message)

    def _exact_key(self, text: str) -> str:
        return f"txt:{self._cache_scope}:{_text_key(text)}"

    # -- the batch -------------------------------------------------------------------------------
    def analyze(self, records: list[Claimed], should_stop: Any = lambda: False) -> BatchOutcome:
        works = [_Work(r) for r in records]
        new_cache: dict[str, dict[str, Any]] = {}
        templates: dict[int, tuple[str, int]] = {}
        hits = {"exact": 0, "template": 0}
        model_calls = refreshes = carried = unparsed = 0
        template_keys: dict[int, tuple[str | None, str | None]] = {}
        # 1. Caches and templates decide who needs the model, and for which tasks.
        needs: dict[str, list[_Work]] = {CLASSIFY: [], EXTRACT: [], SUMMARIZE: []}
        first_of_template: dict[str, _Work] = {}  # template cache key -> the line answered for it
        retired: set[str] = set()  # cache keys of template texts the miner no longer has
        text_of: dict[str, str] = {}  # template cache key -> its text (a carried answer's line had another)
        for w in works:
            if w.record.kind != "incident":
                w.record = self._with_header(w.record)
            self._read_structure(w)
            if w.record.kind == "incident":
                needs[CLASSIFY].append(w)
                if w.model_fields:
                    needs[EXTRACT].append(w)
                needs[SUMMARIZE].append(w)
                continue
            header = w.record.header or {}
            unparsed += w.record.header is None
            message = w.record.message if w.record.message is not None else w.record.text
            w.mined = self.templates.mine(message, header.get("level"), header.get("component"))
            w.dump_line = self.evidence.is_dump_line(message)
            tid, tkey = w.mined.template_id, self._template_key(w.mined, dump_line=w.dump_line)
            text_of[tkey] = w.mined.template
            # A retired text's answers go under both keys: its dump lines' and its other lines'.
            retired.update(self._template_key(w.mined, text, dump_line=dump)
                           for text in w.mined.retired for dump in (False, True))
            _, lines = templates.get(tid, ("", 0))
            templates[tid] = (w.mined.template, lines + 1)
            template_keys[tid] = (w.mined.level, w.mined.component)
            exact = self.cache.get(self._exact_key(w.record.text))
            if exact is not None:
                w.answers, w.confidence, w.path = exact["answers"], exact.get("confidence"), "exact_cache"
                w.classified_by, w.triage_version = exact.get("classified_by", SLM), exact.get("triage_version")
                w.routed_review = exact.get("review")
                hits["exact"] += 1
                continue
            cached = self.cache.get(tkey)
            if cached is None and w.mined.previous and tkey not in first_of_template:
                if self._carried_over(w.mined, tkey, first_of_template, new_cache, w.dump_line):
                    carried += 1
                    cached = self.cache.get(tkey)
            if cached is not None:
                self._from_template(w, cached)
                hits["template"] += 1
            elif tkey in first_of_template:
                w.path = "template_cache"  # a second line of a template new in this batch: filled below
                hits["template"] += 1
            else:
                refreshes += w.mined.generalised
                first_of_template[tkey] = w
                needs[CLASSIFY].append(w)
                if w.model_fields:
                    needs[EXTRACT].append(w)
        # 2. Routing takes the classifications the classifier or the evidence decide; the rest get examples.
        needs = {task: (ws if task in self.tasks else []) for task, ws in needs.items()}
        if needs[CLASSIFY]:
            self._route(needs)
        # 3. The model, one task at a time.
        for task in (CLASSIFY, EXTRACT, SUMMARIZE):
            for w in needs[task]:
                if should_stop():
                    raise Interrupted()
                if w.error is None:
                    model_calls += self._ask(w, task)
        # 4. New templates' answers serve their later lines in the batch, and the cache.
        for tkey, w in first_of_template.items():
            if w.error is not None:
                continue
            entry = {
                "template": text_of.get(tkey),
                "from": w.record.record_id,  # the line this answer was computed for
                "answers": w.answers,
                "confidence": w.confidence,
                "params": w.mined.params if w.mined else [],
                "param_map": _param_map(w.answers.get(EXTRACT, {}), w.mined.params if w.mined else []),
                "classified_by": w.classified_by,
                "triage_version": w.triage_version,
                "review": w.routed_review,
            }
            new_cache[tkey] = entry
            self.cache.put(tkey, entry)
        for w in works:
            if w.path == "template_cache" and not w.answers and w.mined is not None:
                first = first_of_template[self._template_key(w.mined, dump_line=w.dump_line)]
                if first.error is not None:
                    w.error = first.error
                else:
                    self._from_template(w, new_cache[self._template_key(w.mined, dump_line=w.dump_line)])
            if w.path == "model" and w.record.kind == "log" and w.error is None:
                key = self._exact_key(w.record.text)
                entry = {"from": w.record.record_id, "answers": w.answers, "confidence": w.confidence,
                         "classified_by": w.classified_by, "triage_version": w.triage_version,
                         "review": w.routed_review}
                new_cache[key] = entry
                self.cache.put(key, entry)
        # The answers of texts no template has now (carried to the new text, or a merged sibling's)
        # would never be asked for again: they leave memory here and the table in this batch's transaction.
        for key in retired:
            new_cache.pop(key, None)
            self.cache.discard(key)
        results, failures = [], []
        ungrounded: dict[str, int] = {}
        summaries: dict[str, int] = {}
        for w in works:
            for name in w.ungrounded:
                ungrounded[name] = ungrounded.get(name, 0) + 1
            for event in w.summary_events:
                summaries[event] = summaries.get(event, 0) + 1
            if w.error is not None:
                failures.append((w.record.record_id, w.error))
            else:
                results.append(self._result(w))
        return BatchOutcome(
            results=results,
            failures=failures,
            cache_entries=new_cache,
            templates=templates,
            miner_state=self.templates.state_if_changed(),
            format_state=self.headers.state_if_changed(),
            model_calls=model_calls,
            cache_hits=hits,
            records={w.record.record_id: w.record for w in works},
            template_refreshes=refreshes,
            template_carried=carried,
            unparsed_lines=unparsed,
            template_keys=template_keys,
            served_from={w.record.record_id: w.served_from for w in works if w.served_from},
            ungrounded=ungrounded,
            summaries=summaries,
            retired_cache_keys=sorted(retired),
        )

    def _route(self, needs: dict[str, list[_Work]]) -> None:
        subjects = [_subject(w.record) for w in needs[CLASSIFY]]
        ask = []
        for w, r in zip(needs[CLASSIFY], route(subjects, self.evidence, self.router, self.severities)):
            if r.label is not None:
                w.answers[CLASSIFY] = {"label": r.label, "severity": r.severity}
                w.confidence, w.classified_by, w.triage_version, w.routed_review = r.confidence, r.by, r.triage_version, r.review
            else:
                w.examples, w.candidates = r.examples, r.candidates
                ask.append(w)
        needs[CLASSIFY] = ask

    def _read_structure(self, w: _Work) -> None:
        r = w.record
        w.structured = self.reader.read(
            r.text, header=r.header, message=r.message,
            machine=r.machine, received_at=r.received_at,
        )
        w.model_fields = self.reader.for_model(w.structured.fields)

    def _ask(self, w: _Work, task: str, retry_note: str = "") -> int:
        spec = self.specs[task]
        examples = [(e.text, e.label) for e in w.examples] if task == CLASSIFY else None
        text = classified_text(w.record) if task == CLASSIFY else w.record.text
        request = request_for(spec, text, machine=w.record.machine, kind=w.record.kind, examples=examples)
        labels = self.settings.labels
        if task == CLASSIFY and w.candidates:
            request = dataclasses.replace(request, schema=among(spec, w.candidates))
            labels = w.candidates
        elif task == EXTRACT:
            # Only the fields structure left empty: a smaller grammar and fewer tokens to write; and
            # only the message after a parsed header (its time, host and level are taken already).
            if w.record.message:
                request = request_for(spec, w.record.message, machine=w.record.machine, kind=w.record.kind)
            request = dataclasses.replace(
                request, schema=extract_schema(self.settings, w.model_fields),
                max_tokens=extract_budget(self.settings, w.model_fields),
            )
            if self.settings.cut_ungrounded_values:
                # A value that stops occurring in the text while it is written would be dropped by
                # _ground: the backend may write null there at once (string_check) instead.
                text = w.record.text
                request = dataclasses.replace(request, string_check=lambda value: may_become_grounded(value, text))
        elif task == SUMMARIZE:
            request = dataclasses.replace(request, user=request.user + retry_note, stop_repeat_ngram=REPEAT_NGRAM)
        started = time.perf_counter()
        try:
            completion = self.backend.complete(request)
            answer = parse_answer(spec, completion, request.schema)
        except (BackendError, InvalidAnswer) as exc:
            w.error = f"{task}: {exc}"
            log.warning("record %s: %s", w.record.record_id, w.error)
            return 1
        except Exception as exc:  # a backend bug must cost one record an attempt, not the worker
            w.error = f"{task}: internal error: {exc!r}"
            log.exception("record %s: backend raised", w.record.record_id)
            return 1
        finally:
            w.latency_s += time.perf_counter() - started
        w.answers[task] = answer
        w.calls += 1
        if task == CLASSIFY:
            w.confidence = label_confidence(completion, answer["label"], labels)
            w.classified_by = SLM
        elif task == EXTRACT:
            self._ground(w, answer)
        elif task == SUMMARIZE:
            return 1 + self._check_summary(w, answer, completion.repetition_cut, retried=bool(retry_note))
        return 1

    def _ground(self, w: _Work, fields: dict[str, Any]) -> None:
        """Null every value that does not occur in the record's text or lacks its field's shape
        (``plausible``), and count it."""
        for name, value in fields.items():
            if value is not None and (not grounded(value, w.record.text) or not plausible(name, value)):
                fields[name] = None
                w.ungrounded.append(name)

    def _check_summary(self, w: _Work, answer: dict[str, Any], cut_by_backend: bool, retried: bool) -> int:
        """Cut the summary at a repetition; regenerate once when it names what the report does not, and
        if it still does, cut it before the first such claim and flag it. Returns the extra model calls."""
        text, cut, missing = check_summary(answer.get("summary") or "", w.record.text)
        answer["summary"] = text
        if cut or cut_by_backend:
            w.summary_events.append("cut")
        if not missing:
            return 0
        if not retried:
            w.summary_events.append("regenerated")
            return self._ask(w, SUMMARIZE, retry_note=RETRY_NOTE)
        w.summary_events.append("failed_check")
        answer["summary"], reason = settle_failed(text, missing, w.record.text, self.settings.summary_max_chars)
        w.review.append(reason)
        return 0

    def _from_template(self, w: _Work, entry: dict[str, Any]) -> None:
        """Reuse a template's answers; per-line values come from this line's own parameters."""
        answers = dict(entry["answers"])
        params = w.mined.params if w.mined else []
        param_map = entry.get("param_map") or {}
        if EXTRACT in answers and param_map and len(params) == len(entry.get("params", [])):
            fields = dict(answers[EXTRACT])
            for name, index in param_map.items():
                fields[name] = _as_type(params[index], fields[name])
            answers[EXTRACT] = fields
        if EXTRACT in answers:
            # The template's first line grounded its values; this line must contain them too.
            fields = {k: v for k, v in answers[EXTRACT].items() if k in w.model_fields}
            self._ground(w, fields)
            answers[EXTRACT] = fields
        w.answers, w.confidence, w.path = answers, entry.get("confidence"), "template_cache"
        w.served_from = entry.get("from")
        w.classified_by, w.triage_version = entry.get("classified_by", SLM), entry.get("triage_version")
        w.routed_review = entry.get("review")

    def _fields(self, w: _Work) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
        """Every configured field: structure's values, then the model's for the fields left empty."""
        if not self.settings.extract_fields:
            return None, None
        fields: dict[str, Any] = dict.fromkeys(self.settings.extract_fields)
        sources: dict[str, str] = {}
        for name, value in (w.answers.get(EXTRACT) or {}).items():
            if name in w.model_fields and value is not None:
                fields[name], sources[name] = value, MODEL
        fields.update(w.structured.fields)
        sources.update(w.structured.sources)
        return fields, sources

    def _result(self, w: _Work) -> ResultRow:
        classify = w.answers.get(CLASSIFY, {})
        fields, sources = self._fields(w)
        confidence = w.confidence
        threshold = self.settings.confidence_threshold
        return ResultRow(
            record_id=w.record.record_id,
            template_id=w.mined.template_id if w.mined else None,
            label=classify.get("label"),
            severity=classify.get("severity"),
            confidence=confidence,
            fields=fields,
            summary=w.answers.get(SUMMARIZE, {}).get("summary"),
            needs_review=(w.routed_review if w.routed_review is not None else confidence is None or confidence < threshold)
            or bool(w.review),
            path=w.path,
            model=self.backend.model_name,
            model_sha256=self.backend.model_sha256,
            backend=self.backend.name,
            prompt_version=PROMPT_VERSION,
            model_calls=w.calls,
            latency_ms=round(w.latency_s * 1000, 2) if w.calls else None,
            classified_by=w.classified_by if CLASSIFY in w.answers else None,
            triage_version=w.triage_version,
            header=w.record.header,
            fields_source=sources,
            review_reason="; ".join(w.review) or None,
        )


def _answer_settings(settings: AnalysisSettings) -> str:
    """The settings an answer depends on besides the model and the prompts: a cached answer computed
    under another taxonomy, field list, level table, lexicon, dump-line rule or decoding cut is not served."""
    return json.dumps(settings.model_dump(include={
        "labels", "extract_fields", "patterns", "max_string_chars", "summary_max_chars",
        "levels", "lexicon", "dump_lines", "cut_ungrounded_values",
    }), sort_keys=True)


def classified_text(record: Claimed) -> str:
    """What the model classifies: the level and component a parsed header gave, and the message.

    The answer is cached per (level, component, message template), so the model sees exactly what
    the key holds: a line's time, host and PID would only be other tokens to read (each costs prompt
    time on a small CPU) that cannot change an answer every line of the template shares."""
    if record.message is None or not record.header:
        return record.text
    head = " ".join(str(record.header[k]) for k in ("level", "component") if record.header.get(k))
    return f"{head}: {record.message}" if head else record.message


def _subject(record: Claimed) -> Subject:
    return Subject(record.text, (record.header or {}).get("level"), record.message)


def _given_header(origin: str | None) -> dict[str, str] | None:
    """The header fields a source read from the input itself (a JSON payload's keys), from the origin."""
    if not origin or '"header"' not in origin:  # file lines have no origin: no JSON to read
        return None
    try:
        doc = json.loads(origin)
    except ValueError:  # an origin cut to its length limit
        return None
    header = doc.get("header") if isinstance(doc, dict) else None
    if not isinstance(header, dict):
        return None
    given = {k: v for k, v in header.items() if isinstance(k, str) and isinstance(v, str) and v}
    return given or None


def _param_map(fields: dict[str, Any], params: list[str]) -> dict[str, int]:
    """Which extracted fields are one of the line's variable parts (by position)."""
    mapping = {}
    for name, value in fields.items():
        if value is None:
            continue
        for i, param in enumerate(params):
            if str(value) == param or _same_number(value, param):
                mapping[name] = i
                break
    return mapping


def _same_number(value: Any, param: str) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return float(param) == float(value)
    except ValueError:
        return False


def _as_type(param: str, like: Any) -> Any:
    """A parameter as the type the template's value had (numbers stay numbers)."""
    if isinstance(like, bool) or not isinstance(like, (int, float)):
        return param
    try:
        number = float(param)
    except ValueError:
        return param
    return int(number) if isinstance(like, int) and number.is_integer() else number
