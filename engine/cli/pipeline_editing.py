"""The `pipeline` commands that edit a pipeline after it was created: the pipeline itself, its
movement rules, stages, columns, stage entry requirements and automations."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from flowkernel.cli.arguments import (
    Commands,
    acted_as,
    actor_of,
    add_actor_options,
    add_json_option,
    code_or_id,
    pipeline_id,
    positive_int,
)
from flowkernel.cli.connection import kernel
from flowkernel.cli.output import print_json, table
from flowkernel.cli.refusals import EXIT_OK, UsageError
from flowkernel.previews import preview

if TYPE_CHECKING:
    from flowkernel.actors import Actor
    from flowkernel.definition.pipelines.info import AutomationInfo

CLEARABLE: Final = ("color", "probability", "sla-days", "checklist")
"""What `edit-stage --clear` empties."""
TRIGGERS: Final = ("stage_entered", "stage_exited", "item_created", "sla_breached")


def add_commands(sub: Commands) -> None:
    """Add the editing commands to the `pipeline` command's subcommands."""
    parsers: list[argparse.ArgumentParser] = []

    def command(name: str, text: str, run: Callable[[argparse.Namespace], int]) -> Any:
        parser = sub.add_parser(name, help=text)
        parser.add_argument("pipeline", metavar="PIPELINE", help="pipeline id or code")
        parser.set_defaults(command=run)
        parsers.append(parser)
        return parser

    edit = command("edit", "rename a pipeline, change its code, description or kind", _edit)
    edit.add_argument("--name", help="the new name")
    code = edit.add_mutually_exclusive_group()
    code.add_argument("--code", help="the new code")
    code.add_argument("--no-code", action="store_true", help="take the code away")
    described = edit.add_mutually_exclusive_group()
    described.add_argument("--description", help="the new description")
    described.add_argument("--no-description", action="store_true", help="clear it")
    typed = edit.add_mutually_exclusive_group()
    typed.add_argument("--object-type", metavar="TYPE", help="the type of objects it holds")
    typed.add_argument("--no-object-type", action="store_true", help="any type")
    kind = edit.add_mutually_exclusive_group()
    kind.add_argument("--template", dest="template", action="store_const", const=True)
    kind.add_argument("--live", dest="template", action="store_const", const=False)

    command("delete", "delete a pipeline (its items and history stay)", _delete)

    movement = command("movement", "restrict or free how users move items", _movement)
    movement.add_argument("--backward", choices=("allow", "refuse"), help="moves back")
    movement.add_argument(
        "--skip-forward", choices=("allow", "refuse"), help="moves past the next stage"
    )
    moves = movement.add_mutually_exclusive_group()
    moves.add_argument(
        "--allow",
        action="append",
        metavar="FROM:TO",
        help="the only moves out of each stage named (repeatable; replaces the list)",
    )
    moves.add_argument("--any-move", action="store_true", help="clear the list of moves")

    add_stage = command("add-stage", "add a stage (last, or at --position)", _add_stage)
    add_stage.add_argument("name", metavar="NAME")
    _stage_options(add_stage)
    outcome = add_stage.add_mutually_exclusive_group()
    outcome.add_argument("--won", action="store_true", help="the won stage")
    outcome.add_argument("--lost", action="store_true", help="the lost stage")

    edit_stage = command("edit-stage", "change a stage", _edit_stage)
    edit_stage.add_argument("stage", metavar="STAGE", help="stage code or id")
    edit_stage.add_argument("--name", help="the new name")
    _stage_options(edit_stage)
    edit_stage.add_argument("--outcome", choices=("won", "lost", "none"))
    edit_stage.add_argument(
        "--clear", action="append", default=[], choices=CLEARABLE, help="empty it (repeatable)"
    )

    reorder = command("reorder-stages", "put every stage in a new order", _reorder)
    reorder.add_argument("order", nargs="+", metavar="STAGE", help="every stage, in order")

    require = command(
        "require", "require a value in COLUMN before items enter STAGE (--stop: no more)", _require
    )
    require.add_argument("stage", metavar="STAGE", help="stage code or id")
    require.add_argument("column", metavar="COLUMN", help="column name or id")
    require.add_argument("--stop", action="store_true", help="stop requiring it")

    add_column = command("add-column", "add a custom column", _add_column)
    add_column.add_argument("name", metavar="NAME")
    add_column.add_argument("--label", help="default: the name")
    add_column.add_argument("--type", default="text", help="the field type (default: text)")
    add_column.add_argument("--options", metavar="A,B", help="a select column's options")
    add_column.add_argument("--required", action="store_true", help="a value is required")
    add_column.add_argument("--position", type=_position, metavar="N")

    edit_column = command(
        "edit-column", "change a column, or deactivate or activate it", _edit_column
    )
    edit_column.add_argument("column", metavar="COLUMN", help="column name or id")
    edit_column.add_argument("--label")
    edit_column.add_argument("--options", metavar="A,B", help="a select column's options")
    edit_column.add_argument("--position", type=_position, metavar="N")
    edit_column.add_argument("--required", choices=("yes", "no"))
    edit_column.add_argument("--active", choices=("yes", "no"))

    command("automations", "a pipeline's automations, inactive ones too", _automations)

    add_automation = command(
        "add-automation", "fire EVENT when TRIGGER happens (in --stage)", _add_automation
    )
    add_automation.add_argument("trigger", metavar="TRIGGER", choices=TRIGGERS)
    add_automation.add_argument("event", metavar="EVENT", help="the event's name")
    add_automation.add_argument("--stage", help="stage code or id (default: any stage)")
    add_automation.add_argument("--name", help="what the automation is for")
    add_automation.add_argument("--payload", metavar="JSON", help="the payload template")
    add_automation.add_argument("--inactive", action="store_true", help="add it switched off")

    edit_automation = command("edit-automation", "change an automation", _edit_automation)
    edit_automation.add_argument("automation", type=positive_int, metavar="ID")
    edit_automation.add_argument("--trigger", choices=TRIGGERS)
    edit_automation.add_argument("--event", help="the event's name")
    stage = edit_automation.add_mutually_exclusive_group()
    stage.add_argument("--stage", help="stage code or id")
    stage.add_argument("--any-stage", action="store_true", help="fire in every stage")
    edit_automation.add_argument("--name")
    edit_automation.add_argument("--payload", metavar="JSON", help="the payload template")
    edit_automation.add_argument("--active", choices=("yes", "no"))

    delete_automation = command(
        "delete-automation", "delete an automation; it never fires again", _delete_automation
    )
    delete_automation.add_argument("automation", type=positive_int, metavar="ID")

    for parser in parsers:
        add_actor_options(parser)
        add_json_option(parser)


def _stage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--code", help="default: from the name")
    parser.add_argument("--position", type=_position, metavar="N")
    parser.add_argument("--color", help="e.g. #22c55e")
    parser.add_argument("--probability", type=int, metavar="PERCENT")
    parser.add_argument("--sla-days", type=int, metavar="DAYS")
    parser.add_argument(
        "--checklist", metavar="JSON", help='e.g. [{"key": "call", "label": "Call them"}]'
    )


def _position(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a position (0, 1, 2, ...), not {text!r}")
    return int(text)


def _json(option: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{option} takes JSON: {exc}") from None


def _options(text: str | None) -> list[str] | None:
    return None if text is None else [o.strip() for o in text.split(",")]


def _yes(text: str | None) -> bool | None:
    return None if text is None else text == "yes"


def _report(args: argparse.Namespace, actor: Actor, value: object, done: str) -> int:
    if args.json:
        print_json(value)
    else:
        print(f"{done}, {acted_as(actor)}")
    return EXIT_OK


# --- the pipeline ---------------------------------------------------------------------------


def _edit(args: argparse.Namespace) -> int:
    values: dict[str, Any] = {"name": args.name, "is_template": args.template}
    if args.code is not None or args.no_code:
        values["code"] = args.code
    if args.description is not None or args.no_description:
        values["description"] = args.description
    if args.object_type is not None or args.no_object_type:
        values["object_type"] = args.object_type
    actor = actor_of(args)
    with kernel(args) as fk:
        info = fk.pipelines.edit_pipeline(pipeline_id(fk, args.pipeline, actor), actor, **values)
    return _report(args, actor, info, f"pipeline {info.id} is now {preview(info.name)}")


def _delete(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        fk.pipelines.delete_pipeline(pipeline, actor)
    gone = {"pipeline_id": pipeline, "deleted": True}
    return _report(args, actor, gone, f"deleted pipeline {pipeline}")


def _movement(args: argparse.Namespace) -> int:
    values: dict[str, Any] = {
        "allow_backward": None if args.backward is None else args.backward == "allow",
        "allow_skip_forward": None if args.skip_forward is None else args.skip_forward == "allow",
    }
    if args.any_move:
        values["allowed_moves"] = None
    elif args.allow:
        pairs = []
        for text in args.allow:
            source, sep, dest = text.partition(":")
            if not sep or not source or not dest:
                raise UsageError(f"--allow takes FROM:TO, not {preview(text)}")
            pairs.append((code_or_id(source), code_or_id(dest)))
        values["allowed_moves"] = pairs
    actor = actor_of(args)
    with kernel(args) as fk:
        info = fk.pipelines.set_movement(pipeline_id(fk, args.pipeline, actor), actor, **values)
    moves = ", ".join(f"{a} -> {b}" for a, b in info.allowed_moves) or "any"
    rules = (
        f"moving back {'allowed' if info.allow_backward else 'refused'}, skipping forward "
        f"{'allowed' if info.allow_skip_forward else 'refused'}, allowed moves: {moves}"
    )
    return _report(args, actor, info, f"pipeline {info.id}: {rules}")


# --- stages ---------------------------------------------------------------------------------


def _stage_values(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in ("code", "position", "color", "probability", "sla_days"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.checklist is not None:
        values["checklist"] = _json("--checklist", args.checklist)
    return values


def _add_stage(args: argparse.Namespace) -> int:
    values = _stage_values(args)
    actor = actor_of(args)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        stage = fk.pipelines.add_stage(
            pipeline, args.name, actor, is_won=args.won, is_lost=args.lost, **values
        )
    done = f"added stage {stage.code} ({stage.name}) to pipeline {pipeline}"
    return _report(args, actor, stage, done)


def _edit_stage(args: argparse.Namespace) -> int:
    values = _stage_values(args)
    if args.name is not None:
        values["name"] = args.name
    for key in args.clear:
        name = key.replace("-", "_")
        if name in values:
            raise UsageError(f"--{key} and --clear {key} contradict each other")
        values[name] = None
    if args.outcome is not None:
        values["is_won"], values["is_lost"] = args.outcome == "won", args.outcome == "lost"
    if not values:
        raise UsageError("name something to change; see `flowkernel pipeline edit-stage --help`")
    actor = actor_of(args)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        stage = fk.pipelines.edit_stage(pipeline, code_or_id(args.stage), actor, **values)
    return _report(args, actor, stage, f"changed stage {stage.code} of pipeline {pipeline}")


def _reorder(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        found = fk.pipelines.reorder_stages(pipeline, [code_or_id(s) for s in args.order], actor)
    order = ", ".join(s.code for s in found)
    return _report(args, actor, found, f"stages of pipeline {pipeline}: {order}")


def _require(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        change = fk.pipelines.unrequire_column if args.stop else fk.pipelines.require_column
        stage = change(pipeline, code_or_id(args.stage), code_or_id(args.column), actor)
    required = ", ".join(stage.required_columns) or "nothing"
    return _report(args, actor, stage, f"stage {stage.code} requires {required}")


# --- columns --------------------------------------------------------------------------------


def _add_column(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        column = fk.pipelines.add_column(
            pipeline,
            args.name,
            actor,
            label=args.label,
            field_type=args.type,
            options=_options(args.options),
            is_required=args.required,
            position=args.position,
        )
    done = f"added {column.field_type} column {column.name} to pipeline {pipeline}"
    return _report(args, actor, column, done)


def _edit_column(args: argparse.Namespace) -> int:
    values = {
        "label": args.label,
        "options": _options(args.options),
        "position": args.position,
        "is_required": _yes(args.required),
        "is_active": _yes(args.active),
    }
    if all(v is None for v in values.values()):
        raise UsageError("name something to change; see `flowkernel pipeline edit-column --help`")
    actor = actor_of(args)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        column = fk.pipelines.edit_column(pipeline, code_or_id(args.column), actor, **values)
    state = "active" if column.is_active else "inactive"
    return _report(args, actor, column, f"changed column {column.name} ({state})")


# --- automations ----------------------------------------------------------------------------

AUTOMATION_HEADERS: Final = ("id", "trigger", "stage", "event", "name", "active")


def automation_table(
    automations: Sequence[AutomationInfo],
) -> tuple[tuple[str, ...], list[tuple[object, ...]]]:
    """The headers and rows of a table of automations."""
    rows: list[tuple[object, ...]] = [
        (a.id, a.trigger, a.stage or "(any)", a.event_name, a.name, a.is_active)
        for a in automations
    ]
    return AUTOMATION_HEADERS, rows


def _automations(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        found = fk.pipelines.list_automations(pipeline_id(fk, args.pipeline, actor), actor)
    if args.json:
        print_json(found)
        return EXIT_OK
    print(table(*automation_table(found)))
    return EXIT_OK


def _add_automation(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        found = fk.pipelines.add_automation(
            pipeline,
            args.trigger,
            args.event,
            actor,
            stage=code_or_id(args.stage) if args.stage is not None else None,
            name=args.name,
            payload_template=_json("--payload", args.payload) if args.payload else None,
            is_active=not args.inactive,
        )
    where = f"in stage {found.stage}" if found.stage else "in any stage"
    done = f"added automation {found.id}: {found.event_name} on {found.trigger} {where}"
    return _report(args, actor, found, done)


def _edit_automation(args: argparse.Namespace) -> int:
    values: dict[str, Any] = {
        "trigger": args.trigger,
        "event_name": args.event,
        "is_active": _yes(args.active),
    }
    if args.stage is not None or args.any_stage:
        values["stage"] = code_or_id(args.stage) if args.stage is not None else None
    if args.name is not None:
        values["name"] = args.name
    if args.payload is not None:
        values["payload_template"] = _json("--payload", args.payload)
    actor = actor_of(args)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        found = fk.pipelines.edit_automation(args.automation, actor, pipeline_id=pipeline, **values)
    state = "active" if found.is_active else "inactive"
    return _report(args, actor, found, f"changed automation {found.id} ({state})")


def _delete_automation(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        fk.pipelines.delete_automation(args.automation, actor, pipeline_id=pipeline)
    gone = {"automation_id": args.automation, "deleted": True}
    return _report(args, actor, gone, f"deleted automation {args.automation}")
