"""The `class` commands: load, dump, list, show and check state-machine classes."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flowkernel import documents
from flowkernel.cli.arguments import Commands, positive_int, read
from flowkernel.cli.connection import kernel
from flowkernel.cli.output import cell, section, table
from flowkernel.cli.refusals import EPILOG, EXIT_DEFINITION, EXIT_OK, UsageError
from flowkernel.documents.formats import FORMATS
from flowkernel.errors import DefinitionWarning
from flowkernel.kinds import ClassRule
from flowkernel.previews import preview

if TYPE_CHECKING:
    from flowkernel.snapshots import DefinitionProblem


def add_commands(commands: Commands) -> None:
    """Add `class load`, `class dump`, `class list`, `class show` and `class check`."""
    cls = commands.add_parser(
        "class", help="load, dump, list, show and check classes", epilog=EPILOG
    )
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
    check = cls_commands.add_parser(
        "check",
        help="check a class's whole-class rules (exit 3 when one refuses it)",
        description="List where a class breaks a whole-class rule: no state of type created "
        "or create transition, a state no transition reaches, an active state with no way "
        "out (a trap, a warning). Exits 0 when nothing refuses the class.",
    )
    check.add_argument("code", metavar="CODE")
    check.set_defaults(command=_class_check)
    for sub in (load, dump, listing, show, check):
        sub.add_argument(
            "--account-id",
            "--account",
            type=positive_int,
            metavar="ID",
            help="the tenant account (default: platform-wide classes only)",
        )


def _class_load(args: argparse.Namespace) -> int:
    text = read(args.file)
    fmt = args.format
    if fmt is None and args.file != "-":
        fmt = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(Path(args.file).suffix)
    document = documents.loads(text, fmt)
    if "stages" in document and "states" not in document:
        raise UsageError(
            f"{args.file} is a pipeline document (stages, not states): "
            f"`flowkernel pipeline create {args.file} --account ID` creates it"
        )
    with kernel(args) as fk, warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always", DefinitionWarning)
        info = documents.load_class(fk, document, args.account_id)
        counts = {
            "states": len(fk.definitions.list_states(info.code, args.account_id)),
            "methods": len(fk.definitions.list_methods(info.code, args.account_id)),
            "transitions": len(fk.definitions.list_transitions(info.code, args.account_id)),
            "events": len(fk.definitions.list_events(info.code, args.account_id)),
        }
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    print(f"loaded class {preview(info.code)} ({summary}), version {info.version}")
    for warning in warned:
        print(f"warning: {warning.message}", file=sys.stderr)
    return EXIT_OK


def _class_dump(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        document = documents.dump_class(fk, args.code, args.account_id)
    sys.stdout.write(documents.dumps(document, args.format))
    return EXIT_OK


def _class_list(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        classes = fk.definitions.list_classes(args.account_id)
    print(
        table(
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
    with kernel(args) as fk:
        d = fk.definitions
        info = d.get_class(args.code, account)
        states = d.list_states(args.code, account)
        methods = d.list_methods(args.code, account)
        transitions = d.list_transitions(args.code, account)
        events = d.list_events(args.code, account)
        rules = d.list_access_rules(args.code, account)
        problems = d.problems(args.code, account)
    header = (
        f"class {info.code}: {info.label}\n"
        f"parent {cell(info.parent)}, movement {info.movement}, abstract {cell(info.is_abstract)}"
        f", account {cell(info.account_id)}, version {info.version}"
    )
    sections = [
        header,
        section(
            "states",
            ("code", "type", "label", "position"),
            [(s.code, s.state_type, s.label, s.position) for s in states],
        ),
        section(
            "methods",
            ("state", "code", "action", "label", "sequence", "visible"),
            [
                (m.state or "(global)", m.code, m.action, m.label, m.sequence, m.visible)
                for m in methods
            ],
        ),
        section(
            "transitions",
            ("from", "method", "to"),
            [(t.state or "(any)", t.method, t.new_state) for t in transitions],
        ),
        section(
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
            section(
                "access rules",
                ("method", "subject kind", "subject", "permission", "effect"),
                [
                    (r.method or "(every)", r.subject_kind, r.subject, r.permission, r.effect)
                    for r in rules
                ],
            )
        )
    if problems:
        sections.append(_problems(problems))
    print("\n\n".join(sections))
    return EXIT_OK


def _class_check(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        info = fk.definitions.get_class(args.code, args.account_id)
        problems = fk.definitions.problems(args.code, args.account_id)
    if not problems:
        print(f"class {preview(info.code)} keeps every whole-class rule")
        return EXIT_OK
    print(_problems(problems))
    refused = [p for p in problems if p.rule != ClassRule.TRAP or fk.definitions.strict_states]
    return EXIT_DEFINITION if refused else EXIT_OK


def _problems(problems: Sequence[DefinitionProblem]) -> str:
    return section(
        "problems",
        ("rule", "state", "problem"),
        [(p.rule, p.state or "(class)", p.message) for p in problems],
    )
