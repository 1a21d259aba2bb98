"""The `flowkernel` command: migrate a database, load, dump and show classes, run the demo."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from engine import database
from engine.documents import FORMATS, dump_class, dumps, load_class, loads
from engine.errors import (
    DatabaseError,
    DatabaseNotMigrated,
    DatabaseUnreachable,
    DefinitionError,
    ExecutionError,
    FlowkernelError,
    UnknownDefinition,
)
from engine.flowkernel import Flowkernel

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_DEFINITION: Final = 3
EXIT_EXECUTION: Final = 4
EXIT_DATABASE: Final = 5

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
    except UsageError as exc:
        return _fail("usage error", str(exc), EXIT_USAGE)
    except UnknownDefinition as exc:
        hint = "; `flowkernel class list` shows them" if exc.kind == "class" else ""
        return _fail("definition error", exc.message + hint, EXIT_DEFINITION)
    except DefinitionError as exc:
        return _fail("definition error", exc.message, EXIT_DEFINITION)
    except ExecutionError as exc:
        return _fail("execution error", exc.message, EXIT_EXECUTION)
    except DatabaseError as exc:
        return _fail("database error", exc.message, EXIT_DATABASE)
    except FlowkernelError as exc:
        return _fail("error", exc.message, EXIT_ERROR)
    except (OperationalError, InterfaceError) as exc:  # the connection failed midway
        return _fail(
            "database error", f"{_cause(exc)}; check that the database is reachable", EXIT_DATABASE
        )
    except BrokenPipeError:  # the reader of our output went away (`| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR


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
            type=int,
            metavar="ID",
            help="the tenant account (default: platform-wide classes only)",
        )

    demo = commands.add_parser("demo", help="run the shipped examples on the database")
    demo.set_defaults(command=_demo)
    return parser


# --- db ----------------------------------------------------------------------------------


def _db_upgrade(args: argparse.Namespace) -> int:
    engine = _connect(args, migrated=False, create=True)
    try:
        database.upgrade(engine, args.revision)
        print(f"{_shown(engine)}: at revision {_describe(database.current_revision(engine))}")
    finally:
        engine.dispose()
    return EXIT_OK


def _db_downgrade(args: argparse.Namespace) -> int:
    engine = _connect(args, migrated=False)
    try:
        database.downgrade(engine, args.revision)
        print(f"{_shown(engine)}: at revision {_describe(database.current_revision(engine))}")
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


# --- opening the database ----------------------------------------------------------------


def _url(args: argparse.Namespace) -> str:
    try:
        return database.resolve_url(args.database_url)
    except ArgumentError as exc:
        raise UsageError(f"invalid database URL: {exc}; see `flowkernel --help`") from exc


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
    except DBAPIError as exc:
        engine.dispose()
        raise DatabaseUnreachable(shown, _cause(exc)) from exc
    if migrated:
        current = database.current_revision(engine)
        head = database.head_revision()
        if current != head:
            engine.dispose()
            raise DatabaseNotMigrated(shown, current, head)
    return engine


@contextmanager
def _kernel(args: argparse.Namespace) -> Iterator[Flowkernel]:
    """A `Flowkernel` on the chosen, migrated database, closed after the block."""
    fk = Flowkernel(engine=_connect(args))
    try:
        yield fk
    finally:
        fk.close()


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _cause(exc: DBAPIError) -> str:
    """The driver's message, first line only."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return (text.strip().splitlines() or ["unknown error"])[0]


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
