"""edged as a systemd service: the unit file, sd_notify, the watchdog decision and journald logging.

The unit is checked with systemd-analyze (verify, and security --offline); the notify protocol
against a real AF_UNIX datagram socket this test opens, both edged's own sender and systemd-python's
(installed by `make test` through the extra ``systemd``), and end to end with the daemon as a
subprocess under NOTIFY_SOCKET and WATCHDOG_USEC. Nothing here asserts on timings.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from edged import logsetup
from edged.config.settings import Settings
from edged.store.database import open_database
from edged.systemd import Notifier, ServiceMonitor, count_backlog, health_problems, watchdog_interval
from tests.support.daemon import REPO, Daemon, query, write_config
from tests.support.wait import wait_for

UNIT = REPO / "systemd" / "edged.service"
DROP_INS = REPO / "deploy" / "edged.service.d"
SHIPPED_EXEC_START = "ExecStart=/opt/edged/venv/bin/edged run --config /etc/edged/edged.toml"
MAX_EXPOSURE = 2.5

try:
    from systemd import daemon as _sd_daemon  # noqa: F401

    HAVE_SYSTEMD_PYTHON = True
except ImportError:
    HAVE_SYSTEMD_PYTHON = False


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is missing: make test-sysdeps installs the Debian package systemd", pytrace=False)
    return path


# -- the unit file ---------------------------------------------------------------------------------


def unit_with_local_exec_start(directory: Path) -> Path:
    """A copy of the unit whose ExecStart names an edged that exists here: verify checks the binary,
    and the shipped path (/opt/edged/venv) exists only on a box."""
    text = UNIT.read_text()
    assert SHIPPED_EXEC_START in text
    local = Path(sys.executable).with_name("edged")
    command = f"{local} run" if local.exists() else f"{sys.executable} -m edged run"
    copy = directory / "edged.service"
    copy.write_text(text.replace(SHIPPED_EXEC_START, f"ExecStart={command} --config /etc/edged/edged.toml"))
    return copy


@pytest.mark.parametrize("drop_ins", [False, True], ids=["unit", "unit+drop-ins"])
def test_unit_verifies_clean(tmp_path: Path, drop_ins: bool) -> None:
    unit = unit_with_local_exec_start(tmp_path)
    if drop_ins:  # systemd-analyze reads <unit>.d/*.conf beside the unit, as systemd does
        shutil.copytree(DROP_INS, tmp_path / "edged.service.d")
    out = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


def test_unit_security_exposure() -> None:
    out = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", str(UNIT.relative_to(REPO))],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    match = re.search(r"Overall exposure level for edged\.service: (\d+(?:\.\d+)?)", out.stdout)
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, out.stdout


TEACHER_UNIT = REPO / "systemd" / "edged-teacher.service"
TEACHER_EXEC_START = "ExecStart=/opt/edged/venv/bin/edged teacher --config /etc/edged/teacher.toml"


def test_teacher_unit_verifies_clean(tmp_path: Path) -> None:
    text = TEACHER_UNIT.read_text()
    assert TEACHER_EXEC_START in text
    local = Path(sys.executable).with_name("edged")
    command = f"{local} teacher" if local.exists() else f"{sys.executable} -m edged teacher"
    unit = tmp_path / "edged-teacher.service"
    unit.write_text(text.replace(TEACHER_EXEC_START, f"ExecStart={command} --config /etc/edged/teacher.toml"))
    out = subprocess.run([systemd_analyze(), "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


def test_teacher_unit_security_exposure() -> None:
    out = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", str(TEACHER_UNIT.relative_to(REPO))],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    match = re.search(r"Overall exposure level for edged-teacher\.service: (\d+(?:\.\d+)?)", out.stdout)
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, out.stdout


def test_unit_settings_the_daemon_relies_on() -> None:
    # Not a second opinion on systemd's parser: the few lines edged's own behaviour assumes.
    lines = {line.strip() for line in UNIT.read_text().splitlines()}
    for expected in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=on-failure",
                     "StateDirectory=edged", "WorkingDirectory=/var/lib/edged", "RestartPreventExitStatus=2"):
        assert expected in lines, expected


@pytest.mark.skipif(os.geteuid() != 0, reason="creating files owned by edged needs root")
def test_sysusers_and_tmpfiles_apply(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/sysusers.d").mkdir(parents=True)
    (root / "etc/tmpfiles.d").mkdir(parents=True)
    shutil.copy(REPO / "deploy/edged.sysusers", root / "etc/sysusers.d/edged.conf")
    shutil.copy(REPO / "deploy/edged.tmpfiles", root / "etc/tmpfiles.d/edged.conf")
    for tool in ("systemd-sysusers", "systemd-tmpfiles"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: make test-sysdeps installs the Debian package systemd", pytrace=False)
    subprocess.run(["systemd-sysusers", f"--root={root}", "edged.conf"], check=True, capture_output=True)
    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", "edged.conf"], check=True, capture_output=True)
    uid = next(int(line.split(":")[2]) for line in (root / "etc/passwd").read_text().splitlines()
               if line.startswith("edged:"))
    models = (root / "var/lib/edged/models").stat()
    assert models.st_uid == uid
    machines = (root / "var/log/machines").stat()
    assert machines.st_uid == 0 and machines.st_gid == uid and machines.st_mode & 0o7777 == 0o2750


def test_logrotate_config_parses() -> None:
    logrotate = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
    if logrotate is None:
        pytest.skip("logrotate is not installed")
    with tempfile.TemporaryDirectory() as state:
        # logrotate resolves the group at parse time; a box has group edged (deploy/edged.sysusers).
        config = Path(state) / "edged"
        config.write_text((REPO / "deploy/edged.logrotate").read_text().replace(" root edged", " root root"))
        out = subprocess.run([logrotate, "-d", "-s", f"{state}/status", str(config)],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "error" not in (out.stdout + out.stderr).lower(), out.stdout + out.stderr


# -- sd_notify -------------------------------------------------------------------------------------


class NotifySocket:
    """The service manager's end: a datagram socket that collects what edged sends."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edged-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            # Short: AF_UNIX paths hold 107 bytes, pytest's tmp_path can be longer.
            self.dir = tempfile.mkdtemp(prefix="edged-notify-", dir="/tmp")
            self.address = os.path.join(self.dir, "notify")
            self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self.on_message = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def receive(self, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(65536).decode()

    def collect(self) -> "NotifySocket":
        """Receive in the background into ``messages``."""
        def run() -> None:
            while not self._stop.is_set():
                try:
                    data = self.sock.recv(65536).decode()
                except socket.timeout:
                    continue
                except OSError:
                    return
                if self.on_message is not None:
                    self.on_message(data)
                self.messages.append(data)

        self.sock.settimeout(0.2)
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()
        if hasattr(self, "dir"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def assignments(self) -> list[dict[str, str]]:
        return [dict(line.split("=", 1) for line in m.splitlines() if "=" in line) for m in self.messages]


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notifier_socket_protocol(abstract: bool) -> None:
    server = NotifySocket(abstract=abstract)
    try:
        notifier = Notifier(server.address, use_library=False)
        assert notifier.enabled and notifier.via == "socket"
        assert notifier.ready("backlog 0 pending")
        assert server.receive() == "READY=1\nSTATUS=backlog 0 pending"
        assert notifier.status("two\nlines")
        assert server.receive() == "STATUS=two lines"  # a newline would start another assignment
        assert notifier.watchdog()
        assert server.receive() == "WATCHDOG=1"
        assert notifier.stopping()
        assert server.receive() == "STOPPING=1"
        notifier.close()
    finally:
        server.close()


def test_notifier_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.watchdog() and not notifier.status("x") and not notifier.stopping()


def test_notifier_survives_a_missing_service_manager(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "gone"), use_library=False)
    with caplog.at_level(logging.WARNING, logger="edged.systemd"):
        assert not notifier.watchdog()
        assert not notifier.watchdog()
    assert len([r for r in caplog.records if "cannot notify" in r.getMessage()]) == 1  # said once
    assert not Notifier("vsock:2:1234", use_library=False).ready()


@pytest.mark.skipif(not HAVE_SYSTEMD_PYTHON, reason="systemd-python not installed (make test installs it)")
def test_notifier_through_systemd_python(notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)  # libsystemd reads it itself
    notifier = Notifier(use_library=True)
    assert notifier.via == "systemd-python"
    assert notifier.ready("starting")
    assert notify_socket.receive() == "READY=1\nSTATUS=starting"
    assert notifier.watchdog()
    assert notify_socket.receive() == "WATCHDOG=1"


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "2000000"}) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


# -- the watchdog decision, with fakes ---------------------------------------------------------------


class FakeNotifier:
    enabled = True

    def __init__(self) -> None:
        self.sent: list[str] = []

    def ready(self, status=None):
        self.sent.append("READY=1")

    def status(self, text):
        self.sent.append(f"STATUS={text}")

    def watchdog(self):
        self.sent.append("WATCHDOG=1")

    def stopping(self, status=None):
        self.sent.append("STOPPING=1")

    def take(self) -> list[str]:
        sent, self.sent = self.sent, []
        return sent


class FakeWorker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive


class FakeAnalyzer(FakeWorker):
    def __init__(self) -> None:
        super().__init__("analyzer")
        self.busy_since: float | None = None
        self.analyzed = 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_monitor(**kwargs):
    clock, notifier, writer, analyzer = Clock(), FakeNotifier(), FakeWorker("store-writer"), FakeAnalyzer()
    workers = [writer, analyzer]
    monitor = ServiceMonitor(notifier, workers=lambda: workers, analyzer=analyzer, clock=clock,
                             stuck_after_s=300, watchdog_s=1.0, status_interval_s=5.0, **kwargs)
    return monitor, notifier, clock, writer, analyzer


def test_watchdog_pings_while_healthy() -> None:
    monitor, notifier, clock, _, _ = make_monitor()
    monitor.ready()
    assert notifier.take() == ["READY=1", "WATCHDOG=1"]
    clock.now += 0.5
    monitor.check()
    assert "WATCHDOG=1" not in notifier.take()  # not due yet
    clock.now += 0.5
    monitor.check()
    assert notifier.take() == ["WATCHDOG=1"]
    clock.now += 5
    monitor.check()
    assert notifier.take()[0] == "WATCHDOG=1" and monitor.pings == 3


def test_watchdog_withheld_while_a_worker_is_dead() -> None:
    monitor, notifier, clock, writer, _ = make_monitor()
    monitor.ready()
    notifier.take()
    writer.alive = False
    for _ in range(5):
        clock.now += 1
        assert monitor.check() == ["worker store-writer is not running"]
    sent = notifier.take()
    assert "WATCHDOG=1" not in sent
    assert sent == ["STATUS=unhealthy: worker store-writer is not running"]  # said once, not every check


def test_watchdog_withheld_while_the_analyzer_is_stuck() -> None:
    monitor, notifier, clock, _, analyzer = make_monitor()
    monitor.ready()
    notifier.take()
    analyzer.busy_since = clock.now
    clock.now += 299  # a long batch, not yet stuck
    monitor.check()
    assert "WATCHDOG=1" in notifier.take()
    clock.now += 2  # 301 s on one batch
    assert monitor.check() == ["analyzer on one batch for 301 s (stuck_after_s = 300)"]
    clock.now += 10
    monitor.check()
    assert not [m for m in notifier.take() if m == "WATCHDOG=1"]
    analyzer.busy_since = None  # the batch finished after all: pings resume
    clock.now += 1
    assert monitor.check() == []
    sent = notifier.take()
    assert "WATCHDOG=1" in sent and sent[-1].startswith("STATUS=")


def test_health_problems() -> None:
    a, b = FakeWorker("a"), FakeWorker("b")
    assert health_problems([a, b], None, 300, 1000.0) == []
    b.alive = False
    assert health_problems([a, b], 100.0, 300, 1000.0) == [
        "worker b is not running", "analyzer on one batch for 900 s (stuck_after_s = 300)",
    ]


def test_status_reports_backlog_and_rates(tmp_path: Path) -> None:
    from edged.submit import incident_record, store_incident

    db = open_database(tmp_path / "edged.db")
    for i in range(3):
        store_incident(db, incident_record(f"report {i}", machine="press-7", via="cli"))
    assert count_backlog(db, has_outbox=True) == {"pending": 3, "leased": 0, "unsent": 0}

    class Writer:
        records_inserted = 0
        storage_error = None

    writer = Writer()
    monitor, notifier, clock, _, analyzer = make_monitor(writer=writer, reader=db)
    monitor.ready()
    writer.records_inserted, analyzer.analyzed = 50, 10
    clock.now += 5
    monitor.check()
    status = [m for m in notifier.take() if m.startswith("STATUS=")]
    assert status == ["STATUS=backlog 3 pending, 0 leased, 0 unsent; ingest 10.0/s, analysis 2.0/s"]
    db.close()


# -- the daemon under a NOTIFY_SOCKET ------------------------------------------------------------------


def daemon_config(tmp_path: Path) -> Path:
    sections: dict = {
        "store": {"path": str(tmp_path / "edged.db")},
        "logs": {"paths": [str(tmp_path / "logs" / "*.log")]},
        # The scripted backend: this test is about the notify protocol, not the model.
        "backend": {"type": "fake"},
        "analysis": {"digest_interval_s": 0},
    }
    web = Settings.model_fields.get("web")
    if web is not None and "enabled" in getattr(web.annotation, "model_fields", {}):
        sections["web"] = {"enabled": False}  # not this test's business, and no port to share
    return write_config(tmp_path / "edged.toml", sections)


@pytest.mark.slow
def test_daemon_speaks_sd_notify(tmp_path: Path, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch) -> None:
    db_path = tmp_path / "edged.db"
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "press-7.log").write_text("spindle started\nspindle stopped\n")
    ready_seen_with: list[tuple[bool, int]] = []

    def on_message(message: str) -> None:
        if "READY=1" in message.splitlines():  # what the store looks like the moment READY=1 arrives
            migrated = query(db_path, "SELECT count(*) FROM migrations")[0][0] if db_path.exists() else 0
            ready_seen_with.append((db_path.exists(), migrated))

    notify_socket.on_message = on_message
    notify_socket.collect()
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # a ping every second
    for name in ("WATCHDOG_PID", "JOURNAL_STREAM", "INVOCATION_ID"):
        monkeypatch.delenv(name, raising=False)

    daemon = Daemon(tmp_path, daemon_config(tmp_path))
    daemon.start()
    try:
        wait_for(lambda: ready_seen_with, timeout=30, what="READY=1")
        assert ready_seen_with[0][0] and ready_seen_with[0][1] > 0, "READY=1 before the store was ready"
        wait_for(lambda: sum(a.get("WATCHDOG") == "1" for a in notify_socket.assignments()) >= 3,
                 timeout=30, what="three watchdog pings")
        # A STATUS= refresh of its own (not the one sent with READY=1), with the backlog and the rates.
        wait_for(lambda: [a for a in notify_socket.assignments() if "STATUS" in a and "READY" not in a
                          and "backlog" in a["STATUS"]], timeout=30, what="STATUS= with the backlog")
    finally:
        code = daemon.terminate()
    assert code == 0, daemon.log_text()[-3000:]
    wait_for(lambda: any(a.get("STOPPING") == "1" for a in notify_socket.assignments()), timeout=10,
             what="STOPPING=1")

    sent = notify_socket.assignments()
    ready_at = next(i for i, a in enumerate(sent) if a.get("READY") == "1")
    stopping_at = next(i for i, a in enumerate(sent) if a.get("STOPPING") == "1")
    before_ready = [a.get("STATUS") for a in sent[:ready_at]]
    assert "loading the model" in before_ready and "opening the database" in before_ready
    assert not any("WATCHDOG" in a for a in sent[:ready_at])  # pings only once ready
    assert ready_at < stopping_at and not any("READY" in a for a in sent[ready_at + 1:])
    status = next(a["STATUS"] for a in sent if "STATUS" in a and "READY" not in a and "backlog" in a["STATUS"])
    assert re.fullmatch(r"backlog \d+ pending, \d+ leased, \d+ unsent; ingest [\d.]+/s, analysis [\d.]+/s", status)


# -- journald ---------------------------------------------------------------------------------------


def parse_journal_datagram(data: bytes) -> dict[str, str]:
    """The journal's native protocol, read back (both the KEY=value and the length-prefixed form)."""
    fields, i = {}, 0
    while i < len(data):
        end = data.index(b"\n", i)
        line = data[i:end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = end + 1
        else:
            key = line
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            value = data[end + 9 : end + 9 + size]
            assert data[end + 9 + size : end + 10 + size] == b"\n"
            i = end + 10 + size
        fields[key.decode()] = value.decode()
    return fields


@pytest.fixture
def journal_logger():
    logger = logging.getLogger("edged.test_journal")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
        handler.close()


def test_journal_handler_native_protocol(notify_socket: NotifySocket, journal_logger: logging.Logger) -> None:
    handler = logsetup.JournalHandler(socket_path=notify_socket.address)  # any datagram socket will do
    assert handler.via == "socket"
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    journal_logger.addHandler(handler)
    journal_logger.warning("record parked: %s", "model said nonsense",
                           extra={"record_id": "r-0042", "machine": "press-7", "source": "file"})
    fields = parse_journal_datagram(notify_socket.sock.recv(65536))
    assert fields["MESSAGE"] == "edged.test_journal: record parked: model said nonsense"
    assert fields["PRIORITY"] == "4" and fields["SYSLOG_IDENTIFIER"] == "edged"
    assert (fields["RECORD_ID"], fields["MACHINE"], fields["SOURCE"]) == ("r-0042", "press-7", "file")
    assert fields["LOGGER"] == "edged.test_journal" and fields["CODE_FUNC"] == "test_journal_handler_native_protocol"
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", key) for key in fields)

    try:
        raise ValueError("bad\nthing")
    except ValueError:
        journal_logger.exception("analysis failed")
    fields = parse_journal_datagram(notify_socket.sock.recv(65536))
    assert fields["PRIORITY"] == "3" and "Traceback" in fields["MESSAGE"] and "bad\nthing" in fields["MESSAGE"]


def test_journal_handler_falls_back_to_stderr(tmp_path: Path, journal_logger: logging.Logger,
                                              capsys: pytest.CaptureFixture) -> None:
    journal_logger.addHandler(logsetup.JournalHandler(socket_path=str(tmp_path / "no-journal")))
    journal_logger.error("still visible")
    assert "ERROR edged.test_journal: still visible" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_SYSTEMD_PYTHON, reason="systemd-python not installed (make test installs it)")
def test_journal_handler_uses_systemd_python(monkeypatch: pytest.MonkeyPatch, journal_logger: logging.Logger) -> None:
    from systemd import journal

    calls = []
    monkeypatch.setattr(journal, "send", lambda MESSAGE, **fields: calls.append((MESSAGE, fields)))
    handler = logsetup.JournalHandler()
    assert handler.via == "systemd-python"
    journal_logger.addHandler(handler)
    journal_logger.info("hello", extra={"machine": "press-7"})
    [(message, fields)] = calls
    assert message == "hello" and fields["MACHINE"] == "press-7" and fields["PRIORITY"] == "6"


def test_journal_only_when_stderr_is_the_journal_stream(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        assert logsetup.journal_stream_is_stderr({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stream)
        # Inherited from a parent whose stderr was the journal, while ours goes elsewhere: stderr.
        assert not logsetup.journal_stream_is_stderr({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, stream)
        assert not logsetup.journal_stream_is_stderr({}, stream)
        assert not logsetup.journal_stream_is_stderr({"JOURNAL_STREAM": "nonsense"}, stream)


def test_setup_logging_chooses_the_destination() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        logsetup.setup_logging("INFO", journal=True)
        assert logsetup.log_destination() == "journald"
        logsetup.setup_logging("INFO", journal=False)
        assert logsetup.log_destination() == "stderr"
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved
        root.setLevel(level)


# -- MemoryDenyWriteExecute= and llama.cpp -------------------------------------------------------------

MDWE_CHILD = r"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3+)
    print("no PR_SET_MDWE"); sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("a writable and executable mapping was allowed: the check checks nothing")
except OSError:
    pass
from llama_cpp import Llama, LlamaGrammar  # sets a ctypes log callback (a libffi closure) at import
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=2, verbose=False)
out = llm("Is the sky blue? Answer:", max_tokens=2, grammar=LlamaGrammar.from_string('root ::= "yes" | "no"', verbose=False))
print("answer:", out["choices"][0]["text"])
"""


@pytest.mark.slow
def test_llama_cpp_runs_without_writable_executable_memory() -> None:
    """The unit sets MemoryDenyWriteExecute=yes; the kernel's PR_SET_MDWE enforces the same rule."""
    from edged.config.settings import ModelSettings
    from edged.models.resolve import resolve_model

    try:
        model = resolve_model(ModelSettings(dir=REPO / "models"))
    except Exception as exc:  # noqa: BLE001 - any reason the model is not there
        pytest.skip(f"default model not available (make model): {exc}")
    out = subprocess.run([sys.executable, "-c", MDWE_CHILD, str(model.path)], capture_output=True, text=True,
                         timeout=300)
    if out.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    assert out.returncode == 0 and "answer:" in out.stdout, out.stdout + out.stderr[-3000:]
