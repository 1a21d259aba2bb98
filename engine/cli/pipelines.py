"""The `pipeline` commands: create, list, show, dump and clone pipelines, remove a stage."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from flowkernel import documents
from flowkernel.cli import forecast, pipeline_editing
from flowkernel.cli.arguments import (
    Commands,
    acted_as,
    actor_of,
    add_actor_options,
    add_json_option,
    code_or_id,
    pipeline_id,
    read,
)
from flowkernel.cli.connection import kernel
from flowkernel.cli.output import cell, print_json, section, table
from flowkernel.cli.progress import Progress
from flowkernel.cli.refusals import EPILOG, EXIT_OK, UsageError
from flowkernel.documents.formats import FORMATS
from flowkernel.previews import preview

if TYPE_CHECKING:
    from flowkernel.definition.pipelines.admin import PipelineInfo

PIPELINE_CREATE_HELP: Final = """\
From a document: `flowkernel pipeline create sales.yaml --account 1`; its keys are described
in docs/cli.md. From options: `flowkernel pipeline create --account 1 --name Sales
--stage Lead --stage Won:won --stage Lost:lost --column amount:number
--column priority:select:High,Low`.
"""


def add_commands(commands: Commands) -> None:
    """Add the `pipeline` commands."""
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

    funnel = sub.add_parser(
        "funnel", help="the items that entered one stage and, of those, another (conversion)"
    )
    funnel.add_argument("pipeline", metavar="PIPELINE", help="pipeline id or code")
    funnel.add_argument("from_stage", metavar="FROM", help="stage code or id")
    funnel.add_argument("to_stage", metavar="TO", help="stage code or id")
    funnel.set_defaults(command=_pipeline_funnel)

    pipeline_editing.add_commands(sub)
    forecast.add_commands(sub)
    for parser in (create, listing, show, dump, clone, remove, funnel):
        add_actor_options(parser)
    for parser in (create, listing, show, clone, remove, funnel):
        add_json_option(parser)


def _pipeline_create(args: argparse.Namespace) -> int:
    from_options = (args.name, args.code, args.object_type, args.stage, args.column)
    if args.file is not None:
        if any(from_options) or args.template:
            raise UsageError(
                "pass a pipeline document FILE or --name with --stage and --column, not both"
            )
        text = read(args.file)
        document = documents.parse_pipeline_text(text, args.format or _format_of(args.file))
        if "states" in document and "stages" not in document:
            raise UsageError(
                f"{args.file} is a class document (states, not stages): "
                f"`flowkernel class load {args.file}` loads it"
            )
    elif args.name is None:
        raise UsageError(
            "pass a pipeline document FILE, or --name with --stage and --column; "
            "see `flowkernel pipeline create --help`"
        )
    else:
        document = _pipeline_document(args)
    actor = actor_of(args)
    if actor.account_id is None and not document.get("is_system"):
        raise UsageError("a pipeline belongs to an account: pass --account ID")
    with kernel(args) as fk:
        info = documents.load_pipeline(fk, document, actor)
    if args.json:
        print_json(info)
    else:
        print(f"created {_pipeline_line(info)}, {acted_as(actor)}")
    return EXIT_OK


def _pipeline_document(args: argparse.Namespace) -> dict[str, object]:
    """The document the `create` options describe."""
    stages: list[dict[str, object]] = []
    for text in args.stage:
        name, _, outcome = text.rpartition(":")
        if name and outcome in ("won", "lost"):
            stages.append({"name": name, f"is_{outcome}": True})
        elif name and outcome.isalpha() and outcome.islower():  # a mistyped mark
            raise UsageError(
                f"--stage {preview(text)}: the mark after ':' is won or lost, not "
                f"{preview(outcome)}"
            )
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
        f"pipeline {preview(info.name)} (id {info.id}, code {cell(info.code)}, "
        f"account {cell(info.account_id)}): {counts}"
    )


def _pipeline_list(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        found = fk.pipelines.list_pipelines(actor_of(args), templates=args.templates)
    if args.json:
        print_json(found)
        return EXIT_OK
    print(
        table(
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
    actor = actor_of(args)
    with kernel(args) as fk:
        info = fk.pipelines.get_pipeline(pipeline_id(fk, args.pipeline, actor), actor)
    if args.json:
        print_json(info)
        return EXIT_OK
    moves = ", ".join(f"{a} -> {b}" for a, b in info.allowed_moves) or "any"
    header = (
        f"pipeline {info.id}: {info.name}\n"
        f"code {cell(info.code)}, account {cell(info.account_id)}, object type "
        f"{cell(info.object_type)}, template {cell(info.is_template)}, version {info.version}\n"
        f"moving back {'allowed' if info.allow_backward else 'refused'}, skipping forward "
        f"{'allowed' if info.allow_skip_forward else 'refused'}; allowed moves: {moves}"
    )
    sections = [
        header,
        section(
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
        section(
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
        section("automations", *pipeline_editing.automation_table(info.automations)),
    ]
    if any(s.checklist for s in info.stages):
        sections.append("* a required checklist item")
    print("\n\n".join(sections))
    return EXIT_OK


def _pipeline_dump(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        info = fk.pipelines.get_pipeline(pipeline_id(fk, args.pipeline, actor), actor)
    sys.stdout.write(documents.dumps(documents.dump_pipeline(info), args.format))
    return EXIT_OK


def _pipeline_clone(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    if args.account is None:
        raise UsageError("pass --account ID: the account the copy goes into")
    with kernel(args) as fk:
        template = pipeline_id(fk, args.template, actor)
        info = fk.pipelines.clone_template(template, args.account, actor, args.name, code=args.code)
    if args.json:
        print_json(info)
    else:
        print(f"cloned template {template} into {_pipeline_line(info)}, {acted_as(actor)}")
    return EXIT_OK


def _pipeline_remove_stage(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    stage = code_or_id(args.stage)
    target = code_or_id(args.target) if args.target is not None else None
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        plan = fk.pipelines.remove_stage(pipeline, stage, actor, target=target, dry_run=True)
        if args.dry_run:
            report = plan
        else:
            with Progress(plan.count, f"moving the items of {preview(plan.stage)}") as bar:
                report = fk.pipelines.remove_stage(
                    pipeline,
                    stage,
                    actor,
                    target=target,
                    on_progress=lambda moved: bar.advance(moved - bar.done),
                )
    if args.json:
        print_json(report)
        return EXIT_OK
    where = f" to {preview(report.target)}" if report.target is not None else ""
    if report.dry_run:
        shown = ", ".join(map(str, report.item_ids[:20]))
        more = f" and {report.count - 20} more" if report.count > 20 else ""
        items = f": {shown}{more}" if report.item_ids else ""
        if report.count and report.target is None:
            print(
                f"stage {preview(report.stage)} holds {report.count} item(s){items}; removing "
                f"it needs "
                "--target STAGE"
            )
        else:
            print(
                f"would remove stage {preview(report.stage)} and move {report.count} "
                f"item(s){where}{items}"
            )
    else:
        print(
            f"removed stage {preview(report.stage)}; moved {report.count} item(s){where}, "
            f"{acted_as(actor)}"
        )
    return EXIT_OK


def _pipeline_funnel(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        found = fk.queries.conversion(
            pipeline, code_or_id(args.from_stage), code_or_id(args.to_stage), actor
        )
    if args.json:
        print_json(found)
        return EXIT_OK
    rate = "-" if found.rate is None else f"{found.rate:.0%}"
    print(
        f"{found.from_stage} -> {found.to_stage}: {found.converted} of {found.entered} item(s), "
        f"{rate}"
    )
    return EXIT_OK


def _format_of(path: str) -> str | None:
    if path == "-":
        return None
    return {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(Path(path).suffix)
