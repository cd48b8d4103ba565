"""The ``edged`` command: run, status, submit, analyze, eval, learn, templates, config check, db vacuum/check/recover,
model, teacher, version."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import tomli_w

from edged import __version__
from edged.backends.base import ModelUnavailable
from edged.config import ConfigError, effective_config, load_config
from edged.store.database import DatabaseDamaged, is_damage


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS,
        help="TOML config file (default: ./edged.toml, then /etc/edged/edged.toml, else embedded defaults)",
    )
    parser = argparse.ArgumentParser(prog="edged", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    status = sub.add_parser("status", parents=[common], help="counts of records, rejected inputs, file positions")
    status.add_argument("--json", action="store_true", help="machine-readable output (stable keys)")
    submit = sub.add_parser("submit", parents=[common], help="enqueue an incident report")
    submit.add_argument("text", nargs="?", help="the report; read from stdin when omitted or '-'")
    submit.add_argument("--machine", help="machine the report is about")
    submit.add_argument("--id", dest="given_id", help="your id for the report; submitting it again is a no-op")
    analyze = sub.add_parser("analyze", parents=[common], help="analyze one text with the model and print the result")
    analyze.add_argument("text", nargs="?", help="the text; read from stdin when omitted or '-'")
    analyze.add_argument("--task", choices=["classify", "extract", "summarize"], action="append",
                         help="task to run (repeatable; default: classify and extract, plus summarize for incidents)")
    analyze.add_argument("--kind", choices=["log", "incident"], default="log", help="what the text is")
    analyze.add_argument("--machine", help="machine the text comes from")
    analyze.add_argument("--json", action="store_true", help="print JSON")
    ev = sub.add_parser("eval", parents=[common],
                        help="score classifications (or, with --task extract, extracted fields) against a labelled CSV")
    ev.add_argument("--data", type=Path, required=True, metavar="FILE.csv", help="CSV file with a header row")
    ev.add_argument("--text-col", required=True, metavar="C", help="column holding the text to classify")
    ev.add_argument("--label-col", metavar="L", help="column holding the true label (classify)")
    ev.add_argument("--task", choices=["classify", "extract"], default="classify", help="task to score")
    ev.add_argument("--field", action="append", metavar="FIELD=COL",
                    help="(extract) the column holding a field's true value; COL1+COL2 joins columns with a space"
                         " (repeatable): --field event_time=Date+Time --field level=Level")
    ev.add_argument("--labels-from-data", action="store_true",
                    help="the taxonomy is the data's distinct labels (sorted) instead of [analysis] labels")
    ev.add_argument("--map", action="append", metavar="MODEL=DATA",
                    help="keep the configured taxonomy and score model label MODEL as data label DATA "
                         "(repeatable or comma-separated; every taxonomy label must be mapped)")
    ev.add_argument("--limit", type=int, metavar="N", help="use only the first N rows of the file")
    ev.add_argument("--level-col", metavar="V",
                    help="column holding each line's level, as a parsed log header gives it ([analysis] levels)")
    ev.add_argument("--message-col", metavar="M",
                    help="column holding each line's message, the text after its header, as a parsed log header"
                         " splits it off (the lexicon and the dump-line rule read it)")
    ev.add_argument("--kind", choices=["log", "incident"], default="log", help="what the texts are")
    ev.add_argument("--paths", default="triage,slm,routed", metavar="P,..",
                    help="paths to score: triage (the classifier alone), slm (the model alone), routed (what edged"
                         " does); default: all")
    ev.add_argument("--no-triage", action="store_true", help="leave the triage classifier out (the model decides all)")
    ev.add_argument("--no-examples", action="store_true", help="no retrieved labeled examples in the model's prompts")
    ev.add_argument("--json", action="store_true", help="print JSON")
    learn = sub.add_parser(
        "learn", parents=[common], help="import labeled texts and train the triage classifier",
        description="Train the triage classifier from the labels in the store (people's corrections and imported"
        " files). With --data, first import a labeled CSV file. A new version becomes active only when it scores"
        " better than the active one on held-out labels.",
    )
    learn.add_argument("--data", type=Path, metavar="FILE.csv", help="labeled CSV file to import first")
    learn.add_argument("--text-col", metavar="C", help="column holding the text (with --data)")
    learn.add_argument("--label-col", metavar="L", help="column holding the label (with --data)")
    learn.add_argument("--holdout", type=float, default=0.0, metavar="FRACTION",
                       help="keep this fraction of the file's rows out of the store (chosen by a hash of the text)"
                            " and write them to --holdout-out, to evaluate on later")
    learn.add_argument("--holdout-out", type=Path, metavar="FILE.csv",
                       help="where the held-out rows go (default: FILE.holdout.csv beside --data)")
    learn.add_argument("--import-only", action="store_true", help="import --data without training")
    learn.add_argument("--no-model", action="store_true",
                       help="do not load the language model to measure the new version's routing (its unsure"
                            " records then keep the classifier's guess, flagged for review)")
    learn.add_argument("--json", action="store_true", help="print JSON")
    config = sub.add_parser("config", parents=[common], help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_sub.add_parser("check", parents=[common], help="validate and print the effective config, secrets redacted")
    db = sub.add_parser("db", parents=[common], help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    vacuum = db_sub.add_parser(
        "vacuum", parents=[common],
        help="rewrite the database to give the space of deleted rows back to the disk (stop edged first)",
        description="Rewrite the database file without its free pages (SQLite VACUUM). Needs free disk"
        " space of about the database's size, twice that to be safe (a temporary copy and the"
        " write-ahead log). Stop the daemon first: while it runs, vacuum waits for its lock and the"
        " daemon then waits for the vacuum.",
    )
    vacuum.add_argument("--auto-vacuum", choices=["none", "incremental"],
                        help="also switch SQLite's auto_vacuum mode; with incremental, edged gives space back"
                             " to the disk after each eviction by itself")
    db_sub.add_parser("check", parents=[common], help="check the database file for damage (SQLite quick_check)")
    db_sub.add_parser(
        "recover", parents=[common],
        help="copy what can be read from a damaged database into a new one; the damaged file is kept (stop edged first)",
    )
    sub.add_parser(
        "teacher", parents=[common],
        help="answer the escalations of many boxes with a bigger model behind an OpenAI-compatible server ([teacher])",
    )
    sub.add_parser("version", help="print the version")
    from edged.models.cli import add_model_parser

    add_model_parser(sub, common)
    from edged.analysis.templates_cli import add_templates_parser

    add_templates_parser(sub, common)
    return parser


def _load(args: argparse.Namespace):
    loaded = load_config(getattr(args, "config", None))
    from edged.logsetup import setup_logging

    setup_logging(loaded.settings.logging.level)
    return loaded


def _open_existing_db(path: Path):
    from edged.store.database import connect

    if not path.exists():
        raise ConfigError(f"no database at {path}: edged has not run with this config yet")
    return connect(path, readonly=True)


def cmd_status(args: argparse.Namespace) -> int:
    from edged.store.status import collect_status, format_status

    loaded = _load(args)
    path = loaded.settings.store.path
    status = collect_status(_open_existing_db(path), path, loaded.settings.store.max_bytes)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from edged.store.database import open_database
    from edged.submit import clean_report, incident_record, store_incident

    loaded = _load(args)
    text = sys.stdin.read() if args.text in (None, "-") else args.text
    try:
        # The same checks as the web form and the API (length, control characters).
        text, machine = clean_report(text, args.machine)
        record = incident_record(text, machine=machine, via="cli", given_id=args.given_id)
    except ValueError as exc:
        print(f"edged submit: {exc}", file=sys.stderr)
        return 2
    stored = store_incident(open_database(loaded.settings.store.path), record)
    print(record.record_id if stored else f"{record.record_id} (already stored)")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from edged.analysis.oneshot import analyze_text, default_tasks, format_analysis
    from edged.app import build_backend

    loaded = _load(args)
    text = sys.stdin.read() if args.text in (None, "-") else args.text
    if not text.strip():
        print("edged analyze: no text to analyze", file=sys.stderr)
        return 2
    backend = build_backend(loaded.settings)
    try:
        result = analyze_text(
            backend, loaded.settings.analysis, text.strip(), tasks=args.task or default_tasks(args.kind),
            kind=args.kind, machine=args.machine, timezone=loaded.settings.logs.timezone,
        )
    finally:
        backend.close()
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else format_analysis(result))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from edged.analysis.evaluate import EvalError, evaluate, format_report, load_csv, parse_label_map, resolve_labels
    from edged.app import build_backend
    from edged.triage.cli import stored_router

    loaded = _load(args)
    analysis = loaded.settings.analysis
    if args.task == "extract":
        return _eval_extract(args, loaded)
    if not args.label_col:
        print("edged eval: --label-col is required for --task classify", file=sys.stderr)
        return 2
    try:
        # The data and the options are checked before the model loads: mistakes fail in a blink.
        label_map = parse_label_map(args.map)
        data = load_csv(args.data, args.text_col, args.label_col, args.limit, level_col=args.level_col,
                        message_col=args.message_col)
        model_labels, _ = resolve_labels(data, list(analysis.labels), labels_from_data=args.labels_from_data,
                                         label_map=label_map)
    except EvalError as exc:
        print(f"edged eval: {exc}", file=sys.stderr)
        return 2
    progress = None
    if sys.stderr.isatty() and not args.json:
        def progress(done: int, total: int) -> None:
            print(f"\r{done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
    paths = tuple(p.strip() for p in args.paths.split(",") if p.strip())
    router = None if args.no_triage and args.no_examples else stored_router(loaded.settings, model_labels,
                                                                          triage=not args.no_triage,
                                                                          examples=not args.no_examples)
    needs_model = "slm" in paths or "routed" in paths  # routed asks the model where triage is unsure
    backend = build_backend(loaded.settings) if needs_model else None
    try:
        result = evaluate(backend, analysis, data, kind=args.kind, labels_from_data=args.labels_from_data,
                          label_map=label_map, progress=progress, router=router, paths=paths,
                          severities=loaded.settings.triage.severities)
    except EvalError as exc:
        print(f"edged eval: {exc}", file=sys.stderr)
        return 2
    finally:
        if backend is not None:
            backend.close()
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else format_report(result))
    return 0


def _eval_extract(args: argparse.Namespace, loaded) -> int:
    from edged.analysis.evaluate import EvalError
    from edged.analysis.evaluate_extract import (
        evaluate_extract, format_extract_report, load_extract_csv, parse_field_specs,
    )
    from edged.analysis.headers import header_parser
    from edged.app import build_backend

    try:
        fields = parse_field_specs(args.field)
        data = load_extract_csv(args.data, args.text_col, fields, args.limit)
    except EvalError as exc:
        print(f"edged eval: {exc}", file=sys.stderr)
        return 2
    backend = build_backend(loaded.settings)
    try:
        result = evaluate_extract(backend, loaded.settings.analysis, data, kind=args.kind,
                                  timezone=loaded.settings.logs.timezone,
                                  headers=header_parser(loaded.settings.logs, loaded.settings.mqtt))
    except EvalError as exc:
        print(f"edged eval: {exc}", file=sys.stderr)
        return 2
    finally:
        backend.close()
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else format_extract_report(result))
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    from edged.triage.cli import run_learn

    loaded = _load(args)
    opened = []

    def judge():
        """The model that measures the new version's routing, loaded only when a training runs."""
        from edged.analysis.routing import model_judge
        from edged.analysis.tasks import classify_spec
        from edged.app import build_backend

        from edged.backends.base import ModelUnavailable
        from edged.triage.measure import JudgeUnavailable

        try:
            backend = build_backend(loaded.settings)
        except (ModelUnavailable, OSError) as exc:
            print(f"edged learn: routing not measured: {exc}", file=sys.stderr)
            raise JudgeUnavailable(str(exc)) from None
        opened.append(backend)
        return model_judge(backend, classify_spec(loaded.settings.analysis))

    try:
        return run_learn(loaded, args, None if args.no_model or not loaded.settings.triage.routing_sample else judge)
    finally:
        for backend in opened:
            backend.close()


def cmd_db(args: argparse.Namespace) -> int:
    from edged.store.recover import check, recover
    from edged.store.vacuum import vacuum

    loaded = _load(args)
    path = loaded.settings.store.path
    if not path.exists():
        raise ConfigError(f"no database at {path}: edged has not run with this config yet")
    if args.db_command == "check":
        return check(path)
    if args.db_command == "recover":
        return recover(path)
    return vacuum(path, auto_vacuum=args.auto_vacuum)


def cmd_config_check(args: argparse.Namespace) -> int:
    from edged.preflight import check_before_start

    loaded = load_config(getattr(args, "config", None))
    check_before_start(loaded)  # what run checks before it starts anything
    where = loaded.path or "embedded defaults (no config file found)"
    print(f"# effective configuration from {where}; secrets redacted")
    print(tomli_w.dumps(effective_config(loaded.settings)), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edged.app import run_daemon
    from edged.preflight import check_before_start

    loaded = _load(args)
    check_before_start(loaded)  # the same checks as config check, before anything starts
    return run_daemon(loaded)


def cmd_teacher(args: argparse.Namespace) -> int:
    from edged.teacher.service import run_teacher

    return run_teacher(_load(args))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "version":
            print(f"edged {__version__}")
            return 0
        if args.command == "config":
            return cmd_config_check(args)
        if args.command == "templates":
            from edged.analysis.templates_cli import run_templates

            return run_templates(args, _load(args))
        if args.command == "model":
            from edged.models.cli import run_model_command

            return run_model_command(args)
        commands = {
            "run": cmd_run, "status": cmd_status, "submit": cmd_submit, "analyze": cmd_analyze, "eval": cmd_eval,
            "db": cmd_db, "learn": cmd_learn, "teacher": cmd_teacher,
        }
        return commands[args.command](args)
    except ConfigError as exc:
        print(f"edged: configuration error:\n{exc}", file=sys.stderr)
        return 2
    except ModelUnavailable as exc:
        print(f"edged: model unavailable:\n{exc}", file=sys.stderr)
        return 2
    except DatabaseDamaged as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if is_damage(exc):  # e.g. status or submit on a corrupt file
            print(f"edged: {DatabaseDamaged(_db_path(args), str(exc))}", file=sys.stderr)
            return 2
        # Anything else that stops a command (a full disk, a file system gone read-only, a bug): one
        # line that says what, exit 2 (systemd does not restart into the same failure), the
        # traceback only in the debug log.
        logging.getLogger("edged").debug("edged %s failed", args.command, exc_info=True)
        print(f"edged: {args.command} failed: {_one_line(exc)}", file=sys.stderr)
        return 2


def _db_path(args: argparse.Namespace) -> Path | str:
    try:
        return load_config(getattr(args, "config", None)).settings.store.path
    except Exception:
        return "of this config"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no details"
    return f"{type(exc).__name__}: {text}"[:1000]
