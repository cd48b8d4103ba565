"""Logging for the daemon and the CLI: plain lines on stderr, or the journal under systemd.

Under systemd (``$JOURNAL_STREAM`` names the stream stderr is connected to, see systemd.exec(5)) each
record goes to journald as one entry with structured fields: ``PRIORITY``, ``LOGGER``,
``THREAD_NAME``, ``CODE_*``, and whatever a log call passes with ``extra=`` in upper case, e.g.
``log.warning("...", extra={"record_id": rid, "machine": m, "source": s})`` gives ``RECORD_ID``,
``MACHINE`` and ``SOURCE``, so ``journalctl -u edged MACHINE=press-07`` finds them. It uses
systemd-python's ``journal.send`` when that imports, else writes the journal's native protocol to
its socket itself.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import sys
from typing import Any, Callable

JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_IDENTIFIER = "edged"
MAX_MESSAGE_BYTES = 48 * 1024  # one datagram must hold the entry; a longer message is cut
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Attributes every LogRecord has: the rest came from ``extra=`` and become journal fields.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def journal_stream_is_stderr(environ: dict[str, str] | None = None, stream: Any = None) -> bool:
    """True when stderr is the journal stream systemd connected (``$JOURNAL_STREAM`` = device:inode)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    stream = sys.stderr if stream is None else stream
    try:
        device, inode = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def _priority(levelno: int) -> int:
    """syslog priority of a logging level."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def encode_journal_fields(fields: dict[str, str]) -> bytes:
    """The journal's native protocol: ``KEY=value\\n``, or for a value with a newline in it
    ``KEY\\n`` + its length as 64-bit little endian + the value + ``\\n``."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def _library_send() -> Callable[..., Any] | None:
    try:
        from systemd import journal
    except ImportError:
        return None
    return journal.send


class JournalHandler(logging.Handler):
    """Sends each record to journald as one structured entry; stderr if the journal refuses it.

    ``sender``: a function called like systemd-python's ``journal.send(MESSAGE, **fields)``; default:
    that one when systemd-python imports, else the native protocol on ``socket_path``.
    """

    def __init__(self, socket_path: str = JOURNAL_SOCKET, sender: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self.socket_path = socket_path
        self._sock: socket.socket | None = None
        # libsystemd only knows the real journal socket; a handler aimed elsewhere (tests) speaks the protocol.
        library = _library_send() if sender is None and socket_path == JOURNAL_SOCKET else None
        self.sender = sender or library or self._send_native
        self.via = "systemd-python" if library is not None else "given" if sender is not None else "socket"

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        message = self.format(record)
        if len(message.encode("utf-8", "replace")) > MAX_MESSAGE_BYTES:
            message = message.encode("utf-8", "replace")[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore") + " [cut]"
        fields = {
            "MESSAGE": message,
            "PRIORITY": str(_priority(record.levelno)),
            "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
            "LOGGER": record.name,
            "THREAD_NAME": record.threadName or "",
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName or "",
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and value is not None and _FIELD_NAME.fullmatch(name):
                fields[name.upper()] = str(value)
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = self.fields(record)
            message = fields.pop("MESSAGE")
            self.sender(message, **fields)
        except OSError:
            # journald gone (or the entry too large): the line still reaches systemd's stderr stream.
            sys.stderr.write(f"{record.levelname} {record.name}: {record.getMessage()}\n")
        except Exception:
            self.handleError(record)

    def _send_native(self, message: str, **fields: str) -> None:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.sendto(encode_journal_fields({"MESSAGE": message, **fields}), self.socket_path)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        super().close()


def log_destination() -> str:
    """Where setup_logging sent the logs: 'journald' or 'stderr' (for the start banner)."""
    root = logging.getLogger()
    return "journald" if any(isinstance(h, JournalHandler) for h in root.handlers) else "stderr"


def setup_logging(level: str = "INFO", *, journal: bool | None = None) -> None:
    """``journal``: None = journald when stderr is systemd's journal stream, else stderr."""
    if journal is None:
        journal = journal_stream_is_stderr()
    handler: logging.Handler
    if journal:
        handler = JournalHandler()
        # The journal stamps time, priority and process itself.
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # watchdog logs every inotify event at DEBUG; that is noise even when debugging edged.
    logging.getLogger("watchdog").setLevel(max(logging.INFO, root.level))
