"""Checking that a summary says only what its report says, as far as a program can tell.

- Repetition: a summary ends at its first repeated 4-word sequence (edged.backends.repetition);
  the llama_cpp backend stops decoding there, others are cut afterwards.
- Claims: every number, code and part identifier in the summary (``2``, ``91.5``, ``E-1234``,
  ``H-44``, ``EX-12``, ``WO4711``) must occur in the report (edged.analysis.grounding). A summary that
  names one that is not is generated once more; if it still fails it is cut before the first such
  claim (when at least two words are left; else the report's own first sentence stands in for it)
  and flagged ``needs_review`` with the reason.

What this cannot see: a claim made of plain words that the report does not support (a part said to
be replaced when the report says to replace it).
"""

from __future__ import annotations

import re

from edged.analysis.grounding import grounded, numbers_in
from edged.backends.repetition import cut_at_repeat

REPEAT_NGRAM = 4
# Tokens that carry a digit: numbers, codes, part and machine ids. Hyphens, slashes, dots and
# underscores join their pieces ("H-44", "3/8", "EX-12", "v1.2").
_TOKEN = re.compile(r"\w(?:[\w\-/.]*\w)?")


def claims(summary: str) -> list[str]:
    """Numbers, codes and identifiers named in ``summary``, in order, once each."""
    seen: dict[str, None] = {}
    for m in _TOKEN.finditer(summary):
        if any(ch.isdigit() for ch in m.group(0)):
            seen.setdefault(m.group(0), None)
    return [c for c in seen if c]


def unsupported(summary: str, report: str) -> list[str]:
    """The claims of ``summary`` that ``report`` does not contain."""
    missing = []
    report_numbers = numbers_in(report)
    for claim in claims(summary):
        if re.fullmatch(r"\d+(?:[.,]\d+)?", claim):
            number = float(claim.replace(",", "."))
            if number in report_numbers or grounded(claim, report):
                continue
        elif grounded(claim, report) or grounded(claim.replace("-", " "), report) or _same_id(claim, report):
            continue
        missing.append(claim)
    return missing


def _same_id(claim: str, report: str) -> bool:
    """``EX12`` and ``EX-12`` (or ``ex 12``) are the same identifier."""
    squeeze = re.sub(r"[\s\-_/.]", "", claim).casefold()
    return any(re.sub(r"[\-_/.]", "", token).casefold() == squeeze for token in re.findall(r"[\w\-/.]+", report))


MIN_WORDS_KEPT = 2  # a summary cut to fewer words than this is not kept cut


def cut_before(summary: str, missing: list[str]) -> str | None:
    """``summary`` up to the first claim the report does not contain, when enough is left of it."""
    starts = [m.start() for m in _TOKEN.finditer(summary) if m.group(0) in missing]
    if not starts:
        return None
    text = summary[: min(starts)].rstrip(" \t\n,;:-–(/&").rstrip()
    for tail in (" on", " at", " in", " of", " and", " with", " from", " to", " the", " by"):
        if text.lower().endswith(tail):
            text = text[: -len(tail)].rstrip(" ,;:")
    return text if len(text.split()) >= MIN_WORDS_KEPT else None


# A small model often opens by echoing the prompt's "Incident report:" line: that says nothing.
_ECHO = re.compile(r"^\s*(?:incident report|log line|recent log lines)[^:\n]{0,40}:\s*", re.I)


def first_sentence(report: str, max_chars: int) -> str:
    """The report's own first sentence (or line), at most ``max_chars``: a summary that cannot be wrong."""
    text = " ".join(report.split())
    m = re.search(r"(?<=[.!?])\s", text)
    text = text[: m.start()] if m else text
    return text if len(text) <= max_chars else text[: max_chars - 1].rsplit(" ", 1)[0] + "…"


# Added to the request when a summary is generated again. Naming the wrong claims would tempt a small
# model to copy them: the note stays generic.
RETRY_NOTE = "\n\nSummarize only what this report says: no date, number or code that is not in it."


def settle_failed(summary: str, missing: list[str], report: str, max_chars: int) -> tuple[str, str]:
    """A summary that still names what its report does not, after its second try: cut before the first
    such claim, or else the report's own first sentence in its place; with the review reason."""
    shortened = cut_before(summary, missing)
    if shortened is not None:
        return shortened, "summary cut before what the report does not say: " + ", ".join(missing[:8])
    return (first_sentence(report, max_chars),
            "the report's first sentence stands in for a summary that named what the report does not: "
            + ", ".join(missing[:8]))


def check_summary(summary: str, report: str) -> tuple[str, bool, list[str]]:
    """The summary cut at its first repetition, whether it was cut, and the claims the report does
    not contain (a cut is a repair; unsupported claims are a failure)."""
    text, cut = cut_at_repeat(_ECHO.sub("", summary, count=1), REPEAT_NGRAM)
    return text, cut, unsupported(text, report)
