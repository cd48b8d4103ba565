"""The manifest of known models (manifest.toml, shipped inside the package): load and validate.

``load_manifest()`` returns ``{name: ModelEntry}`` in file order. A broken manifest is a bug in
edged, not an operator mistake, so it raises ``ManifestError`` naming the entry and the field.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 on Jetson
    import tomli as tomllib

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """The manifest file is unreadable or an entry is invalid."""


class Chunk(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    package: str = Field(description="the PyPI package holding this chunk")
    member: str = Field(description="the chunk's path inside the wheel")
    size: int | None = Field(None, gt=0, description="the chunk's size in bytes")


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    file: str = Field(description="file name under [model] dir")
    quantization: str
    size: int | None = Field(None, gt=0, description="bytes; None when not recorded")
    sha256: str | None = Field(None, description="lower-case hex; None when not recorded")
    source: Literal["pypi", "pypi-chunks", "url"]
    package: str | None = None
    version: str | None = None
    member: str | None = None
    chunks: list[Chunk] = Field(default_factory=list)
    url: str | None = None
    licence: str
    params: str
    hardware: str
    notes: str = ""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower-case letters, digits, '.', '_' or '-'")
        return value

    @field_validator("file")
    @classmethod
    def _check_file(cls, value: str) -> str:
        if "/" in value or "\\" in value or value in (".", "..") or not value.endswith(".gguf"):
            raise ValueError("must be a plain file name ending in .gguf")
        return value

    @field_validator("sha256", mode="before")
    @classmethod
    def _check_sha256(cls, value: object) -> object:
        if value in ("", None):
            return None
        if not isinstance(value, str) or not _SHA256.match(value.lower()):
            raise ValueError("must be 64 hex digits")
        return value.lower()

    @model_validator(mode="after")
    def _check_source(self) -> "ModelEntry":
        need: dict[str, tuple[str, ...]] = {
            "pypi": ("package", "version", "member"),
            "pypi-chunks": ("version", "chunks"),
            "url": ("url",),
        }
        missing = [key for key in need[self.source] if not getattr(self, key)]
        if missing:
            raise ValueError(f"source = {self.source!r} needs {', '.join(missing)}")
        if self.source == "url" and not self.url.startswith(("https://", "http://")):
            raise ValueError("url must be http(s)://")
        if self.source == "pypi-chunks":
            sizes = [c.size for c in self.chunks]
            if self.size and all(sizes) and sum(sizes) != self.size:
                raise ValueError(f"chunk sizes add up to {sum(sizes)}, not size = {self.size}")
        return self

    @property
    def where(self) -> str:
        """Where the file comes from, in words."""
        if self.source == "pypi":
            return f"PyPI package {self.package}=={self.version}"
        if self.source == "pypi-chunks":
            return f"{len(self.chunks)} PyPI chunk packages ({self.package or self.chunks[0].package}, {self.version})"
        return self.url or ""


def manifest_path() -> Path:
    return Path(str(resources.files("edged.models").joinpath("manifest.toml")))


def parse_manifest(text: str, origin: str = "manifest.toml") -> dict[str, ModelEntry]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{origin}: invalid TOML: {exc}") from None
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise ManifestError(f"{origin}: no [models.<name>] entries")
    entries: dict[str, ModelEntry] = {}
    problems = []
    for name, fields in models.items():
        if not isinstance(fields, dict):
            problems.append(f"[models.{name}] is not a table")
            continue
        try:
            entries[name] = ModelEntry(name=name, **fields)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "entry"
                problems.append(f"[models.{name}] {where}: {err['msg'].removeprefix('Value error, ')}")
    files = [e.file for e in entries.values()]
    for dup in sorted({f for f in files if files.count(f) > 1}):
        problems.append(f"file {dup} is listed by more than one model")
    if problems:
        raise ManifestError(f"{origin}: " + "; ".join(problems))
    return entries


@lru_cache(maxsize=1)
def _load_cached() -> dict[str, ModelEntry]:
    path = manifest_path()
    return parse_manifest(path.read_text(encoding="utf-8"), str(path))


def load_manifest() -> dict[str, ModelEntry]:
    """The known models by name, in manifest order (a fresh dict; entries are immutable)."""
    return dict(_load_cached())
