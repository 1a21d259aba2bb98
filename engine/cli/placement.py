"""`item place`: place one object into a class or pipeline, or one per row of a CSV file."""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from flowkernel.actors import Actor
from flowkernel.cli.arguments import acted_as, actor_of, assignments, code_or_id, read
from flowkernel.cli.connection import kernel
from flowkernel.cli.output import print_json
from flowkernel.cli.progress import Progress
from flowkernel.cli.refusals import EXIT_ERROR, EXIT_OK, UsageError, refusal_of
from flowkernel.errors import ColumnInactive, UnknownDefinition
from flowkernel.fields import normalize
from flowkernel.previews import preview

if TYPE_CHECKING:
    from flowkernel.compile.compiled import CompiledClass
    from flowkernel.kernel import Flowkernel
    from flowkernel.snapshots import ItemSnapshot

CSV_FIELDS: Final = ("object_type", "object_id", "stage", "assigned_user_id")
"""Columns of a placement CSV file; any other column is a custom value of the item."""

SHOWN: Final = 20
"""The most refused line numbers the summary names; each refusal is reported on its own line."""


def item_place(args: argparse.Namespace) -> int:
    """Run `item place`: one object from the arguments, or one per row of `--csv FILE`."""
    if args.csv is not None:
        return _item_place_csv(args)
    if args.object_type is None or args.object_id is None:
        raise UsageError("pass OBJECT_TYPE and OBJECT_ID, or --csv FILE")
    values = assignments(args.values)
    actor = actor_of(args)
    with kernel(args) as fk:
        ref = code_or_id(args.cls)
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
        print_json(item)
    else:
        print(
            f"placed {item.object_type} {item.key} into {preview(item.class_code)} as item "
            f"{item.id}, state {preview(item.state)}, {acted_as(actor)}"
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
    actor = actor_of(args)
    placed: list[dict[str, object]] = []
    failed: list[dict[str, object]] = []
    with kernel(args) as fk:
        ref = code_or_id(args.cls)
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
        print_json({"rows": len(rows), "placed": placed, "failed": failed, "stopped": stopped})
    else:
        summary = (
            f"placed {len(placed)} of {len(rows)} row(s) into {preview(compiled.code)}, "
            f"{acted_as(actor)}"
        )
        if failed:
            lines = ", ".join(str(f["line"]) for f in failed[:SHOWN])
            more = f" and {len(failed) - SHOWN} more" if len(failed) > SHOWN else ""
            summary += f"; refused: line(s) {lines}{more}"
        if stopped:
            summary += f"; stopped at line {failed[0]['line']}"
        print(summary)
    if not failed:
        return EXIT_OK
    first = failed[0]["exit"]
    return first if isinstance(first, int) else EXIT_ERROR


def _csv_rows(path: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the (line number, cells) of each row of a placement CSV file."""
    reader = csv.DictReader(io.StringIO(read(path), newline=""))
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
    object_id = (row.get("object_id") or "").strip()
    if not object_id:
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
        raise UsageError(f"{name} {preview(text)} is not an integer") from None


def _check_values(compiled: CompiledClass, values: Mapping[str, object]) -> None:
    """Refuse an unknown or inactive column, or a value its column does not take."""
    for name, value in values.items():
        column = compiled.columns.get(name)
        if column is None:
            known = [c.name for c in compiled.columns.values() if c.is_active]
            raise UnknownDefinition("column", name, f"pipeline {preview(compiled.name)}", known)
        if not column.is_active:
            raise ColumnInactive(column.name, compiled.name)
        if value is not None:
            normalize(column, value)
