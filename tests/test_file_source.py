"""The log-directory source on a real directory and a real SQLite file: rotations, restarts, bad input."""

from __future__ import annotations

import os

import pytest

from tests.support.files import FileIngest
from tests.support.wait import wait_for


@pytest.fixture
def ingest(tmp_path):
    harness = FileIngest(tmp_path)
    yield harness
    harness.stop()


def append(path, *lines: str) -> None:
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))


def test_lines_are_ingested_once_with_machine_and_stable_ids(ingest):
    log = ingest.dir / "cnc-07.log"
    append(log, "spindle start", "spindle stop")
    ingest.start()
    ingest.wait_texts(2)
    append(log, "coolant low")
    ingest.wait_texts(3)
    ingest.stop()
    rows = ingest.query("SELECT record_id, machine, kind, source, status FROM records ORDER BY id")
    assert [r[1:] for r in rows] == [("cnc-07", "log", f"file:{log}", "pending")] * 3
    ids = [r[0] for r in rows]
    assert ids[0].startswith("f:") and ids[0].endswith(":0") and ids[1].endswith(":14")


def test_restart_resumes_at_the_stored_position(ingest):
    log = ingest.dir / "a.log"
    append(log, "one", "two")
    ingest.start()
    ingest.wait_texts(2)
    ingest.stop()
    append(log, "three")  # written while edged is down
    ingest.start()
    ingest.wait_texts(3)
    append(log, "four")
    ingest.wait_texts(4)
    ingest.stop()
    assert ingest.texts() == ["one", "two", "three", "four"]
    assert ingest.counter("duplicates.file") == 0


def test_rename_rotation_reads_the_old_file_to_its_end(ingest):
    log = ingest.dir / "app.log"
    append(log, "old 1")
    ingest.start()
    ingest.wait_texts(1)
    with open(log, "a") as still_open:  # the writing process keeps its descriptor across the rename
        os.rename(log, ingest.dir / "app.log.1")
        append(log, "new 1")
        still_open.write("old 2 (late write to the renamed file)\n")
    ingest.wait_texts(3)
    finished = "SELECT path, reason FROM file_positions WHERE state = 'done'"
    wait_for(lambda: ingest.query(finished), what="the rotated file to be finished after rotate_wait")
    ingest.stop()
    assert sorted(ingest.texts()) == sorted(["old 1", "old 2 (late write to the renamed file)", "new 1"])
    assert ingest.query(finished) == [(str(ingest.dir / "app.log.1"), "rotated")]


def test_rotation_while_stopped_finishes_the_renamed_file(ingest):
    log = ingest.dir / "app.log"
    append(log, "a")
    ingest.start()
    ingest.wait_texts(1)
    ingest.stop()
    append(log, "b (written before rotation, after stop)")
    os.rename(log, ingest.dir / "app.log.1")
    append(log, "c (new file)")
    ingest.start()
    ingest.wait_texts(3)
    ingest.stop()
    assert sorted(ingest.texts()) == sorted(["a", "b (written before rotation, after stop)", "c (new file)"])


def test_copytruncate_starts_again_at_zero_and_is_counted(ingest):
    log = ingest.dir / "app.log"
    append(log, "before 1", "before 2")
    ingest.start()
    ingest.wait_texts(2)
    os.truncate(log, 0)  # what logrotate's copytruncate does after copying
    wait_for(lambda: ingest.counter("files.truncated") == 1, what="truncation noticed")
    append(log, "after 1")
    ingest.wait_texts(3)
    ingest.stop()
    assert ingest.texts() == ["before 1", "before 2", "after 1"]
    # The new content gets new ids even though it starts again at offset 0.
    assert len({r[0] for r in ingest.rows()}) == 3


def test_truncate_and_rewrite_past_the_position_is_caught_by_the_fingerprint(ingest):
    log = ingest.dir / "app.log"
    append(log, "first version line")
    ingest.start()
    ingest.wait_texts(1)
    ingest.stop()
    # Rewritten in place (same inode) with more bytes than were read: only the fingerprint tells.
    with open(log, "w") as f:
        f.write("second version, a longer first line\nand another\n")
    ingest.start()
    ingest.wait_texts(3)
    ingest.stop()
    assert ingest.texts() == ["first version line", "second version, a longer first line", "and another"]


def test_delete_and_recreate(ingest):
    log = ingest.dir / "app.log"
    append(log, "gen 1")
    ingest.start()
    ingest.wait_texts(1)
    os.unlink(log)
    append(log, "gen 2")  # may well get the same inode number back
    ingest.wait_texts(2)
    ingest.stop()
    assert ingest.texts() == ["gen 1", "gen 2"]


def test_multiline_records_and_flush_timeout(tmp_path):
    ingest = FileIngest(tmp_path, multiline_start=r"^\d{4}-\d{2}-\d{2} ").start()
    try:
        append(
            ingest.dir / "svc.log",
            "2026-11-27 10:00:00 ERROR unhandled",
            "Traceback (most recent call last):",
            '  File "plc.py", line 3, in poll',
            "TimeoutError: no answer",
            "2026-11-27 10:00:01 INFO recovered",
        )
        texts = ingest.wait_texts(2)  # the last record is stored after the flush timeout
    finally:
        ingest.stop()
    assert texts[0].count("\n") == 3 and texts[0].endswith("TimeoutError: no answer")
    assert texts[1] == "2026-11-27 10:00:01 INFO recovered"


def test_partial_line_waits_for_its_newline(tmp_path):
    ingest = FileIngest(tmp_path, partial_line_timeout_s=30).start()
    try:
        log = ingest.dir / "p.log"
        with open(log, "a") as f:
            f.write("complete\nhalf a li")
            f.flush()
            ingest.wait_texts(1)
            f.write("ne\n")
        ingest.wait_texts(2)
    finally:
        ingest.stop()
    assert ingest.texts() == ["complete", "half a line"]


def test_partial_line_is_stored_after_the_timeout_and_flagged(ingest):
    with open(ingest.dir / "p.log", "a") as f:
        f.write("no newline ever")
    ingest.start()
    ingest.wait_texts(1)
    ingest.stop()
    assert ingest.rows()[0][1:] == ("no newline ever", "no_newline")


def test_huge_lines_are_truncated_and_flagged(tmp_path):
    ingest = FileIngest(tmp_path, max_line_bytes=1024)
    with open(ingest.dir / "big.log", "wb") as f:
        f.write(b"x" * (10 * 1024 * 1024) + b"\nsmall\n")
    ingest.start()
    try:
        ingest.wait_texts(2)
    finally:
        ingest.stop()
    (big, big_flags), (small, _) = [r[1:] for r in ingest.rows()]
    assert len(big) == 1024 and big_flags == "truncated" and small == "small"


def test_invalid_utf8_is_kept_and_flagged(ingest):
    (ingest.dir / "u.log").write_bytes(b"ok\nbad \xc3\x28 byte\n")
    ingest.start()
    ingest.wait_texts(2)
    ingest.stop()
    assert [r[1:] for r in ingest.rows()] == [("ok", ""), ("bad \ufffd( byte", "invalid_utf8")]


def test_binary_files_are_skipped_with_a_counted_reason(ingest):
    (ingest.dir / "core.log").write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    append(ingest.dir / "ok.log", "text")
    ingest.start()
    ingest.wait_texts(1)
    wait_for(lambda: ingest.counter("files.skipped_binary") == 1, what="binary file counted")
    ingest.restart()  # a restart remembers the skip instead of counting it again
    ingest.stop()
    assert ingest.query("SELECT reason, source FROM rejected") == [("binary file", f"file:{ingest.dir / 'core.log'}")]
    assert ingest.counter("files.skipped_binary") == 1
    assert ingest.texts() == ["text"]


def test_start_at_end_applies_only_to_files_present_at_the_first_start(tmp_path):
    ingest = FileIngest(tmp_path, start_at="end")
    append(ingest.dir / "old.log", "history 1", "history 2")
    ingest.start()
    try:
        wait_for(lambda: ingest.query("SELECT count(*) FROM file_positions")[0][0] == 1, what="position stored")
        append(ingest.dir / "old.log", "live")
        append(ingest.dir / "new.log", "new file from its start")
        ingest.wait_texts(2)
    finally:
        ingest.stop()
    assert sorted(ingest.texts()) == ["live", "new file from its start"]


def test_recursive_glob(tmp_path):
    ingest = FileIngest(tmp_path, paths=[str(tmp_path / "logs" / "**" / "*.log")])
    (ingest.dir / "line1" / "press").mkdir(parents=True)
    append(ingest.dir / "line1" / "press" / "p1.log", "deep")
    append(ingest.dir / "top.log", "top")
    ingest.start()
    try:
        ingest.wait_texts(2)
        (ingest.dir / "line2").mkdir()
        append(ingest.dir / "line2" / "late.log", "appeared later")
        ingest.wait_texts(3)
    finally:
        ingest.stop()
    assert sorted(ingest.texts()) == ["appeared later", "deep", "top"]


def test_copytruncate_copy_gives_back_the_lines_missed_before_the_truncation(ingest):
    """Lines written after the last read and before copytruncate survive only in the copy."""
    log = ingest.dir / "app.log"
    append(log, "A", "B")
    ingest.start()
    ingest.wait_texts(2)
    ingest.stop()
    append(log, "C (only in the copy)")
    (ingest.dir / "app.log.1").write_bytes(log.read_bytes())  # what logrotate copytruncate does
    os.truncate(log, 0)
    append(log, "D")
    ingest.start()
    ingest.wait_texts(4)
    ingest.stop()
    assert sorted(ingest.texts()) == ["A", "B", "C (only in the copy)", "D"]


def test_a_file_created_and_rotated_while_stopped_is_still_read(ingest):
    log = ingest.dir / "app.log"
    append(log, "seen")
    ingest.start()
    ingest.wait_texts(1)
    ingest.stop()
    os.rename(log, ingest.dir / "app.log.2")
    append(log, "never seen under its live name")
    os.rename(log, ingest.dir / "app.log.1")
    append(log, "live")
    ingest.start()
    ingest.wait_texts(3)
    ingest.restart()  # already-read rotated files are recognised, not read again
    ingest.stop()
    assert sorted(ingest.texts()) == ["live", "never seen under its live name", "seen"]
    assert {s for (s,) in ingest.query("SELECT DISTINCT source FROM records")} == {f"file:{log}"}


def test_two_files_with_the_same_beginning_are_both_read(ingest):
    banner = "=== controller firmware 4.2 boot banner ===\n" * 40  # longer than the fingerprint
    (ingest.dir / "a.log").write_text(banner + "from a\n")
    (ingest.dir / "b.log").write_text(banner + "from b\n")
    ingest.start()
    ingest.wait_texts(82)
    ingest.stop()
    assert ingest.texts().count("from a") == 1 and ingest.texts().count("from b") == 1
