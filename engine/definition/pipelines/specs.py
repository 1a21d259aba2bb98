"""Stage and column specs as callers pass them, and the validation of every definition value.

A spec (or a mapping of its fields) is checked before anything is written: names, codes,
positions, colours, probabilities, SLA days, won/lost outcomes, checklists and options.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final, TypeVar

from flowkernel.errors import DuplicateCode, InvalidDefinition
from flowkernel.fields import FIELD_TYPES, MULTI_SELECT, SELECT
from flowkernel.previews import preview
from flowkernel.validation import (
    MAX_NAME,
    MAX_POSITION,
    MAX_STATE_CODE,
    check_bool,
    check_code,
    check_int,
    check_optional_text,
    check_text,
    storable,
)

OPTION_TYPES: Final = (SELECT, MULTI_SELECT)
"""Field types whose columns carry a list of options."""

MAX_OPTIONS: Final = 1000
"""Most options of a select or multi_select column."""

MAX_CODE: Final = MAX_STATE_CODE
"""Longest stage or pipeline code: `move_to_<code>` must fit the 128 characters of a method code."""


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    """One entry of a stage's checklist."""

    key: str
    label: str
    required: bool


class Unset(enum.Enum):
    """The type of `UNSET`: an argument left out, as opposed to None."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET
"""Default of optional edits whose None means "clear": the value stays as it is."""

_T = TypeVar("_T")

_CODE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class StageSpec:
    """A stage to create. Only `name` is needed; `code` defaults to a slug of the name.

    `checklist` takes the seed's JSON form, `[{"key", "label", "required"}]`, or
    `ChecklistItem` values. `position` defaults to the stage's place in the list.
    """

    name: str
    code: str | None = None
    position: int | None = None
    color: str | None = None
    probability: int | None = None
    sla_days: int | None = None
    is_won: bool = False
    is_lost: bool = False
    checklist: Sequence[Mapping[str, Any] | ChecklistItem] = ()


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """A custom column to create; `label` defaults to the name, `position` to the end."""

    name: str
    label: str | None = None
    field_type: str = "text"
    options: Sequence[str] | None = None
    is_required: bool = False
    position: int | None = None


# --- validation --------------------------------------------------------------------------


def slugify(name: str) -> str:
    """A stage code from a name: ASCII lower case, words joined by '_' ("Won deal" -> won_deal)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")[:100].rstrip("_")
    if not slug:
        return "stage"
    return f"stage_{slug}" if slug[0].isdigit() else slug


def unique_code(code: str, taken: Iterable[str]) -> str:
    """`code`, or `code_2`, `code_3`, ... the first not in `taken`."""
    used = set(taken)
    if code not in used:
        return code
    n = 2
    while f"{code}_{n}" in used:
        n += 1
    return f"{code}_{n}"


def stage_codes_for(specs: Sequence[StageSpec]) -> list[str]:
    """Stage codes of a new pipeline: the explicit ones, then unique slugs of the names."""
    explicit = [s.code for s in specs if s.code is not None]
    for code in explicit:
        if explicit.count(code) > 1:
            raise DuplicateCode("stage", code, "the new pipeline")
    taken = set(explicit)
    codes: list[str] = []
    for spec in specs:
        code = spec.code if spec.code is not None else unique_code(slugify(spec.name), taken)
        taken.add(code)
        codes.append(code)
    return codes


def check_outcomes(pipeline: str, stages: Sequence[tuple[str, bool, bool]]) -> None:
    """At most one won and one lost stage per pipeline; no stage both won and lost."""
    for code, won, lost in stages:
        if won and lost:
            raise InvalidDefinition(
                f"stage {preview(code)} cannot be both the won and the lost stage", stage=code
            )
    for kind, index in (("won", 1), ("lost", 2)):
        marked = [s[0] for s in stages if s[index]]
        if len(marked) > 1:
            raise InvalidDefinition(
                f"pipeline {preview(pipeline)} would have {len(marked)} {kind} stages "
                f"({', '.join(marked)}); keep at most one won and one lost stage",
                outcome=kind,
                stages=tuple(marked),
            )


def read_specs(raw: object, what: str, read: Callable[[Any], _T]) -> list[_T]:
    """Each entry of the list `raw`, read by `read`; a refusal names the entry (`stages[2]`)."""
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence):
        raise InvalidDefinition(f"{what} must be a list, not {preview(raw)}", **{what: raw})
    specs = []
    for index, entry in enumerate(raw):
        try:
            specs.append(read(entry))
        except InvalidDefinition as exc:
            raise InvalidDefinition(f"{what}[{index}]: {exc.message}", **exc.details()) from None
    return specs


def stage_spec(raw: StageSpec | Mapping[str, Any]) -> StageSpec:
    """A `StageSpec` (or a mapping of its fields) as a checked `StageSpec`."""
    spec = _spec(StageSpec, raw, "stage")
    check_text("name", spec.name)
    if spec.code is not None:
        check_code("stage", spec.code, max_length=MAX_CODE)
    if spec.position is not None:
        check_int("position", spec.position, maximum=MAX_POSITION)
    check_color(spec.color)
    check_probability(spec.probability)
    check_sla(spec.sla_days)
    check_bool("is_won", spec.is_won)
    check_bool("is_lost", spec.is_lost)
    parse_checklist(spec.checklist)
    return spec


def column_spec(raw: ColumnSpec | Mapping[str, Any]) -> ColumnSpec:
    """A `ColumnSpec` (or a mapping of its fields) as a checked `ColumnSpec`."""
    spec = _spec(ColumnSpec, raw, "column")
    if not isinstance(spec.name, str) or not _CODE.fullmatch(spec.name) or len(spec.name) > 128:
        raise InvalidDefinition(
            f"column name {preview(spec.name)} must be 1-128 ASCII letters, digits or '_', not "
            "starting with a digit",
            column=spec.name,
        )
    if spec.label is not None:
        check_text("label", spec.label)
    if spec.field_type not in FIELD_TYPES:
        raise InvalidDefinition(
            f"column {preview(spec.name)} has field type {preview(spec.field_type)}; use one of "
            f"{', '.join(FIELD_TYPES)}",
            column=spec.name,
            field_type=spec.field_type,
        )
    options = check_options(spec.name, spec.field_type, spec.options)
    check_bool("is_required", spec.is_required)
    if spec.position is not None:
        check_int("position", spec.position, maximum=MAX_POSITION)
    return ColumnSpec(
        name=spec.name,
        label=spec.label,
        field_type=spec.field_type,
        options=tuple(options) if options is not None else None,
        is_required=spec.is_required,
        position=spec.position,
    )


def _spec(kind: type[_T], raw: object, what: str) -> _T:
    if isinstance(raw, kind):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidDefinition(
            f"a {what} is a {kind.__name__} or a mapping of its fields, not {preview(raw)}",
            value=raw,
        )
    known = [f.name for f in fields(kind)]  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(known), key=repr)
    if unknown:
        raise InvalidDefinition(
            f"unknown {what} field(s) {', '.join(map(str, unknown))}; known: {', '.join(known)}",
            fields=tuple(unknown),
        )
    if "name" not in raw:
        raise InvalidDefinition(f"a {what} needs a name", value=dict(raw))
    return kind(**raw)


def check_options(column: str, field_type: str, options: object) -> list[str] | None:
    """The options of a select type column as a list; None for the other types."""
    if field_type not in OPTION_TYPES:
        if options is not None:
            raise InvalidDefinition(
                f"column {preview(column)} of type {preview(field_type)} takes no options; only "
                f"{' and '.join(OPTION_TYPES)} columns do",
                column=column,
                field_type=field_type,
            )
        return None
    if (
        isinstance(options, (str, bytes))
        or not isinstance(options, Sequence)
        or not options
        or len(options) > MAX_OPTIONS
        or not all(isinstance(o, str) and o and len(o) <= MAX_NAME and storable(o) for o in options)
        or len(set(options)) != len(options)
    ):
        raise InvalidDefinition(
            f"column {preview(column)} of type {preview(field_type)} needs a list of 1 to "
            f"{MAX_OPTIONS} "
            f"distinct option strings (1 to {MAX_NAME} characters each), not {preview(options)}",
            column=column,
            options=options,
        )
    return list(options)


def parse_checklist(raw: object) -> tuple[ChecklistItem, ...]:
    """A checklist in the seed's JSON form (or `ChecklistItem` values), validated; None: empty."""
    if raw is None:
        return ()
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
        raise InvalidDefinition(
            f'a checklist is a list of {{"key", "label", "required"}} entries, not {preview(raw)}',
            checklist=raw,
        )
    entries: list[ChecklistItem] = []
    for entry in raw:
        key: object
        label: object
        required: object
        if isinstance(entry, ChecklistItem):
            key, label, required = entry.key, entry.label, entry.required
        elif isinstance(entry, Mapping):
            extra = set(entry) - {"key", "label", "required"}
            key = entry.get("key")
            label = entry.get("label", key)
            required = entry.get("required", False)
            if extra:
                raise InvalidDefinition(
                    f"checklist entry {preview(dict(entry))} has unknown field(s) "
                    f"{', '.join(sorted(map(str, extra)))}; it takes key, label, required",
                    entry=dict(entry),
                )
        else:
            raise InvalidDefinition(
                f"checklist entry {preview(entry)} is not a mapping", entry=entry
            )
        if (
            not isinstance(key, str)
            or not key
            or len(key) > MAX_NAME
            or not storable(key)
            or not isinstance(label, str)
            or len(label) > MAX_NAME
            or not storable(label)
            or not isinstance(required, bool)
        ):
            raise InvalidDefinition(
                f"checklist entry {preview(entry)} needs a non-empty string key, a string label "
                f"(at "
                f"most {MAX_NAME} characters each) and a boolean required",
                entry=entry,
            )
        item = ChecklistItem(key=key, label=label, required=required)
        if any(e.key == item.key for e in entries):
            raise InvalidDefinition(
                f"checklist key {preview(item.key)} appears twice", key=item.key
            )
        entries.append(item)
    return tuple(entries)


def checklist_json(entries: Sequence[ChecklistItem]) -> list[dict[str, Any]]:
    """A checklist in the seed's JSON form, as stored."""
    return [{"key": e.key, "label": e.label, "required": e.required} for e in entries]


def check_color(color: object) -> str | None:
    """A stage colour: a string such as '#22c55e', at most 64 characters."""
    return check_optional_text("color", color, max_length=64)


def check_probability(probability: object) -> int | None:
    """A stage probability: an integer percentage from 0 to 100, or None."""
    if probability is None:
        return None
    if (
        isinstance(probability, bool)
        or not isinstance(probability, int)
        or not (0 <= probability <= 100)
    ):
        raise InvalidDefinition(
            f"a stage probability is an integer percentage from 0 to 100, not "
            f"{preview(probability)}",
            probability=probability,
        )
    return probability


def check_sla(days: object) -> int | None:
    """A stage's SLA: a whole number of days, at least 1, or None."""
    if days is None:
        return None
    return check_int("sla_days", days, minimum=1)
