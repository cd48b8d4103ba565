"""``edged model list | fetch NAME | verify [NAME | --path FILE] | quantize IN OUT --type T``.

Mounted into the ``edged`` command by ``add_model_parser``; ``run_model_command`` runs one and
returns the exit status (0 ok, 1 the model is not usable / the action failed, 2 usage or config).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edged.backends.base import ModelUnavailable


def add_model_parser(subparsers: argparse._SubParsersAction, common_parent: argparse.ArgumentParser) -> None:
    """Add ``model`` and its actions to ``edged``'s subparsers; ``common_parent`` carries --config."""
    model = subparsers.add_parser(
        "model", parents=[common_parent], help="known models: list, fetch, verify, quantize",
        description="Models from the manifest shipped with edged: list them, fetch and verify files, quantize.",
    )
    actions = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    dir_help = "model directory (default: [model] dir of the config)"

    p = actions.add_parser("list", parents=[common_parent], help="the models in the manifest, and which are present")
    p.add_argument("--dir", type=Path, help=dir_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = actions.add_parser("fetch", parents=[common_parent], help="download a model into the model directory and verify it")
    p.add_argument("name", help="a model name from `edged model list`")
    p.add_argument("--dir", type=Path, help=dir_help)
    p.add_argument("--force", action="store_true", help="download again even if a verified file is present")

    p = actions.add_parser(
        "verify", parents=[common_parent],
        help="check a model file against the manifest (default: the configured model)",
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument("name", nargs="?", help="a model name (default: [model] name, or [model] path if set)")
    target.add_argument("--path", type=Path, help="a GGUF file to check")
    p.add_argument("--dir", type=Path, help=dir_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = actions.add_parser(
        "quantize", parents=[common_parent], help="quantize a GGUF file with llama.cpp and report the tensor types",
    )
    p.add_argument("input", type=Path, help="GGUF file to quantize (F16/F32 for a faithful result)")
    p.add_argument("output", type=Path, help="GGUF file to write")
    p.add_argument("--type", dest="qtype", default="Q4_K_M", metavar="TYPE",
                   help="target type, e.g. Q4_K_M (default), Q5_K_M, Q8_0, Q4_0")
    p.add_argument("--allow-requantize", action="store_true",
                   help="accept an input that is already quantized (quality suffers: a second rounding)")
    p.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace the output file if it exists")
    p.add_argument("--verbose", action="store_true", help="show llama.cpp's log")
    p.add_argument("--json", action="store_true", help="machine-readable report")


def _settings(args: argparse.Namespace):
    """The [model] settings from the config; --dir overrides [model] dir."""
    from edged.config import load_config

    model = load_config(getattr(args, "config", None)).settings.model
    if getattr(args, "dir", None) is not None:
        model = model.model_copy(update={"dir": args.dir})
    return model


def _err(message: str) -> None:
    print(f"edged model: {message}", file=sys.stderr)


def _cmd_list(args: argparse.Namespace) -> int:
    from edged.models.manifest import load_manifest

    settings = _settings(args)
    rows = []
    for entry in load_manifest().values():
        path = settings.dir / entry.file
        rows.append({
            "name": entry.name,
            "configured": entry.name == settings.name and settings.path is None,
            "file": entry.file,
            "quantization": entry.quantization,
            "params": entry.params,
            "size": entry.size,
            "sha256": entry.sha256,
            "source": entry.source,
            "from": entry.where,
            "licence": entry.licence,
            "hardware": entry.hardware,
            "present": path.is_file(),
            "path": str(path),
            "notes": entry.notes,
        })
    if args.json:
        print(json.dumps({"dir": str(settings.dir), "models": rows}, indent=2))
        return 0
    print(f"models in the manifest ([model] dir = {settings.dir}; * = configured):")
    for r in rows:
        size = f"{r['size'] / 1e6:.0f} MB" if r["size"] else "size ?"
        mark = "*" if r["configured"] else " "
        state = "present" if r["present"] else "not fetched"
        print(f"{mark} {r['name']:<24} {r['params']:>5} {r['quantization']:<7} {size:>8}  {r['source']:<11} {state}")
        print(f"      {r['file']} from {r['from']}")
        print(f"      licence: {r['licence']}; hardware: {r['hardware']}")
        if r["source"] == "url":
            print("      only fetchable on a box with internet access; no checksum in the manifest")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from edged.models.fetch import FetchError, fetch_model
    from edged.models.manifest import load_manifest

    settings = _settings(args)
    manifest = load_manifest()
    entry = manifest.get(args.name)
    if entry is None:
        _err(f"unknown model {args.name!r}; known models: {', '.join(manifest)}")
        return 2
    try:
        fetch_model(entry, settings.dir, force=args.force)
    except FetchError as exc:
        _err(str(exc))
        return 1
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from edged.models.gguf import NotGGUF, read_header
    from edged.models.manifest import load_manifest
    from edged.models.resolve import check_file, model_file

    settings = _settings(args)
    manifest = load_manifest()
    if args.path is not None:
        path = args.path
        entry = next((e for e in manifest.values() if e.file == path.name), None)
    elif args.name is None and settings.path is not None:
        path = settings.path
        entry = next((e for e in manifest.values() if e.file == path.name), None)
    else:
        try:
            entry, path = model_file(settings.model_copy(update={"name": args.name or settings.name}), manifest)
        except ModelUnavailable as exc:
            _err(str(exc))
            return 2
    if not path.is_file():
        _err(f"{path}: no such file" + (f"; get it with: edged model fetch {entry.name}" if entry else ""))
        return 1
    try:
        header = read_header(path)
    except NotGGUF as exc:
        _err(f"{path} is not a GGUF model file ({exc}): it is corrupt or not a model")
        return 1
    check = check_file(path, entry, use_cache=False)  # an explicit verify always reads the whole file
    if entry is None:
        match = next((e for e in manifest.values() if e.sha256 == check.sha256), None)
        if match is not None:
            entry = match
            check = check_file(path, entry)
    if entry is None:
        verdict, status = "not in the manifest: cannot be verified", 1
    elif not check.has_checksum:
        verdict, status = "no checksum in manifest: cannot be verified", 1
    elif check.ok:
        verdict, status = "OK: size and sha256 match the manifest", 0
    else:
        verdict, status = "MISMATCH: the file is not the one the manifest lists", 1
    result = {
        "path": str(path),
        "model": entry.name if entry else None,
        "size": check.size,
        "sha256": check.sha256,
        "expected_size": check.expected_size,
        "expected_sha256": check.expected_sha256,
        "verified": check.ok,
        "verdict": verdict,
        "gguf": {
            "version": header.version,
            "architecture": header.architecture,
            "name": header.metadata.get("general.name"),
            "file_type": header.file_type,
            "tensors": len(header.tensors),
            "tensor_types": dict(header.type_counts()),
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return status
    print(f"{path}")
    print(f"  model:     {result['model'] or '(not in the manifest)'}")
    print(f"  gguf:      v{header.version}, {header.architecture}, {header.metadata.get('general.name')!r},"
          f" {header.file_type}, {len(header.tensors)} tensors")
    print(f"  size:      {check.size:,} bytes" + (f" (expected {check.expected_size:,})" if check.expected_size else ""))
    print(f"  sha256:    {check.sha256}")
    if check.expected_sha256:
        print(f"  expected:  {check.expected_sha256}")
    print(f"  result:    {verdict}")
    if status and entry is not None and check.has_checksum:
        print(f"  fix:       edged model fetch {entry.name} (replaces it), or [model] trust_unverified = true")
    elif status and entry is not None:
        print("  to use it: check the sha256 with the publisher, then set [model] trust_unverified = true")
    return status


def _cmd_quantize(args: argparse.Namespace) -> int:
    from edged.models.quantize import QuantizeError, quantize_model

    try:
        report = quantize_model(
            args.input, args.output, args.qtype,
            allow_requantize=args.allow_requantize, threads=args.threads, overwrite=args.force,
            verbose=args.verbose,
        )
    except QuantizeError as exc:
        _err(str(exc))
        return 1
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0


def run_model_command(args: argparse.Namespace) -> int:
    """Run ``edged model ACTION``; returns the exit status."""
    from edged.config import ConfigError
    from edged.models.manifest import ManifestError

    commands = {"list": _cmd_list, "fetch": _cmd_fetch, "verify": _cmd_verify, "quantize": _cmd_quantize}
    try:
        return commands[args.model_command](args)
    except ConfigError as exc:
        print(f"edged: configuration error:\n{exc}", file=sys.stderr)
        return 2
    except ManifestError as exc:
        _err(f"the model manifest is invalid (a bug in edged): {exc}")
        return 2
