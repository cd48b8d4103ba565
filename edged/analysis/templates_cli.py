"""``edged templates FILE...``: how edged would split and group a log, without a model and without the store.

The same header parser (from [logs] format/formats) and the same miner the analyzer uses, on fresh state:
run it before pointing edged at a new machine's logs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edged.analysis.headers import header_parser
from edged.analysis.templates import TemplateStore
from edged.config import ConfigError
from edged.logformats import FORMATS, resolve_spec


def add_templates_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "templates", parents=[common], help="show how edged splits and groups the lines of log files (no model)",
        description="Parse each line's header and mine its message into templates, as the daemon does with the"
        " same settings, without a model and without touching the database.",
    )
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="log files ('-' for standard input)")
    p.add_argument("--json", action="store_true", help="one JSON object per input line, in input order")
    p.add_argument("--format", metavar="NAME", help="header format for every file: a format name, a regex or auto"
                                                   " (default: the [logs] format and formats settings)")
    p.add_argument("--list-formats", action="store_true", help="list the named formats with an example line each")


def _lines(path: Path) -> list[str]:
    data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    return data.decode("utf-8", "replace").splitlines()


def run_templates(args: argparse.Namespace, loaded: Any) -> int:
    if args.list_formats:
        for f in FORMATS:
            print(f"{f.name}\n  {f.description}\n  e.g. {f.example}")
        return 0
    if not args.files:
        raise ConfigError("edged templates: name at least one FILE (or '-' for standard input)")
    if args.format is not None:
        try:
            resolve_spec(args.format)
        except ValueError as exc:
            raise ConfigError(f"--format: {exc}") from None
    s = loaded.settings
    parser = header_parser(s.logs, s.mqtt, override=args.format)
    miner = TemplateStore()
    rows: list[dict[str, Any]] = []
    for path in args.files:
        try:
            lines = _lines(path)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        source = "file:-" if str(path) == "-" else f"file:{path.resolve()}"
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            parsed = parser.parse(source, text)
            header = parsed.header or {}
            message = parsed.message if parsed.message is not None else text
            mined = miner.mine(message, header.get("level"), header.get("component"))
            rows.append({"file": str(path), "line": number, "template_id": mined.template_id,
                         "format": header.get("format"), "fields": {k: v for k, v in header.items() if k != "format"},
                         "message": message})
    for row in rows:  # the grouping as it ends up: a template that generalised later covers its earlier lines
        row["template_id"] = miner.resolve(row["template_id"])
        row["template"] = miner.template(row["template_id"])
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        _print_table(rows)
    return 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["template_id"], []).append(row)
    unparsed = sum(1 for r in rows if r["format"] is None)
    formats = sorted({r["format"] for r in rows if r["format"]})
    print(f"{len(rows)} lines, {len(groups)} templates; formats: {', '.join(formats) or 'none'};"
          f" {unparsed} lines without a parsed header")
    print(f"{'id':>6} {'lines':>6}  {'level':<8} {'component':<24} template / example")
    for tid, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        first = members[0]
        fields = first["fields"]
        print(f"{tid:>6} {len(members):>6}  {fields.get('level', '-'):<8.8} {fields.get('component', '-'):<24.24}"
              f" {first['template']}")
        print(f"{'':>40} e.g. {first['file']}:{first['line']}: {first['message'][:120]}")
