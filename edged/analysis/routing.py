"""Who decides a record's classification: the one routing policy, shared by the analyzer's pipeline,
``edged eval`` and the benchmarks, so that what is measured is what the daemon does.

For each record, in this order:

1. The triage classifier, where it is confident (``classified_by = triage``). A box with labels thus
   overrides the level table where its own classifier is sure.
2. The record's own evidence (``edged.analysis.evidence``): a line of a register or flag dump is
   ``normal``, severity 0 (``dump``), whatever its level; otherwise, when its level and its lexicon
   words give one label, that label (``level``, or ``lexicon`` when there is no level); no model
   call and no review. When they give two or more labels, the language model chooses among those.
3. Nothing known: where the classifier is unsure, the language model decides among the classifier's
   likeliest labels when the active version's held-out figures say it does better there
   (``edged.triage.measure``); otherwise the classifier's guess stands, flagged for review (and
   escalated where escalation is on). With no classifier at all, the model chooses among the
   whole taxonomy.

A ``Route`` with no ``label`` is a question for the model: ``candidates`` are the labels it may choose
from ([] = all), ``examples`` the labeled texts for its prompt.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from edged.analysis.dump_lines import DUMP_LABEL, DUMP_SEVERITY
from edged.analysis.evidence import Evidence, Seen
from edged.analysis.tasks import InvalidAnswer, TaskSpec, among, parse_answer, request_for
from edged.backends.base import Backend, BackendError
from edged.triage.measure import Judge
from edged.triage.retrieval import Example
from edged.triage.router import Decision, Router

log = logging.getLogger(__name__)

# classified_by, as results name it
TRIAGE, SLM, LEVEL, LEXICON, DUMP = "triage", "slm", "level", "lexicon", "dump"


@dataclass(frozen=True)
class Subject:
    """What routing looks at in one record."""

    text: str  # what the classifier reads (the whole record, as labels store it)
    level: str | None = None  # the parsed header's level, when there was one
    message: str | None = None  # the text after its header (the lexicon reads this when present)


@dataclass
class Route:
    label: str | None = None  # decided here; None = ask the model
    severity: int | None = None
    confidence: float | None = None
    by: str | None = None  # triage | dump | level | lexicon; None: the model (slm)
    review: bool | None = None  # flagged for review regardless of confidence; None: from the model's confidence
    candidates: list[str] = field(default_factory=list)  # the labels the model chooses from ([] = all)
    examples: list[Example] = field(default_factory=list)
    triage_version: int | None = None
    seen: Seen = field(default_factory=Seen)
    unsure: bool = False  # the classifier had a guess but was not confident (eval scores the guess here)
    guess: str | None = None

    @property
    def ask_model(self) -> bool:
        return self.label is None


def route(subjects: list[Subject], evidence: Evidence, router: Router | None,
          severities: dict[str, int] | None = None) -> list[Route]:
    """The routing of each subject (one classifier call for all of them)."""
    if not subjects:
        return []
    decisions = router.decide([s.text for s in subjects]) if router is not None else [Decision() for _ in subjects]
    return [_one(s, d, evidence, severities or {}) for s, d in zip(subjects, decisions)]


def _one(s: Subject, d: Decision, evidence: Evidence, severities: dict[str, int]) -> Route:
    if d.label is not None:
        return Route(d.label, d.severity, d.probability, TRIAGE, triage_version=d.version)
    seen = evidence.of(s.message if s.message is not None else s.text, s.level)
    # Where routing decides without the model, candidates still say what the model would have chosen from.
    common = {"seen": seen, "examples": d.examples, "unsure": d.guess is not None, "guess": d.guess}
    if seen.dump:  # it describes a crash another line reports (edged.analysis.dump_lines)
        return Route(DUMP_LABEL, DUMP_SEVERITY, None, DUMP, review=False, candidates=d.candidates, **common)
    proposals = seen.proposals
    if len(proposals) == 1:
        label = proposals[0]
        if seen.level_label is not None:
            return Route(label, seen.level_severity, None, LEVEL, review=False, candidates=d.candidates, **common)
        return Route(label, severities.get(label), None, LEXICON, review=False, candidates=d.candidates, **common)
    if len(proposals) > 1:  # the level and the words disagree: the model chooses among what they say
        return Route(candidates=[label for label in evidence.taxonomy if label in proposals], **common)
    if d.guess is not None and not d.ask_model:
        return Route(d.guess, d.severity, d.probability, TRIAGE, review=True, triage_version=d.version,
                     candidates=d.candidates, **common)
    return Route(candidates=d.candidates, **common)


def model_judge(backend: Backend, spec: TaskSpec, kind: str = "log") -> Judge:
    """The model answering routed questions as the pipeline asks them, for measuring a triage version."""

    def judge(texts: list[str], choices: list[list[str]], examples: list[list[tuple[str, str]]]) -> list[str | None]:
        out: list[str | None] = []
        for text, labels, shown in zip(texts, choices, examples):
            request = request_for(spec, text, kind=kind, examples=shown)
            if labels:
                request = dataclasses.replace(request, schema=among(spec, labels))
            try:
                out.append(parse_answer(spec, backend.complete(request), request.schema)["label"])
            except (BackendError, InvalidAnswer) as exc:
                log.warning("measuring routing: %s", exc)
                out.append(None)
        return out

    return judge
