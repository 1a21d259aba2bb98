"""The `apply` command: make classes and pipelines match their documents, or print the plan."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from flowkernel.cli.arguments import Commands, add_json_option, positive_int
from flowkernel.cli.connection import kernel
from flowkernel.cli.output import print_json
from flowkernel.cli.refusals import EPILOG, EXIT_DEFINITION, EXIT_OK, UsageError
from flowkernel.errors import DefinitionWarning

SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
SIGNS = {"add": "+", "change": "~", "remove": "-"}


def add_commands(commands: Commands) -> None:
    """Add `apply`."""
    apply = commands.add_parser(
        "apply",
        help="make classes and pipelines match their documents (files or folders); --dry-run "
        "plans only",
        description="Each class or pipeline document's definition is created, or brought in "
        "line with it: every added (+), changed (~) and removed (-) state, method, transition, "
        "event, access rule, stage, column, requirement, checklist and automation, with the "
        "items each change affects. All documents are applied in one transaction, pipelines as "
        "the system actor of --account-id. Applying the same documents again changes nothing.",
        epilog=EPILOG,
    )
    apply.add_argument(
        "paths",
        nargs="+",
        metavar="FILE",
        help="class or pipeline documents (YAML or JSON), or folders of them; - reads "
        "standard input",
    )
    apply.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    apply.add_argument(
        "--account-id",
        "--account",
        type=positive_int,
        metavar="N",
        help="the account whose classes and pipelines these are (default: the platform's)",
    )
    add_json_option(apply)
    apply.set_defaults(command=_apply)


def _documents(paths: list[str]) -> list[tuple[str, dict[str, Any]]]:
    from flowkernel import documents

    found: list[tuple[str, dict[str, Any]]] = []
    for given in paths:
        if given == "-":
            found.append(("-", documents.loads(sys.stdin.read())))
            continue
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
            if not files:
                raise UsageError(f"{given} holds no .yaml, .yml or .json document")
        elif path.is_file():
            files = [path]
        else:
            raise UsageError(f"{given}: no such file or folder")
        for file in files:
            text = file.read_text(encoding="utf-8")
            found.append((str(file), documents.loads(text, SUFFIXES.get(file.suffix))))
    return found


def _apply(args: argparse.Namespace) -> int:
    from flowkernel import documents

    named = _documents(args.paths)
    with kernel(args) as fk, warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always", DefinitionWarning)
        plans = documents.apply(
            fk, [doc for _name, doc in named], dry_run=args.dry_run, account_id=args.account_id
        )
    refused = any(p.refusals for p in plans)
    if args.json:
        print_json([{**_plain(p), "unchanged": p.unchanged} for p in plans])
        return EXIT_DEFINITION if refused else EXIT_OK
    for plan in plans:
        if plan.unchanged:
            print(f"{plan.kind} {plan.code}: unchanged")
            continue
        verb = "to create" if plan.created else f"{len(plan.changes)} change(s)"
        print(f"{plan.kind} {plan.code}: {verb}")
        for c in plan.changes:
            items = "" if c.items is None else f"  ({c.items} item(s))"
            line = f"  {SIGNS[c.op]} {c.kind:<12} {c.key:<32} {c.detail}{items}"
            if c.refused is not None:
                line += f"  REFUSED: still used by {c.refused}"
            print(line)
    changed = [p for p in plans if not p.unchanged]
    if refused:
        print(
            "refused: a state or stage still in use cannot be removed or retyped; nothing changed"
        )
    elif not changed:
        print("nothing to apply: the database matches the documents")
    elif args.dry_run:
        print("dry run: nothing changed")
    else:
        print(f"applied {len(changed)} document(s) in one transaction")
    for warning in warned:
        print(f"warning: {warning.message}", file=sys.stderr)
    return EXIT_DEFINITION if refused else EXIT_OK


def _plain(plan: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(plan)
