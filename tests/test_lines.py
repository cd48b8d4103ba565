"""LineAssembler: bytes of a file in, records and a safe position out."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from edged.sources.files.lines import LineAssembler


def feed_all(a: LineAssembler, *chunks: bytes):
    out = []
    for chunk in chunks:
        out += a.feed(chunk)
    return out


def test_lines_offsets_and_safe_position():
    a = LineAssembler(0, max_bytes=100)
    pieces = feed_all(a, b"one\ntw", b"o\nthr")
    assert [(p.start, p.end, p.text) for p in pieces] == [(0, 4, "one"), (4, 8, "two")]
    assert a.safe_offset == 8  # "thr" is not complete: it is read again after a restart
    assert a.flush_partial()[0].flags == "no_newline"
    assert a.safe_offset == 11


def test_blank_lines_advance_but_are_not_records_and_crlf_is_stripped():
    a = LineAssembler(0, max_bytes=100)
    pieces = a.feed(b"\n  \r\nx\r\n")
    assert [p.text for p in pieces] == ["x"]
    assert a.safe_offset == 8


def test_overlong_line_is_truncated_flagged_and_memory_bounded():
    a = LineAssembler(0, max_bytes=10)
    assert a.feed(b"a" * 50) == []
    assert len(a._buf) <= 10  # only the kept head is held, not the whole line
    pieces = a.feed(b"a" * 50 + b"\nnext\n")
    assert [(p.text, p.flags) for p in pieces] == [("a" * 10, "truncated"), ("next", "")]
    assert pieces[0].end == 101


def test_truncation_does_not_split_a_utf8_character():
    a = LineAssembler(0, max_bytes=10)
    (piece,) = a.feed("123456789é€\n".encode())
    assert piece.text == "123456789" and piece.flags == "truncated"


def test_invalid_utf8_is_replaced_and_flagged():
    a = LineAssembler(0, max_bytes=100)
    (piece,) = a.feed(b"temp \xff\xfe high\n")
    assert piece.text == "temp \ufffd\ufffd high"
    assert piece.flags == "invalid_utf8"


def test_multiline_keeps_a_stack_trace_in_one_record():
    a = LineAssembler(0, max_bytes=1000, multiline_start=re.compile(r"^\d{4}-"))
    data = (
        b"2026-01-01 ERROR boom\n"
        b"Traceback (most recent call last):\n"
        b'  File "x.py", line 1\n'
        b"\n"
        b"ValueError: bad\n"
        b"2026-01-01 INFO next\n"
    )
    pieces = a.feed(data)
    assert len(pieces) == 1
    assert pieces[0].text.startswith("2026-01-01 ERROR boom\nTraceback") and pieces[0].text.endswith("ValueError: bad")
    assert a.safe_offset == pieces[0].end  # the INFO record is still collecting lines
    (last,) = a.flush_group()
    assert last.text == "2026-01-01 INFO next" and a.safe_offset == len(data)


def test_multiline_record_is_capped_at_max_bytes():
    a = LineAssembler(0, max_bytes=20, multiline_start=re.compile(r"^S"))
    pieces = a.feed(b"S start\n" + b"  continuation line\n" * 5 + b"S next\n")
    assert len(pieces[0].text.encode()) <= 20 and pieces[0].flags == "truncated"


lines = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=30).map(str.encode),
        st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
        st.just(b""),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(lines=lines, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10), multiline=st.booleans())
def test_any_chunking_gives_the_same_records(lines, cuts, multiline):
    """Where reads happen to split the file must not change the records or their offsets."""
    data = b"\n".join(lines) + b"\n"
    pattern = re.compile(r"^[a-m]") if multiline else None
    whole = LineAssembler(0, max_bytes=16, multiline_start=pattern)
    expected = whole.feed(data) + whole.flush_all()
    chunked = LineAssembler(0, max_bytes=16, multiline_start=pattern)
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    got = []
    for lo, hi in zip(bounds, bounds[1:]):
        got += chunked.feed(data[lo:hi])
    got += chunked.flush_all()
    assert got == expected
    assert chunked.safe_offset == whole.safe_offset == len(data)


@settings(max_examples=100, deadline=None)
@given(lines=lines, stop_at=st.integers(min_value=0, max_value=2000))
def test_resuming_at_safe_offset_loses_and_repeats_nothing(lines, stop_at):
    """A crash after any read: resuming at safe_offset yields exactly the records not yet yielded."""
    data = b"\n".join(lines) + b"\n"
    cut = stop_at % (len(data) + 1)
    first = LineAssembler(0, max_bytes=16)
    before = first.feed(data[:cut])
    resumed = LineAssembler(first.safe_offset, max_bytes=16)
    after = resumed.feed(data[first.safe_offset:])
    whole = LineAssembler(0, max_bytes=16).feed(data)
    assert before + after == whole
