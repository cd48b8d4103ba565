"""Log-directory abuse on a real directory: files that keep their beginning but not their content,
things in the directory that are not log files, NULs and overlong lines. Every real line lands once,
the source keeps running, and the log holds no traceback."""

from __future__ import annotations

import logging
import os
import random
import socket

import pytest

from tests.support.files import FileIngest
from tests.support.wait import wait_for

BANNER = "# " + "machine banner, the same at every start " * 30 + "\n"  # 1.2 KiB: past the fingerprint


@pytest.fixture
def ingest(tmp_path):
    harness = FileIngest(tmp_path)
    yield harness
    harness.stop()


def rewrite_in_place(path, text: str) -> None:
    """Same inode, new content: open with O_TRUNC (what `>` in a shell and many loggers do)."""
    with open(path, "r+") as f:
        f.seek(0)
        f.write(text)
        f.truncate()


def lines(prefix: str, n: int) -> list[str]:
    return [f"{prefix} line {i:03d}" for i in range(n)]


def test_a_rewrite_that_keeps_the_banner_and_inode_is_read_in_full_after_a_restart(ingest):
    log = ingest.dir / "press.log"
    log.write_text(BANNER + "".join(f"{t}\n" for t in lines("first", 10)))
    ingest.start()
    ingest.wait_texts(11)
    ingest.stop()
    inode = os.stat(log).st_ino
    rewrite_in_place(log, BANNER + "".join(f"{t}\n" for t in lines("second", 30)))
    assert os.stat(log).st_ino == inode
    ingest.start()
    ingest.wait_texts(11 + 31)
    ingest.stop()
    texts = ingest.texts()
    assert all(t in texts for t in lines("second", 30))
    assert ingest.counter("files.truncated") == 1


def test_a_rewrite_while_running_is_read_in_full(ingest):
    log = ingest.dir / "press.log"
    log.write_text(BANNER + "".join(f"{t}\n" for t in lines("first", 10)))
    ingest.start()
    ingest.wait_texts(11)
    # Longer than before, so the size alone does not give it away.
    rewrite_in_place(log, BANNER + "".join(f"{t}\n" for t in lines("second", 30)))
    ingest.wait_texts(11 + 31)
    assert all(t in ingest.texts() for t in lines("second", 30))
    assert ingest.counter("files.truncated") == 1


def test_appending_is_not_mistaken_for_a_rewrite(ingest):
    log = ingest.dir / "press.log"
    log.write_text(BANNER + "".join(f"{t}\n" for t in lines("a", 10)))
    ingest.start()
    ingest.wait_texts(11)
    ingest.stop()
    with open(log, "a") as f:
        f.write("".join(f"{t}\n" for t in lines("b", 10)))
    ingest.start()
    ingest.wait_texts(21)
    ingest.stop()
    assert len(ingest.texts()) == 21 and ingest.counter("files.truncated") == 0
    assert ingest.counter("duplicates.file") == 0


def test_things_that_are_not_log_files_do_not_stop_the_source(ingest, caplog):
    d = ingest.dir
    (d / "dir.log").mkdir()
    os.mkfifo(d / "fifo.log")
    os.symlink(d / "nowhere", d / "dangling.log")
    os.symlink(d / "loop.log", d / "loop.log")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(d / "socket.log"))
    (d / "empty.log").write_text("")
    (d / "binary.log").write_bytes(b"\x00\x01\x02" * 1000)
    # NUL bytes after the first 8 KiB (so not taken for binary), a 200 KiB line, invalid UTF-8.
    (d / "mixed.log").write_bytes(b"ok before\n" * 1000 + b"nul \x00 inside\n" + b"x" * 200_000 + b"\n"
                                  + b"\xff\xfe bad utf8\n" + b"ok after\n")
    rng = random.Random(14)
    (d / "noise.log").write_bytes(bytes(rng.randrange(1, 256) for _ in range(50_000)))
    good = d / "good.log"
    good.write_text("".join(f"good {i}\n" for i in range(100)))
    with caplog.at_level(logging.INFO):
        ingest.start()
        wait_for(lambda: ingest.query("SELECT count(*) FROM records WHERE text LIKE 'good %'")[0][0] == 100,
                 what="the good file")
        wait_for(lambda: ingest.query("SELECT count(*) FROM records WHERE text = 'ok after'")[0][0] == 1,
                 what="the mixed file")
        # The directory changes under the source: files vanish, turn into directories, come back.
        os.unlink(d / "mixed.log")
        os.mkdir(d / "mixed.log")
        good.unlink()
        good.write_text("good again\n")
        ingest.wait_texts(ingest.query("SELECT count(*) FROM records")[0][0] + 1)
        assert ingest.source.is_alive()
        ingest.stop()
    unix.close()
    nul = ingest.query("SELECT text FROM records WHERE text LIKE 'nul %'")
    assert nul == [("nul \ufffd inside",)]
    assert ingest.counter("files.nul_replaced") == 1
    assert ingest.query("SELECT count(*) FROM records WHERE text LIKE 'good %'")[0][0] == 101
    assert ingest.query("SELECT count(*) FROM records WHERE instr(text, char(0)) > 0")[0][0] == 0
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
