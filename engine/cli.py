"""The `flowkernel` command: migrate a database, load, dump and show classes, run the demo."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import io
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Final, TypeAlias

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from engine import database
from engine.actors import SYSTEM, Actor
from engine.board_view import render_board
from engine.compiler import CompiledClass
from engine.delivery import DeliveryReport
from engine.diagram import FORMATS as DIAGRAM_FORMATS
from engine.diagram import draw
from engine.documents import FORMATS, dump_class, dumps, load_class, loads
from engine.errors import (
    ColumnInactive,
    DatabaseError,
    DatabaseNotMigrated,
    DatabaseUnreachable,
    DefinitionError,
    ExecutionError,
    FlowkernelError,
    InvalidArgument,
    ItemNotFound,
    MethodNotAvailable,
    UnknownDefinition,
)
from engine.fields import normalize
from engine.flowkernel import Flowkernel
from engine.pipeline_documents import dump_pipeline, load_pipeline, parse_pipeline_text
from engine.pipelines import PipelineInfo
from engine.progress import Progress
from engine.sla import SlaReport
from engine.snapshots import ExecutionResult, ItemSnapshot

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_DEFINITION: Final = 3
EXIT_EXECUTION: Final = 4
EXIT_DATABASE: Final = 5
EXIT_INTERRUPTED: Final = 130

EPILOG: Final = f"""\
database:
  --database-url, else ${database.ENV_VAR}, else the SQLite file flowkernel.db in the
  current folder. PostgreSQL: postgresql://user@host:5432/name (driver psycopg).

exit status:
  {EXIT_OK}  success
  {EXIT_ERROR}  another Flowkernel error
  {EXIT_USAGE}  usage error: bad arguments, unreadable file, invalid database URL
  {EXIT_DEFINITION}  definition error: invalid class document, unknown class, state or method
  {EXIT_EXECUTION}  execution error: an operation on items was refused
  {EXIT_DATABASE}  database unreachable, or not migrated (run `flowkernel db upgrade`)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
"""

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A mistake on the command line; the command exits with status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: the process's); the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command: Command = args.command
    try:
        return command(args)
    except BrokenPipeError:  # the reader of our output went away (`| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:  # Ctrl-C: the user's choice, not a crash
        print("flowkernel: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        refusal = refusal_of(exc, item=getattr(args, "item", None))
        if refusal is None:
            raise  # a bug: the traceback is what a report needs
        return _fail(*refusal)


def refusal_of(exc: BaseException, item: int | None = None) -> tuple[str, str, int] | None:
    """A user error as (kind, message naming the next step, exit status); None for a bug.

    `item` is the item the command was about, named in hints.
    """
    if isinstance(exc, UsageError):
        return "usage error", str(exc), EXIT_USAGE
    if isinstance(exc, UnknownDefinition):
        listing = {"class": "class", "pipeline": "pipeline"}.get(exc.kind)
        hint = f"; `flowkernel {listing} list` shows them" if listing else ""
        return "definition error", exc.message + hint, EXIT_DEFINITION
    if isinstance(exc, DefinitionError):
        return "definition error", exc.message, EXIT_DEFINITION
    if isinstance(exc, MethodNotAvailable):
        hint = f"; `flowkernel item explain {item or 'ITEM'} {exc.method}` tells why"
        return "execution error", exc.message + hint, EXIT_EXECUTION
    if isinstance(exc, ItemNotFound):
        return "execution error", exc.message + " (`--account ID` sets it)", EXIT_EXECUTION
    if isinstance(exc, ExecutionError):
        return "execution error", exc.message, EXIT_EXECUTION
    if isinstance(exc, DatabaseError):
        return "database error", exc.message, EXIT_DATABASE
    if isinstance(exc, FlowkernelError):
        return "error", exc.message, EXIT_ERROR
    if isinstance(exc, OperationalError):  # a statement failed: database locked, read-only
        return (
            "database error",
            f"{database.first_line(exc)}; check that the database is reachable",
            EXIT_DATABASE,
        )
    return None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `flowkernel` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="flowkernel",
        description="A persistent state-machine and pipeline engine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help=f"database to use (default: ${database.ENV_VAR}, else sqlite:///flowkernel.db)",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="migrate the database schema", epilog=EPILOG)
    db_commands = db.add_subparsers(title="db commands", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser("upgrade", help="migrate up to REV (default: head)")
    upgrade.add_argument("revision", nargs="?", default="head", metavar="REV")
    upgrade.set_defaults(command=_db_upgrade)
    downgrade = db_commands.add_parser("downgrade", help="migrate down to REV (base: empty)")
    downgrade.add_argument("revision", metavar="REV")
    downgrade.set_defaults(command=_db_downgrade)
    current = db_commands.add_parser("current", help="print the revision of the database")
    current.set_defaults(command=_db_current)

    cls = commands.add_parser("class", help="load, dump, list and show classes", epilog=EPILOG)
    cls_commands = cls.add_subparsers(title="class commands", required=True, metavar="COMMAND")
    load = cls_commands.add_parser("load", help="create a class from a YAML or JSON document")
    load.add_argument("file", metavar="FILE", help="the document; - reads standard input")
    load.add_argument(
        "--format", choices=FORMATS, help="document format (default: by suffix or content)"
    )
    load.set_defaults(command=_class_load)
    dump = cls_commands.add_parser("dump", help="print a class as a document")
    dump.add_argument("code", metavar="CODE")
    dump.add_argument("--format", choices=FORMATS, default="yaml", help="default: yaml")
    dump.set_defaults(command=_class_dump)
    listing = cls_commands.add_parser("list", help="list the classes")
    listing.set_defaults(command=_class_list)
    show = cls_commands.add_parser(
        "show", help="print a class's states, methods, transitions and events"
    )
    show.add_argument("code", metavar="CODE")
    show.set_defaults(command=_class_show)
    for sub in (load, dump, listing, show):
        sub.add_argument(
            "--account-id",
            "--account",
            type=int,
            metavar="ID",
            help="the tenant account (default: platform-wide classes only)",
        )

    diagram = commands.add_parser(
        "diagram", help="draw a class's state machine as Mermaid, dot or SVG", epilog=EPILOG
    )
    diagram.add_argument("code", metavar="CODE", help="class or pipeline code, or its id")
    diagram.add_argument(
        "--format", choices=DIAGRAM_FORMATS, default="mermaid", help="default: mermaid"
    )
    diagram.add_argument("--counts", action="store_true", help="show item counts per state")
    diagram.add_argument(
        "--account",
        type=int,
        metavar="N",
        help="the tenant account (default: platform-wide classes, items of every account)",
    )
    diagram.add_argument("--output", metavar="FILE", help="write to FILE, not standard output")
    diagram.set_defaults(command=_diagram)

    _add_pipeline_commands(commands)
    _add_item_commands(commands)
    _add_board_command(commands)
    _add_worker_commands(commands)
    _add_serve_commands(commands)

    demo = commands.add_parser("demo", help="run the shipped examples on the database")
    demo.set_defaults(command=_demo)
    bench = commands.add_parser(
        "bench", help="measure the engine against raw driver SQL and a hand-rolled ORM"
    )
    bench.add_argument("--quick", action="store_true", help="a short run: under a minute")
    bench.add_argument("--smoke", action="store_true", help="a tiny run that checks the output")
    bench.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    bench.add_argument(
        "--scenario",
        action="append",
        choices=("move", "heartbeat", "batch", "http", "compile", "million", "memory"),
        metavar="NAME",
        help="run only this scenario group (repeatable): move, heartbeat, batch, http, compile, "
        "million (the board and SLA scenarios of the full run), memory",
    )
    bench.set_defaults(command=_bench)
    _add_database_option_everywhere(parser)
    return parser


# --- db ----------------------------------------------------------------------------------


def _db_upgrade(args: argparse.Namespace) -> int:
    engine = _connect(args, migrated=False, create=True)
    try:
        database.upgrade(engine, args.revision)
        revision = database.current_revision(engine)
        print(f"{database.shown_url(engine)}: at revision {_describe(revision)}")
    finally:
        engine.dispose()
    return EXIT_OK


def _db_downgrade(args: argparse.Namespace) -> int:
    engine = _connect(args, migrated=False)
    try:
        database.downgrade(engine, args.revision)
        revision = database.current_revision(engine)
        print(f"{database.shown_url(engine)}: at revision {_describe(revision)}")
    finally:
        engine.dispose()
    return EXIT_OK


def _db_current(args: argparse.Namespace) -> int:
    url = _url(args)
    if _missing_sqlite_file(url):
        print(_describe(None))
        return EXIT_OK
    engine = _connect(args, migrated=False)
    try:
        print(_describe(database.current_revision(engine)))
    finally:
        engine.dispose()
    return EXIT_OK


def _describe(revision: str | None) -> str:
    head = database.head_revision()
    if revision is None:
        return f"none (not migrated; head is {head})"
    return f"{revision} (head)" if revision == head else f"{revision} (head is {head})"


# --- class -------------------------------------------------------------------------------


def _class_load(args: argparse.Namespace) -> int:
    text = _read(args.file)
    fmt = args.format
    if fmt is None and args.file != "-":
        fmt = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(Path(args.file).suffix)
    document = loads(text, fmt)
    with _kernel(args) as fk:
        info = load_class(fk, document, args.account_id)
        counts = {
            "states": len(fk.definitions.list_states(info.code, args.account_id)),
            "methods": len(fk.definitions.list_methods(info.code, args.account_id)),
            "transitions": len(fk.definitions.list_transitions(info.code, args.account_id)),
            "events": len(fk.definitions.list_events(info.code, args.account_id)),
        }
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    print(f"loaded class {info.code!r} ({summary}), version {info.version}")
    return EXIT_OK


def _class_dump(args: argparse.Namespace) -> int:
    with _kernel(args) as fk:
        document = dump_class(fk, args.code, args.account_id)
    sys.stdout.write(dumps(document, args.format))
    return EXIT_OK


def _class_list(args: argparse.Namespace) -> int:
    with _kernel(args) as fk:
        classes = fk.definitions.list_classes(args.account_id)
    print(
        _table(
            ("code", "label", "parent", "movement", "abstract", "account", "version"),
            [
                (c.code, c.label, c.parent, c.movement, c.is_abstract, c.account_id, c.version)
                for c in classes
            ],
        )
    )
    return EXIT_OK


def _class_show(args: argparse.Namespace) -> int:
    account = args.account_id
    with _kernel(args) as fk:
        d = fk.definitions
        info = d.get_class(args.code, account)
        states = d.list_states(args.code, account)
        methods = d.list_methods(args.code, account)
        transitions = d.list_transitions(args.code, account)
        events = d.list_events(args.code, account)
        rules = d.list_access_rules(args.code, account)
    header = (
        f"class {info.code}: {info.label}\n"
        f"parent {_cell(info.parent)}, movement {info.movement}, abstract {_cell(info.is_abstract)}"
        f", account {_cell(info.account_id)}, version {info.version}"
    )
    sections = [
        header,
        _section(
            "states",
            ("code", "type", "label", "position"),
            [(s.code, s.state_type, s.label, s.position) for s in states],
        ),
        _section(
            "methods",
            ("state", "code", "action", "label", "sequence", "visible"),
            [
                (m.state or "(global)", m.code, m.action, m.label, m.sequence, m.visible)
                for m in methods
            ],
        ),
        _section(
            "transitions",
            ("from", "method", "to"),
            [(t.state or "(any)", t.method, t.new_state) for t in transitions],
        ),
        _section(
            "events",
            ("action", "sequence", "handler", "label", "enabled"),
            [
                (e.action, e.sequence, "(parent)" if e.is_parent else e.handler, e.label, e.enabled)
                for e in events
            ],
        ),
    ]
    if rules:
        sections.append(
            _section(
                "access rules",
                ("method", "subject kind", "subject", "permission", "effect"),
                [
                    (r.method or "(every)", r.subject_kind, r.subject, r.permission, r.effect)
                    for r in rules
                ],
            )
        )
    print("\n\n".join(sections))
    return EXIT_OK


def _section(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    return f"{title} ({len(rows)})\n{_table(headers, rows)}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; `-` for empty values."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# --- diagram -----------------------------------------------------------------------------


def _diagram(args: argparse.Namespace) -> int:
    ref: str | int = int(args.code) if args.code.isdigit() else args.code
    with _kernel(args) as fk:
        text = draw(fk, ref, Actor.system(args.account), args.format, counts=args.counts)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    return EXIT_OK


# --- demo --------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    url = _url(args)
    try:
        demo = importlib.import_module("engine.demo")
    except ModuleNotFoundError as exc:
        if exc.name != "engine.demo":
            raise
        raise FlowkernelError("this installation has no demo (engine.demo is missing)") from exc
    run: Callable[[str], object] = demo.run
    status = run(url)
    return status if isinstance(status, int) else EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    # imported here: the benchmarks are not needed by any other command
    bench: Callable[..., int] = importlib.import_module("engine.benchmarks").main
    return bench(
        _url(args), quick=args.quick, smoke=args.smoke, json_path=args.json, only=args.scenario
    )


# --- pipeline ----------------------------------------------------------------------------

PIPELINE_CREATE_HELP: Final = """\
From a document: `flowkernel pipeline create sales.yaml --account 1`; its keys are described
in docs/cli.md. From options: `flowkernel pipeline create --account 1 --name Sales
--stage Lead --stage Won:won --stage Lost:lost --column amount:number
--column priority:select:High,Low`.
"""


def _add_pipeline_commands(commands: _Commands) -> None:
    pipeline = commands.add_parser(
        "pipeline", help="create, list, show, dump and clone pipelines", epilog=EPILOG
    )
    sub = pipeline.add_subparsers(title="pipeline commands", required=True, metavar="COMMAND")

    create = sub.add_parser(
        "create",
        help="create a pipeline from a YAML or JSON document, or from options",
        epilog=PIPELINE_CREATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument(
        "file", nargs="?", metavar="FILE", help="a pipeline document; - reads standard input"
    )
    create.add_argument("--format", choices=FORMATS, help="default: by suffix or content")
    create.add_argument("--name", help="the pipeline's name (without FILE)")
    create.add_argument("--code", help="the pipeline's code (default: none)")
    create.add_argument("--object-type", metavar="TYPE", help="the type of objects it holds")
    create.add_argument(
        "--stage",
        action="append",
        default=[],
        metavar="NAME[:won|:lost]",
        help="a stage, in order (repeatable); :won or :lost marks the outcome stages",
    )
    create.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="NAME[:TYPE[:OPTIONS]]",
        help="a custom column (repeatable), e.g. amount:number or priority:select:High,Low",
    )
    create.add_argument("--template", action="store_true", help="create a template")
    create.set_defaults(command=_pipeline_create)

    listing = sub.add_parser("list", help="the pipelines the actor reads")
    kind = listing.add_mutually_exclusive_group()
    kind.add_argument(
        "--templates", dest="templates", action="store_const", const=True, help="templates only"
    )
    kind.add_argument(
        "--live", dest="templates", action="store_const", const=False, help="no templates"
    )
    listing.set_defaults(command=_pipeline_list)

    show = sub.add_parser(
        "show", help="print a pipeline's stages, columns, movement rules and automations"
    )
    show.add_argument("pipeline", metavar="PIPELINE", help="pipeline id or code")
    show.set_defaults(command=_pipeline_show)

    dump = sub.add_parser("dump", help="print a pipeline as a document `create` reads")
    dump.add_argument("pipeline", metavar="PIPELINE", help="pipeline id or code")
    dump.add_argument("--format", choices=FORMATS, default="yaml", help="default: yaml")
    dump.set_defaults(command=_pipeline_dump)

    clone = sub.add_parser(
        "clone-template", help="copy a template into a live pipeline of --account"
    )
    clone.add_argument("template", metavar="TEMPLATE", help="template id or code")
    clone.add_argument("--name", help="the copy's name (default: the template's)")
    clone.add_argument("--code", help="the copy's code (default: the template's)")
    clone.set_defaults(command=_pipeline_clone)

    remove = sub.add_parser(
        "remove-stage", help="remove a stage, moving its items to --target first"
    )
    remove.add_argument("pipeline", metavar="PIPELINE", help="pipeline id or code")
    remove.add_argument("stage", metavar="STAGE", help="stage code or id")
    remove.add_argument("--target", metavar="STAGE", help="where the stage's items go")
    remove.add_argument(
        "--dry-run", action="store_true", help="list the items that would move; change nothing"
    )
    remove.set_defaults(command=_pipeline_remove_stage)

    for parser in (create, listing, show, dump, clone, remove):
        _add_actor_options(parser)
    for parser in (create, listing, show, clone, remove):
        _add_json_option(parser)


def _pipeline_create(args: argparse.Namespace) -> int:
    from_options = (args.name, args.code, args.object_type, args.stage, args.column)
    if args.file is not None:
        if any(from_options) or args.template:
            raise UsageError(
                "pass a pipeline document FILE or --name with --stage and --column, not both"
            )
        document = parse_pipeline_text(_read(args.file), args.format or _format_of(args.file))
    elif args.name is None:
        raise UsageError(
            "pass a pipeline document FILE, or --name with --stage and --column; "
            "see `flowkernel pipeline create --help`"
        )
    else:
        document = _pipeline_document(args)
    actor = _actor(args)
    if actor.account_id is None and not document.get("is_system"):
        raise UsageError("a pipeline belongs to an account: pass --account ID")
    with _kernel(args) as fk:
        info = load_pipeline(fk, document, actor)
    if args.json:
        _print_json(info)
    else:
        print(f"created {_pipeline_line(info)}")
    return EXIT_OK


def _pipeline_document(args: argparse.Namespace) -> dict[str, object]:
    """The document the `create` options describe."""
    stages: list[dict[str, object]] = []
    for text in args.stage:
        name, _, outcome = text.rpartition(":")
        if name and outcome in ("won", "lost"):
            stages.append({"name": name, f"is_{outcome}": True})
        else:
            stages.append({"name": text})
    columns: list[dict[str, object]] = []
    for text in args.column:
        name, _, rest = text.partition(":")
        field_type, _, options = rest.partition(":")
        column: dict[str, object] = {"name": name}
        if field_type:
            column["field_type"] = field_type
        if options:
            column["options"] = [o.strip() for o in options.split(",")]
        columns.append(column)
    document: dict[str, object] = {"name": args.name, "stages": stages, "columns": columns}
    for key, value in (("code", args.code), ("object_type", args.object_type)):
        if value is not None:
            document[key] = value
    if args.template:
        document["is_template"] = True
    return document


def _pipeline_line(info: PipelineInfo) -> str:
    counts = (
        f"{len(info.stages)} stages, {len(info.columns)} columns, "
        f"{len(info.automations)} automations"
    )
    return (
        f"pipeline {info.name!r} (id {info.id}, code {_cell(info.code)}, "
        f"account {_cell(info.account_id)}): {counts}"
    )


def _pipeline_list(args: argparse.Namespace) -> int:
    with _kernel(args) as fk:
        found = fk.pipelines.list_pipelines(_actor(args), templates=args.templates)
    if args.json:
        _print_json(found)
        return EXIT_OK
    print(
        _table(
            ("id", "code", "name", "account", "template", "stages", "columns", "version"),
            [
                (
                    p.id,
                    p.code,
                    p.name,
                    p.account_id,
                    p.is_template,
                    len(p.stages),
                    len(p.columns),
                    p.version,
                )
                for p in found
            ],
        )
    )
    return EXIT_OK


def _pipeline_show(args: argparse.Namespace) -> int:
    actor = _actor(args)
    with _kernel(args) as fk:
        info = fk.pipelines.get_pipeline(_pipeline_id(fk, args.pipeline, actor), actor)
    if args.json:
        _print_json(info)
        return EXIT_OK
    moves = ", ".join(f"{a} -> {b}" for a, b in info.allowed_moves) or "any"
    header = (
        f"pipeline {info.id}: {info.name}\n"
        f"code {_cell(info.code)}, account {_cell(info.account_id)}, object type "
        f"{_cell(info.object_type)}, template {_cell(info.is_template)}, version {info.version}\n"
        f"moving back {'allowed' if info.allow_backward else 'refused'}, skipping forward "
        f"{'allowed' if info.allow_skip_forward else 'refused'}; allowed moves: {moves}"
    )
    sections = [
        header,
        _section(
            "stages",
            (
                "position",
                "code",
                "name",
                "probability",
                "sla days",
                "outcome",
                "requires",
                "checklist",
            ),
            [
                (
                    s.position,
                    s.code,
                    s.name,
                    s.probability,
                    s.sla_days,
                    "won" if s.is_won else "lost" if s.is_lost else None,
                    ", ".join(s.required_columns) or None,
                    ", ".join(f"{c.key}{'*' if c.required else ''}" for c in s.checklist) or None,
                )
                for s in info.stages
            ],
        ),
        _section(
            "columns",
            ("name", "label", "type", "options", "required", "active"),
            [
                (
                    c.name,
                    c.label,
                    c.field_type,
                    ", ".join(c.options) or None,
                    c.is_required,
                    c.is_active,
                )
                for c in info.columns
            ],
        ),
        _section(
            "automations",
            ("id", "trigger", "stage", "event", "name", "active"),
            [
                (a.id, a.trigger, a.stage or "(any)", a.event_name, a.name, a.is_active)
                for a in info.automations
            ],
        ),
    ]
    if any(s.checklist for s in info.stages):
        sections.append("* a required checklist item")
    print("\n\n".join(sections))
    return EXIT_OK


def _pipeline_dump(args: argparse.Namespace) -> int:
    actor = _actor(args)
    with _kernel(args) as fk:
        info = fk.pipelines.get_pipeline(_pipeline_id(fk, args.pipeline, actor), actor)
    sys.stdout.write(dumps(dump_pipeline(info), args.format))
    return EXIT_OK


def _pipeline_clone(args: argparse.Namespace) -> int:
    actor = _actor(args)
    if args.account is None:
        raise UsageError("pass --account ID: the account the copy goes into")
    with _kernel(args) as fk:
        template = _pipeline_id(fk, args.template, actor)
        info = fk.pipelines.clone_template(template, args.account, actor, args.name, code=args.code)
    if args.json:
        _print_json(info)
    else:
        print(f"cloned template {template} into {_pipeline_line(info)}")
    return EXIT_OK


def _pipeline_remove_stage(args: argparse.Namespace) -> int:
    actor = _actor(args)
    stage = _ref(args.stage)
    target = _ref(args.target) if args.target is not None else None
    with _kernel(args) as fk:
        pipeline = _pipeline_id(fk, args.pipeline, actor)
        plan = fk.pipelines.remove_stage(pipeline, stage, actor, target=target, dry_run=True)
        if args.dry_run:
            report = plan
        else:
            with Progress(plan.count, f"moving the items of {plan.stage!r}") as bar:
                report = fk.pipelines.remove_stage(
                    pipeline,
                    stage,
                    actor,
                    target=target,
                    on_progress=lambda moved: bar.advance(moved - bar.done),
                )
    if args.json:
        _print_json(report)
        return EXIT_OK
    where = f" to {report.target!r}" if report.target is not None else ""
    if report.dry_run:
        shown = ", ".join(map(str, report.item_ids[:20]))
        more = f" and {report.count - 20} more" if report.count > 20 else ""
        items = f": {shown}{more}" if report.item_ids else ""
        print(f"would remove stage {report.stage!r} and move {report.count} item(s){where}{items}")
    else:
        print(f"removed stage {report.stage!r}; moved {report.count} item(s){where}")
    return EXIT_OK


# --- item --------------------------------------------------------------------------------

CSV_FIELDS: Final = ("object_type", "object_id", "stage", "assigned_user_id")
"""Columns of a placement CSV file; any other column is a custom value of the item."""


def _add_item_commands(commands: _Commands) -> None:
    item = commands.add_parser(
        "item", help="place items, run methods on them, read and set their values", epilog=EPILOG
    )
    sub = item.add_subparsers(title="item commands", required=True, metavar="COMMAND")

    place = sub.add_parser(
        "place",
        help="place an object into a class or pipeline, or many from a CSV file",
        description=(
            "With --csv FILE, each row places one object. The header names the columns: "
            "object_type and object_id (required), stage and assigned_user_id (optional); "
            "every other column is a custom column of the pipeline, an empty cell leaves it "
            "without a value. A refused row is reported and the next one placed (or, with "
            "--stop-on-error, the command stops); the exit status is that of the first "
            "refusal."
        ),
    )
    place.add_argument("cls", metavar="CLASS", help="class or pipeline code, or its id")
    place.add_argument("object_type", nargs="?", metavar="OBJECT_TYPE")
    place.add_argument("object_id", nargs="?", type=int, metavar="OBJECT_ID")
    place.add_argument("--stage", metavar="STATE", help="the state to place into")
    place.add_argument("--assign", type=int, metavar="USER_ID", help="assign the item")
    place.add_argument(
        "--set",
        dest="values",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="a custom value (repeatable)",
    )
    place.add_argument("--csv", metavar="FILE", help="place one object per row; - for stdin")
    place.add_argument(
        "--stop-on-error", action="store_true", help="with --csv: stop at the first refused row"
    )
    place.set_defaults(command=_item_place)

    move = sub.add_parser("move", help="move an item to a stage (its move_to_<stage> method)")
    move.add_argument("item", type=int, metavar="ITEM")
    move.add_argument("stage", metavar="STAGE", help="stage code or id")
    move.set_defaults(command=_item_move)

    execute = sub.add_parser("exec", help="execute a method on an item")
    execute.add_argument("item", type=int, metavar="ITEM")
    execute.add_argument("method", metavar="METHOD", help="method code (an action with --action)")
    execute.add_argument(
        "--param",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter for the handlers, as a string (repeatable)",
    )
    execute.add_argument(
        "--params", dest="params_json", metavar="JSON", help="parameters as a JSON object"
    )
    execute.add_argument(
        "--action", action="store_true", help="METHOD names an action: run its first method"
    )
    execute.set_defaults(command=_item_exec)

    methods = sub.add_parser("methods", help="the methods the actor may run on an item now")
    methods.add_argument("item", type=int, metavar="ITEM")
    methods.set_defaults(command=_item_methods)

    explain = sub.add_parser(
        "explain",
        help="why a method or a move can or cannot run on an item now",
        description=(
            "Names every obstacle: wrong state (and the states that have the method), hidden, "
            "not permitted, a restricted move, missing required fields, open checklist items, "
            "a deleted item; or, when possible, the target state, the handlers and the events "
            "it fires. Changes nothing; exits 0 either way."
        ),
    )
    explain.add_argument("item", type=int, metavar="ITEM")
    explain.add_argument("what", metavar="METHOD_OR_STAGE", help="method code, state code or id")
    explain.set_defaults(command=_item_explain)

    history = sub.add_parser("history", help="an item's state history, oldest first")
    history.add_argument("item", type=int, metavar="ITEM")
    history.set_defaults(command=_item_history)

    values = sub.add_parser("values", help="an item's custom values")
    values.add_argument("item", type=int, metavar="ITEM")
    values.set_defaults(command=_item_values)

    set_values = sub.add_parser("set", help="set or clear an item's custom values")
    set_values.add_argument("item", type=int, metavar="ITEM")
    set_values.add_argument("assignments", nargs="*", metavar="COLUMN=VALUE")
    set_values.add_argument(
        "--clear", action="append", default=[], metavar="COLUMN", help="remove a value"
    )
    set_values.set_defaults(command=_item_set)

    for parser in (place, move, execute, methods, explain, history, values, set_values):
        _add_actor_options(parser)
        _add_json_option(parser)


def _item_place(args: argparse.Namespace) -> int:
    if args.csv is not None:
        return _item_place_csv(args)
    if args.object_type is None or args.object_id is None:
        raise UsageError("pass OBJECT_TYPE and OBJECT_ID, or --csv FILE")
    values = _assignments(args.values)
    actor = _actor(args)
    with _kernel(args) as fk:
        ref = _ref(args.cls)
        if values:  # checked before placing, so a bad value places nothing
            _check_values(_compiled(fk, ref, actor), values)
        item = fk.place(
            ref,
            args.object_type,
            args.object_id,
            actor,
            state=args.stage,
            assigned_user_id=args.assign,
        )
        if values:
            fk.items.set_values(item.id, values, actor)
    if args.json:
        _print_json(item)
    else:
        print(
            f"placed {item.object_type} {item.object_id} into {item.class_code!r} as item "
            f"{item.id}, state {item.state!r}"
        )
    return EXIT_OK


def _item_place_csv(args: argparse.Namespace) -> int:
    if (
        args.object_type is not None
        or args.object_id is not None
        or args.values
        or args.stage
        or args.assign is not None
    ):
        raise UsageError(
            "--csv reads objects, stages, assignees and values from the file; drop "
            "OBJECT_TYPE, OBJECT_ID, --stage, --assign and --set"
        )
    header, rows = _csv_rows(args.csv)
    value_columns = [c for c in header if c not in CSV_FIELDS]
    actor = _actor(args)
    placed: list[dict[str, object]] = []
    failed: list[dict[str, object]] = []
    with _kernel(args) as fk:
        ref = _ref(args.cls)
        compiled = _compiled(fk, ref, actor)
        _check_values(compiled, dict.fromkeys(value_columns))  # every column exists
        with Progress(len(rows), f"placing into {compiled.code}") as bar:
            for line, row in rows:
                try:
                    item = _place_row(fk, ref, compiled, row, value_columns, actor)
                except Exception as exc:
                    refusal = refusal_of(exc)
                    if refusal is None:
                        raise
                    kind, message, status = refusal
                    failed.append({"line": line, "kind": kind, "message": message, "exit": status})
                    bar.write(f"flowkernel: line {line}: {kind}: {' '.join(message.split())}")
                    if args.stop_on_error:
                        break
                else:
                    placed.append({"line": line, "item_id": item.id, "state": item.state})
                bar.advance()
    stopped = bool(args.stop_on_error and failed)
    if args.json:
        _print_json({"rows": len(rows), "placed": placed, "failed": failed, "stopped": stopped})
    else:
        summary = f"placed {len(placed)} of {len(rows)} row(s) into {compiled.code!r}"
        if failed:
            lines = ", ".join(str(f["line"]) for f in failed)
            summary += f"; refused: line(s) {lines}"
        if stopped:
            summary += f"; stopped at line {failed[0]['line']}"
        print(summary)
    if not failed:
        return EXIT_OK
    first = failed[0]["exit"]
    return first if isinstance(first, int) else EXIT_ERROR


def _csv_rows(path: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the (line number, cells) of each row of a placement CSV file."""
    reader = csv.DictReader(io.StringIO(_read(path), newline=""))
    header = [name.strip() for name in reader.fieldnames or ()]
    missing = [name for name in ("object_type", "object_id") if name not in header]
    if missing:
        raise UsageError(
            f"{path}: the first line must name the columns object_type and object_id "
            f"(missing: {', '.join(missing)})"
        )
    if len(set(header)) != len(header):
        raise UsageError(f"{path}: the header names a column twice")
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise UsageError(f"{path}: line {reader.line_num}: {exc}") from exc
    return header, rows


def _place_row(
    fk: Flowkernel,
    ref: str | int,
    compiled: CompiledClass,
    row: dict[str, str],
    value_columns: Sequence[str],
    actor: Actor,
) -> ItemSnapshot:
    """Place one CSV row; its values are checked first, so a refused row places nothing."""
    if None in row:
        raise UsageError("the row has more cells than the header names")
    object_type = (row.get("object_type") or "").strip()
    object_id = _int_cell(row, "object_id")
    if object_id is None:
        raise UsageError("object_id is empty")
    assigned = _int_cell(row, "assigned_user_id")
    stage = (row.get("stage") or "").strip() or None
    values = {name: row[name] for name in value_columns if row.get(name)}
    _check_values(compiled, values)
    item = fk.place(ref, object_type, object_id, actor, state=stage, assigned_user_id=assigned)
    if values:
        fk.items.set_values(item.id, values, actor)
    return item


def _compiled(fk: Flowkernel, ref: str | int, actor: Actor) -> CompiledClass:
    """The compiled class items are placed into, if the actor reaches it."""
    compiled = fk.compiled(ref, actor.account_id)
    if not actor.reaches(compiled.account_id):
        raise UnknownDefinition("class", ref)
    return compiled


def _int_cell(row: Mapping[str, str | None], name: str) -> int | None:
    text = (row.get(name) or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{name} {text!r} is not an integer") from None


def _check_values(compiled: CompiledClass, values: Mapping[str, object]) -> None:
    """Refuse an unknown or inactive column, or a value its column does not take."""
    for name, value in values.items():
        column = compiled.columns.get(name)
        if column is None:
            known = [c.name for c in compiled.columns.values() if c.is_active]
            raise UnknownDefinition("column", name, f"pipeline {compiled.name!r}", known)
        if not column.is_active:
            raise ColumnInactive(column.name, compiled.name)
        if value is not None:
            normalize(column, value)


def _item_move(args: argparse.Namespace) -> int:
    with _kernel(args) as fk:
        result = fk.move(args.item, _ref(args.stage), _actor(args))
    _print_result(result, args.json)
    return EXIT_OK


def _item_exec(args: argparse.Namespace) -> int:
    params: dict[str, object] = {}
    if args.params_json is not None:
        try:
            loaded = json.loads(args.params_json)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--params is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise UsageError('--params must be a JSON object, such as \'{"reason": "late"}\'')
        params.update(loaded)
    params.update(_assignments(args.params, option="--param KEY=VALUE"))
    actor = _actor(args)
    with _kernel(args) as fk:
        if args.action:
            result = fk.execute_action(args.item, args.method, actor, params=params)
        else:
            result = fk.execute(args.item, args.method, actor, params=params)
    _print_result(result, args.json)
    return EXIT_OK


def _print_result(result: ExecutionResult, as_json: bool) -> None:
    if as_json:
        _print_json(result)
    elif result.dropped:
        print(f"item {result.item_id}: dropped by {result.method!r}")
    elif result.changed:
        print(f"item {result.item_id}: {result.from_state} -> {result.to_state} ({result.method})")
    else:
        print(f"item {result.item_id}: {result.method} ran; still in {result.to_state!r}")


def _item_methods(args: argparse.Namespace) -> int:
    with _kernel(args) as fk:
        methods = fk.methods(args.item, _actor(args))
    if args.json:
        _print_json(methods)
    else:
        print(
            _table(
                ("code", "action", "label", "target", "visible"),
                [(m.code, m.action, m.label, m.target, m.visible) for m in methods],
            )
        )
    return EXIT_OK


def _item_explain(args: argparse.Namespace) -> int:
    with _kernel(args) as fk:
        explanation = fk.explain(args.item, _ref(args.what), _actor(args))
    if args.json:
        _print_json({**_jsonable_dict(explanation), "summary": explanation.summary})
        return EXIT_OK
    print(f"{'yes' if explanation.possible else 'no'}: {explanation.summary}")
    for reason in explanation.reasons:
        print(f"  - {reason.code}: {reason.message}")
    return EXIT_OK


def _item_history(args: argparse.Namespace) -> int:
    with _kernel(args) as fk:
        entries = fk.history(args.item, _actor(args))
    if args.json:
        _print_json(entries)
    else:
        print(
            _table(
                ("moved at", "from", "to", "method", "by"),
                [
                    (
                        f"{e.moved_at:%Y-%m-%d %H:%M:%S}",
                        e.from_state,
                        e.to_state,
                        e.method,
                        "system" if e.is_system else e.user_id,
                    )
                    for e in entries
                ],
            )
        )
    return EXIT_OK


def _item_values(args: argparse.Namespace) -> int:
    with _kernel(args) as fk:
        values = fk.items.values(args.item, _actor(args))
    if args.json:
        _print_json(values)
    else:
        print(
            _table(
                ("column", "label", "type", "required", "value"),
                [
                    (
                        v.name,
                        v.label,
                        v.field_type,
                        v.is_required,
                        v.value if v.valid else f"{v.value} (does not fit the column)",
                    )
                    for v in values
                ],
            )
        )
    return EXIT_OK


def _item_set(args: argparse.Namespace) -> int:
    values = _assignments(args.assignments)
    if not values and not args.clear:
        raise UsageError("pass COLUMN=VALUE to set and/or --clear COLUMN")
    actor = _actor(args)
    with _kernel(args) as fk:
        written = fk.items.set_values(args.item, values, actor) if values else []
        cleared = {name: fk.items.clear_value(args.item, name, actor) for name in args.clear}
    if args.json:
        _print_json({"set": written, "cleared": cleared})
        return EXIT_OK
    done = [f"{v.name}={v.value}" for v in written]
    done += [f"cleared {name}" if had else f"{name} had no value" for name, had in cleared.items()]
    print(f"item {args.item}: {'; '.join(done)}")
    return EXIT_OK


def _assignments(texts: Sequence[str], option: str = "COLUMN=VALUE") -> dict[str, object]:
    values: dict[str, object] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise UsageError(f"expected {option}, not {text!r}")
        values[name] = value
    return values


# --- board -------------------------------------------------------------------------------


def _add_board_command(commands: _Commands) -> None:
    board = commands.add_parser(
        "board",
        help="print a pipeline's board: its stages as columns with their items",
        epilog=EPILOG,
    )
    board.add_argument("pipeline", metavar="PIPELINE", help="pipeline id or code")
    board.add_argument(
        "--value-column",
        metavar="COLUMN",
        help="the number column to sum (default: the pipeline's first one; '' for none)",
    )
    board.add_argument(
        "--per-stage", type=_positive_int, default=20, metavar="N", help="items per stage"
    )
    board.add_argument(
        "--width", type=_positive_int, metavar="N", help="default: the terminal's width"
    )
    _add_actor_options(board)
    _add_json_option(board)
    board.set_defaults(command=_board)


def _board(args: argparse.Namespace) -> int:
    actor = _actor(args)
    with _kernel(args) as fk:
        pipeline = _pipeline_id(fk, args.pipeline, actor)
        column = args.value_column
        if column is None:
            info = fk.pipelines.get_pipeline(pipeline, actor)
            column = next(
                (c.name for c in info.columns if c.field_type == "number" and c.is_active), None
            )
        board = fk.queries.board(
            pipeline, actor, per_stage=args.per_stage, value_column=column or None
        )
    if args.json:
        _print_json(board)
    else:
        print(render_board(board, args.width or shutil.get_terminal_size().columns))
    return EXIT_OK


# --- workers: sla scan, events deliver ----------------------------------------------------


def _add_worker_commands(commands: _Commands) -> None:
    sla = commands.add_parser("sla", help="find items past their SLA due time", epilog=EPILOG)
    sla_commands = sla.add_subparsers(title="sla commands", required=True, metavar="COMMAND")
    scan = sla_commands.add_parser(
        "scan",
        help="fire sla_breach on the items past their due time, once or every SECONDS",
        description=(
            "Once: scan until no due item is left and print what was found. With --every: "
            "scan every SECONDS until interrupted (Ctrl-C or SIGTERM end it cleanly), "
            "printing the scans that found something."
        ),
    )
    scan.add_argument("--every", type=_positive_float, metavar="SECONDS")
    scan.add_argument("--pipeline", metavar="PIPELINE", help="only this pipeline (id or code)")
    scan.add_argument(
        "--limit", type=_positive_int, default=1000, metavar="N", help="items per scan"
    )
    scan.add_argument(
        "--batch-size",
        type=_positive_int,
        default=1,
        metavar="N",
        help="breaches fired per transaction, through batch execution (default 1)",
    )
    scan.add_argument("--max-runs", type=_positive_int, metavar="N", help="stop after N scans")
    scan.add_argument(
        "--no-deliver",
        action="store_true",
        help="leave the events a breach writes to `flowkernel events deliver`",
    )
    _add_json_option(scan, "print one JSON object per scan")
    scan.set_defaults(command=_sla_scan)

    events = commands.add_parser("events", help="deliver outgoing events", epilog=EPILOG)
    events_commands = events.add_subparsers(
        title="events commands", required=True, metavar="COMMAND"
    )
    deliver = events_commands.add_parser(
        "deliver",
        help="deliver pending events and watcher notifications, once or every SECONDS",
        description=(
            "Once: deliver until nothing is due. With --every: deliver every SECONDS until "
            "interrupted (Ctrl-C or SIGTERM end it cleanly), printing the passes that "
            "handled something."
        ),
    )
    deliver.add_argument("--every", type=_positive_float, metavar="SECONDS")
    deliver.add_argument(
        "--limit", type=_positive_int, default=500, metavar="N", help="rows per pass"
    )
    deliver.add_argument("--max-runs", type=_positive_int, metavar="N", help="stop after N passes")
    _add_json_option(deliver, "print one JSON object per pass")
    deliver.set_defaults(command=_events_deliver)


def _sla_scan(args: argparse.Namespace) -> int:
    def show(report: SlaReport, always: bool = False) -> None:
        for failure in report.failures:
            print(
                f"flowkernel: item {failure.item_id}: sla_breach refused ({failure.error}): "
                f"{' '.join(failure.message.split())}",
                file=sys.stderr,
            )
        if args.json:
            data = {**_jsonable_dict(report), "fired": report.fired, "skipped": report.skipped}
            print(json.dumps(_jsonable(data)), flush=True)
        elif always or report.breaches or report.failures:
            print(
                f"{report.now:%Y-%m-%d %H:%M:%S} sla scan: {len(report.fired)} breached, "
                f"{len(report.skipped)} without an sla_breach method, {len(report.failures)} "
                f"refused; {report.events} event(s) written",
                flush=True,
            )

    with _kernel(args, deliver_events=not args.no_deliver) as fk:
        pipeline = _pipeline_id(fk, args.pipeline, SYSTEM) if args.pipeline else None
        if args.every is None:
            runs = 0
            while True:  # a full scan means more items may be due: scan again
                report = fk.sla.scan(
                    pipeline_id=pipeline, limit=args.limit, batch_size=args.batch_size
                )
                show(report, always=runs == 0)
                runs += 1
                if not (report.limit_reached and report.breaches):
                    break
                if args.max_runs is not None and runs >= args.max_runs:
                    break
        else:
            with _stop_on_signals() as stop:
                fk.sla.run_forever(
                    args.every,
                    stop=stop,
                    pipeline_id=pipeline,
                    limit=args.limit,
                    batch_size=args.batch_size,
                    max_runs=args.max_runs,
                    on_report=show,
                )
    return EXIT_OK


def _events_deliver(args: argparse.Namespace) -> int:
    def show(report: DeliveryReport, always: bool = False) -> int:
        handled = report.delivered + report.retried + report.dead
        if args.json:
            print(json.dumps(_jsonable(report)), flush=True)
        elif always or handled:
            print(
                f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} delivered {report.delivered}, "
                f"retried later {report.retried}, dead {report.dead}",
                flush=True,
            )
        return handled

    runs = 0
    with _kernel(args, deliver_events=False) as fk, _stop_on_signals() as stop:
        while not stop.is_set():
            report = fk.delivery.deliver(limit=args.limit)
            handled = show(report, always=args.every is None and runs == 0)
            runs += 1
            if args.max_runs is not None and runs >= args.max_runs:
                break
            if handled >= args.limit:
                continue  # a backlog: the next pass at once
            if args.every is None:
                break
            stop.wait(args.every)
    return EXIT_OK


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs, so a worker ends its pass."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be installed by the main thread
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# --- serve and tokens ----------------------------------------------------------------------


def _add_serve_commands(commands: _Commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API (OpenAPI at /docs) until interrupted",
        description=(
            "Serve the HTTP API on HOST:PORT until interrupted (Ctrl-C or SIGTERM end it "
            "cleanly). Requests authenticate with tokens from `flowkernel token create`; "
            "docs/http.md lists the endpoints."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8000, help="port to listen on")
    serve.set_defaults(command=_serve)

    token = commands.add_parser("token", help="create, list and revoke API tokens", epilog=EPILOG)
    sub = token.add_subparsers(title="token commands", required=True, metavar="COMMAND")
    create = sub.add_parser(
        "create",
        help="create a token for a user of an account, or for the system actor; printed once",
    )
    create.add_argument("--name", required=True, help="what the token is for, shown in lists")
    create.add_argument("--account", type=int, metavar="ID", help="the account it is bound to")
    create.add_argument("--user", type=int, metavar="ID", help="the user it acts as")
    create.add_argument(
        "--group",
        dest="groups",
        action="append",
        default=[],
        metavar="NAME",
        help="a group of the user, for access rules (repeatable)",
    )
    create.add_argument(
        "--system",
        action="store_true",
        help="act as the system actor (may fire hidden methods); with --account, only there",
    )
    _add_json_option(create)
    create.set_defaults(command=_token_create)
    listing = sub.add_parser("list", help="the tokens, never their secrets")
    listing.add_argument("--account", type=int, metavar="ID", help="only tokens of this account")
    listing.add_argument("--all", action="store_true", help="revoked tokens too")
    _add_json_option(listing)
    listing.set_defaults(command=_token_list)
    revoke = sub.add_parser("revoke", help="revoke a token by id; servers refuse it within 5 s")
    revoke.add_argument("id", type=_positive_int, metavar="ID")
    revoke.set_defaults(command=_token_revoke)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, not {text!r}")
    return value


def _serve(args: argparse.Namespace) -> int:
    # imported here: only this command needs the web stack
    uvicorn = importlib.import_module("uvicorn")
    create_app = importlib.import_module("engine.http").create_app
    # uvicorn stops on SIGINT and SIGTERM, then raises the signal again to its previous
    # handler: ours, so that a requested stop ends with status 0 like the workers do
    with _kernel(args) as fk, _stop_on_signals():
        uvicorn.run(create_app(fk), host=args.host, port=args.port, log_level="info")
    return EXIT_OK


def _token_create(args: argparse.Namespace) -> int:
    from engine.http.tokens import ApiTokens

    if not args.system and (args.account is None or args.user is None):
        raise UsageError("a user token needs --account ID and --user ID (or pass --system)")
    if args.system and (args.user is not None or args.groups):
        raise UsageError("a --system token acts as the system actor: drop --user and --group")
    engine = _connect(args)
    try:
        issued = ApiTokens(engine).issue(
            args.name,
            account_id=args.account,
            user_id=args.user,
            groups=args.groups,
            system=args.system,
        )
    finally:
        engine.dispose()
    if args.json:
        _print_json({"token": issued.token, **_jsonable_dict(issued.info)})
        return EXIT_OK
    info = issued.info
    who = "system actor" if info.is_system else f"user {info.user_id}"
    print(issued.token)
    print(
        f"token {info.id} ({info.prefix}) {info.name!r}: {who}, account "
        f"{_cell(info.account_id) if info.account_id is not None else 'every account'}; "
        "shown only now: store it",
        file=sys.stderr,
    )
    return EXIT_OK


def _token_list(args: argparse.Namespace) -> int:
    from engine.http.tokens import ApiTokens

    engine = _connect(args)
    try:
        found = ApiTokens(engine).list(account_id=args.account, include_revoked=args.all)
    finally:
        engine.dispose()
    if args.json:
        _print_json(found)
        return EXIT_OK
    print(
        _table(
            ("id", "prefix", "name", "account", "acts as", "groups", "last used", "revoked"),
            [
                (
                    t.id,
                    t.prefix,
                    t.name,
                    t.account_id,
                    "system" if t.is_system else f"user {t.user_id}",
                    ", ".join(t.groups) or None,
                    f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else None,
                    f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else None,
                )
                for t in found
            ],
        )
    )
    return EXIT_OK


def _token_revoke(args: argparse.Namespace) -> int:
    from engine.http.tokens import ApiTokens

    engine = _connect(args)
    try:
        info = ApiTokens(engine).revoke(args.id)
    finally:
        engine.dispose()
    print(f"revoked token {info.id} ({info.prefix}) {info.name!r}")
    return EXIT_OK


# --- actors, references and output ----------------------------------------------------------

_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The `commands` of `build_parser`, which each section adds its commands to."""


def _add_actor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--account",
        type=int,
        metavar="ID",
        help="the tenant account of the actor (default: none, the platform)",
    )
    parser.add_argument(
        "--as",
        dest="actor",
        type=_actor_arg,
        default="system",
        metavar="ACTOR",
        help="who acts: a user id, or system (the default) for the system actor",
    )
    parser.add_argument(
        "--group",
        dest="groups",
        action="append",
        default=[],
        metavar="NAME",
        help="a group of the acting user, for access rules (repeatable)",
    )


def _add_json_option(parser: argparse.ArgumentParser, text: str = "print JSON") -> None:
    parser.add_argument("--json", action="store_true", help=text)


def _actor_arg(text: str) -> str | int:
    if text == "system":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a user id or 'system', not {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, not {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, not {text!r}")
    return value


def _actor(args: argparse.Namespace) -> Actor:
    """The actor of `--as` and `--account`: the system actor unless a user id is given."""
    if args.actor == "system":
        if args.groups:
            raise UsageError("--group applies to a user: pass --as USER_ID with it")
        return Actor.system(args.account)
    return Actor.user(args.actor, args.account, tuple(args.groups))


def _ref(text: str) -> str | int:
    """A code, or an id when the text is a number."""
    return int(text) if text.isascii() and text.isdigit() else text


def _pipeline_id(fk: Flowkernel, text: str, actor: Actor) -> int:
    """The id of the pipeline named by id or code among those the actor reads."""
    ref = _ref(text)
    if isinstance(ref, int):
        return ref
    readable = fk.pipelines.list_pipelines(actor)
    found = [p for p in readable if p.code == ref]
    own = [p for p in found if p.account_id == actor.account_id]
    if len(own) == 1 or len(found) == 1:  # the account's own wins over a platform pipeline
        return (own or found)[0].id
    if not found:
        raise UnknownDefinition(
            "pipeline", ref, "", sorted({p.code for p in readable if p.code is not None})
        )
    listed = ", ".join(f"{p.id} (account {_cell(p.account_id)})" for p in found)
    raise UsageError(
        f"pipeline code {ref!r} names several pipelines: {listed}; pass the id or --account"
    )


def _format_of(path: str) -> str | None:
    if path == "-":
        return None
    return {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(Path(path).suffix)


def _print_json(value: object) -> None:
    print(json.dumps(_jsonable(value), indent=2, ensure_ascii=False))


def _jsonable_dict(value: object) -> dict[str, object]:
    data = _jsonable(value)
    assert isinstance(data, dict)
    return data


def _jsonable(value: object) -> object:
    """Plain JSON data of a result: dataclasses as objects, times as ISO text, Decimal as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(str(v) for v in value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _add_database_option_everywhere(parser: argparse.ArgumentParser) -> None:
    """Let every command take --database-url after its name too (it wins over the one before)."""
    seen: set[int] = set()

    def visit(node: argparse.ArgumentParser) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        groups = [a for a in node._actions if isinstance(a, argparse._SubParsersAction)]
        for action in groups:
            for child in action._name_parser_map.values():
                visit(child)
        if not groups and "--database-url" not in node._option_string_actions:
            node.add_argument(
                "--database-url",
                metavar="URL",
                default=argparse.SUPPRESS,
                help=f"database to use (default: ${database.ENV_VAR}, else sqlite:///flowkernel.db)",
            )

    visit(parser)


# --- opening the database ----------------------------------------------------------------


def _url(args: argparse.Namespace) -> str:
    try:
        return database.resolve_url(args.database_url)
    except InvalidArgument as exc:
        raise UsageError(f"{exc.message}; see `flowkernel --help`") from exc


def _missing_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    name = parsed.database
    if parsed.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return False
    return not name.startswith("file:") and not Path(name).exists()


def _connect(args: argparse.Namespace, *, migrated: bool = True, create: bool = False) -> Engine:
    """An engine on the chosen database, refused when unreachable or (`migrated`) not at head.

    A missing SQLite file is created only when `create` is set, so a mistyped URL does not
    leave empty database files behind.
    """
    url = _url(args)
    shown = make_url(url).render_as_string(hide_password=True)
    if not create and _missing_sqlite_file(url):
        raise DatabaseNotMigrated(shown, None, database.head_revision())
    try:
        engine = database.open_engine(url)
    except ArgumentError as exc:  # an unknown dialect or driver
        raise UsageError(f"cannot open {shown}: {exc}") from exc
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:  # untyped by `database`: a non-SQLite file, a bad URL option
        engine.dispose()
        raise DatabaseUnreachable(shown, database.first_line(exc)) from exc
    if migrated:
        current = database.current_revision(engine)
        head = database.head_revision()
        if current != head:
            engine.dispose()
            raise DatabaseNotMigrated(shown, current, head)
    return engine


@contextmanager
def _kernel(args: argparse.Namespace, *, deliver_events: bool = True) -> Iterator[Flowkernel]:
    """A `Flowkernel` on the chosen, migrated database, closed after the block."""
    fk = Flowkernel(engine=_connect(args), deliver_events=deliver_events)
    try:
        yield fk
    finally:
        fk.close()


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {path}: not UTF-8 text ({exc.reason})") from exc


def _fail(family: str, message: str, status: int) -> int:
    line = " ".join(message.split())
    print(f"flowkernel: {family}: {line}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
