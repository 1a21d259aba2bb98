"""The `item` commands: place and move items, run methods on them, explain why a method can or
cannot run, read and set their values. `placement` carries out `item place`."""

from __future__ import annotations

import argparse
import json

from flowkernel.cli.arguments import (
    Commands,
    acted_as,
    actor_of,
    add_actor_options,
    add_json_option,
    assignments,
    code_or_id,
    moment,
    positive_int,
)
from flowkernel.cli.connection import kernel
from flowkernel.cli.output import jsonable_dict, print_json, table
from flowkernel.cli.placement import item_place
from flowkernel.cli.refusals import EPILOG, EXIT_OK, UsageError
from flowkernel.previews import preview
from flowkernel.snapshots import ExecutionResult


def add_commands(commands: Commands) -> None:
    """Add the `item` commands."""
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
    place.add_argument(
        "object_id",
        nargs="?",
        metavar="OBJECT_ID",
        help="the host's key of the object: an integer, a UUID or a short text key",
    )
    place.add_argument("--stage", metavar="STATE", help="the state to place into")
    place.add_argument("--assign", type=positive_int, metavar="USER_ID", help="assign the item")
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
    place.set_defaults(command=item_place)

    move = sub.add_parser("move", help="move an item to a stage (its move_to_<stage> method)")
    move.add_argument("item", type=positive_int, metavar="ITEM")
    move.add_argument("stage", metavar="STAGE", help="stage code or id")
    move.set_defaults(command=_item_move)

    execute = sub.add_parser("exec", help="execute a method on an item")
    execute.add_argument("item", type=positive_int, metavar="ITEM")
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
    methods.add_argument("item", type=positive_int, metavar="ITEM")
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
    explain.add_argument("item", type=positive_int, metavar="ITEM")
    explain.add_argument("what", metavar="METHOD_OR_STAGE", help="method code, state code or id")
    explain.set_defaults(command=_item_explain)

    history = sub.add_parser("history", help="an item's state history, oldest first")
    history.add_argument("item", type=positive_int, metavar="ITEM")
    history.set_defaults(command=_item_history)

    state = sub.add_parser(
        "state", help="the state an item was in at an instant (from its history's periods)"
    )
    state.add_argument("item", type=positive_int, metavar="ITEM")
    state.add_argument(
        "--at",
        type=moment,
        required=True,
        metavar="WHEN",
        help="the instant (ISO 8601, UTC unless it names an offset)",
    )
    state.set_defaults(command=_item_state)

    calls = sub.add_parser(
        "calls",
        help="an item's method calls, newest first: moves, calls that changed nothing, the "
        "last call of methods that keep one",
    )
    calls.add_argument("item", type=positive_int, metavar="ITEM")
    calls.add_argument(
        "--limit", type=positive_int, default=100, metavar="N", help="calls per page (max 1000)"
    )
    calls.add_argument("--cursor", metavar="CURSOR", help="the next page: a printed next cursor")
    calls.set_defaults(command=_item_calls)

    find = sub.add_parser(
        "find", help="the items of an object, by its type and the host's key, one per class"
    )
    find.add_argument("object_type", metavar="OBJECT_TYPE")
    find.add_argument("key", metavar="KEY", help="an integer, a UUID or a text key")
    find.set_defaults(command=_item_find)

    values = sub.add_parser("values", help="an item's custom values")
    values.add_argument("item", type=positive_int, metavar="ITEM")
    values.set_defaults(command=_item_values)

    set_values = sub.add_parser("set", help="set or clear an item's custom values")
    set_values.add_argument("item", type=positive_int, metavar="ITEM")
    set_values.add_argument("assignments", nargs="*", metavar="COLUMN=VALUE")
    set_values.add_argument(
        "--clear", action="append", default=[], metavar="COLUMN", help="remove a value"
    )
    set_values.set_defaults(command=_item_set)

    checklist = sub.add_parser(
        "checklist",
        help="an item's checklist in its current stage; with KEY, complete (or reopen) an entry",
    )
    checklist.add_argument("item", type=positive_int, metavar="ITEM")
    checklist.add_argument("key", nargs="?", metavar="KEY", help="the entry to complete")
    checklist.add_argument("--reopen", action="store_true", help="mark KEY open again")
    checklist.set_defaults(command=_item_checklist)

    for parser in (
        place, move, execute, methods, explain, history, state, calls, find, values,
        set_values, checklist,
    ):  # fmt: skip
        add_actor_options(parser)
        add_json_option(parser)


def _item_move(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        result = fk.move(args.item, code_or_id(args.stage), actor_of(args))
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
    params.update(assignments(args.params, option="--param KEY=VALUE"))
    actor = actor_of(args)
    with kernel(args) as fk:
        if args.action:
            result = fk.execute_action(args.item, args.method, actor, params=params)
        else:
            result = fk.execute(args.item, args.method, actor, params=params)
    _print_result(result, args.json)
    return EXIT_OK


def _print_result(result: ExecutionResult, as_json: bool) -> None:
    if as_json:
        print_json(result)
    elif result.dropped:
        print(
            f"item {result.item_id}: dropped by {preview(result.method)}, {acted_as(result.actor)}"
        )
    elif result.changed:
        print(
            f"item {result.item_id}: {result.from_state} -> {result.to_state} ({result.method}), "
            f"{acted_as(result.actor)}"
        )
    else:
        print(
            f"item {result.item_id}: {result.method} ran; still in {preview(result.to_state)}, "
            f"{acted_as(result.actor)}"
        )


def _item_find(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        found = fk.items.find(args.object_type, args.key, actor_of(args))
    if args.json:
        print_json(found)
    else:
        print(
            table(
                ("item", "class", "object", "state", "account"),
                [
                    (i.id, i.class_code, f"{i.object_type} {i.key}", i.state, i.account_id)
                    for i in found
                ],
            )
        )
    return EXIT_OK


def _item_methods(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        methods = fk.methods(args.item, actor_of(args))
    if args.json:
        print_json(methods)
    else:
        print(
            table(
                ("code", "action", "label", "target", "visible"),
                [(m.code, m.action, m.label, m.target, m.visible) for m in methods],
            )
        )
    return EXIT_OK


def _item_explain(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        explanation = fk.explain(args.item, code_or_id(args.what), actor_of(args))
    if args.json:
        print_json({**jsonable_dict(explanation), "summary": explanation.summary})
        return EXIT_OK
    print(f"{'yes' if explanation.possible else 'no'}: {explanation.summary}")
    for reason in explanation.reasons:
        print(f"  - {reason.code}: {reason.message}")
    return EXIT_OK


def _item_calls(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        page = fk.queries.calls(args.item, actor_of(args), limit=args.limit, cursor=args.cursor)
    if args.json:
        print_json(page)
        return EXIT_OK
    print(
        table(
            ("called at", "method", "in", "to", "by", "calls", "params"),
            [
                (
                    f"{c.called_at:%Y-%m-%d %H:%M:%S}",
                    c.method,
                    c.state,
                    c.to_state,
                    "system" if c.is_system else c.user_id,
                    c.count,
                    json.dumps(c.params, ensure_ascii=False) if c.params else None,
                )
                for c in page.calls
            ],
        )
    )
    if page.next_cursor is not None:
        print(f"more: --cursor '{page.next_cursor}'")
    return EXIT_OK


def _item_state(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        found = fk.state_at(args.item, args.at, actor_of(args))
    if args.json:
        print_json({"item_id": args.item, "at": args.at.isoformat(), "state": found})
    else:
        print(found if found is not None else "(none: not placed yet, or dropped by then)")
    return EXIT_OK


def _item_history(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        entries = fk.history(args.item, actor_of(args))
    if args.json:
        print_json(entries)
    else:
        print(
            table(
                ("moved at", "from", "to", "method", "by", "until"),
                [
                    (
                        f"{e.moved_at:%Y-%m-%d %H:%M:%S}",
                        e.from_state,
                        e.to_state,
                        e.method,
                        "system" if e.is_system else e.user_id,
                        "now" if e.valid_to is None else f"{e.valid_to:%Y-%m-%d %H:%M:%S}",
                    )
                    for e in entries
                ],
            )
        )
    return EXIT_OK


def _item_values(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        values = fk.items.values(args.item, actor_of(args))
    if args.json:
        print_json(values)
    else:
        print(
            table(
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


def _item_checklist(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    if args.reopen and args.key is None:
        raise UsageError("--reopen needs the KEY of the entry to reopen")
    with kernel(args) as fk:
        if args.key is not None:
            mark = (
                fk.items.reopen_checklist_item if args.reopen else fk.items.complete_checklist_item
            )
            mark(args.item, args.key, actor)
        entries = fk.items.checklist(args.item, actor)
    if args.json:
        print_json(entries)
    else:
        if args.key is not None:
            done = "reopened" if args.reopen else "completed"
            print(f"item {args.item}: {args.key} {done}, {acted_as(actor)}")
        print(
            table(
                ("key", "label", "required", "completed", "by", "at"),
                [
                    (e.key, e.label, e.required, e.completed, e.completed_by, e.completed_at)
                    for e in entries
                ],
            )
        )
    return EXIT_OK


def _item_set(args: argparse.Namespace) -> int:
    values = assignments(args.assignments)
    if not values and not args.clear:
        raise UsageError("pass COLUMN=VALUE to set and/or --clear COLUMN")
    actor = actor_of(args)
    with kernel(args) as fk:
        written = fk.items.set_values(args.item, values, actor) if values else []
        cleared = {name: fk.items.clear_value(args.item, name, actor) for name in args.clear}
    if args.json:
        print_json({"set": written, "cleared": cleared})
        return EXIT_OK
    done = [f"{v.name}={v.value}" for v in written]
    done += [f"cleared {name}" if had else f"{name} had no value" for name, had in cleared.items()]
    print(f"item {args.item}: {'; '.join(done)}, {acted_as(actor)}")
    return EXIT_OK
