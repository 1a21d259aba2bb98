"""Pipeline documents: a pipeline with its stages, columns, requirements, movement rules and
automations as plain data (YAML or JSON), loaded in one transaction and dumped back.

The keys are the parameters of the administration API (`fk.pipelines`): the document's top
level those of `create_pipeline`, a stage those of `StageSpec` plus `requires` (the columns
`require_column` makes it need), a column those of `ColumnSpec` plus `is_active`, `movement`
those of `set_movement`, an automation those of `add_automation`. Stages and columns take the
order of their lists. `load_pipeline` checks the document's shape first, then makes every
call inside one database transaction, so a refused document leaves nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import yaml

from flowkernel.actors import Actor
from flowkernel.definition.pipelines.admin import ColumnSpec, PipelineAdmin, PipelineInfo, StageSpec
from flowkernel.documents.classes import definition_transaction
from flowkernel.errors import DefinitionError, InvalidArgument, InvalidDocument
from flowkernel.previews import preview
from flowkernel.validation import check_document_text

if TYPE_CHECKING:
    from flowkernel.kernel import Flowkernel

PIPELINE_KEYS: Final = (
    "name", "code", "description", "object_type", "is_template", "is_system",
    "movement", "stages", "columns", "automations",
)  # fmt: skip
STAGE_KEYS: Final = (
    "name", "code", "color", "probability", "sla_days", "is_won", "is_lost", "checklist",
    "requires",
)  # fmt: skip
COLUMN_KEYS: Final = ("name", "label", "field_type", "options", "is_required", "is_active")
MOVEMENT_KEYS: Final = ("allow_backward", "allow_skip_forward", "allowed_moves")
AUTOMATION_KEYS: Final = (
    "trigger", "event_name", "stage", "name", "payload_template", "is_active",
)  # fmt: skip


def parse_pipeline_text(text: str, format: str | None = None) -> dict[str, Any]:
    """A pipeline document from YAML or JSON text (`format=None`: JSON if it starts with `{`).

    The text is at most `MAX_DOCUMENT` characters.
    """
    check_document_text(text)
    fmt = format if format is not None else "json" if text.lstrip().startswith("{") else "yaml"
    if fmt not in ("yaml", "json"):
        raise InvalidDocument("format", f"unknown format {preview(fmt)}; use yaml or json")
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        problem = " ".join(str(exc).split()) or "nested too deeply"
        raise InvalidDocument("", f"not valid {fmt.upper()}: {problem}") from exc
    if not isinstance(data, dict):
        raise InvalidDocument("", f"a pipeline document is a mapping, not {_kind(data)}")
    return data


# --- loading -----------------------------------------------------------------------------


def load_pipeline(
    fk: Flowkernel,
    document: Mapping[str, Any],
    actor: Actor,
    *,
    account_id: int | None = None,
) -> PipelineInfo:
    """Create the pipeline a document describes, in `account_id` (default: the actor's).

    Unknown keys and wrong shapes are refused first (`InvalidDocument` names the path of
    every problem, such as `stages[2].sla_days`); a refusal by the API is reported at the path
    of the entry that caused it, and rolls back everything the document wrote.
    """
    with definition_transaction(fk) as sessions:
        admin = PipelineAdmin(sessions, fk.executor.relocate)
        return load_pipeline_with(admin, document, actor, account_id=account_id)


def load_pipeline_with(
    admin: PipelineAdmin,
    document: Mapping[str, Any],
    actor: Actor,
    *,
    account_id: int | None = None,
) -> PipelineInfo:
    """`load_pipeline` through `admin`, in the transaction its sessions join."""
    shape = _Shape()
    top = shape.mapping(document, "", PIPELINE_KEYS, required=("name",))
    stages = shape.entries(top, "stages", STAGE_KEYS, required=("name",))
    columns = shape.entries(top, "columns", COLUMN_KEYS, required=("name",))
    automations = shape.entries(top, "automations", AUTOMATION_KEYS, ("trigger", "event_name"))
    movement = (
        shape.mapping(top["movement"], "movement", MOVEMENT_KEYS)
        if top.get("movement") is not None
        else None
    )
    requires: list[list[tuple[str, str]]] = []
    for index, stage in enumerate(stages):
        listed = stage.get("requires")
        path = f"stages[{index}].requires"
        if listed is None:
            requires.append([])
        elif isinstance(listed, list):
            for i, name in enumerate(listed):
                if not isinstance(name, str):
                    shape.fail(f"{path}[{i}]", f"expected a column name, not {_kind(name)}")
            requires.append([(f"{path}[{i}]", str(name)) for i, name in enumerate(listed)])
        else:
            shape.fail(path, f"expected a list of column names, not {_kind(listed)}")
            requires.append([])
    shape.raise_problems()

    with reported_in_document(""):
        info = admin.create_pipeline(
            top["name"],
            actor,
            stages=[StageSpec(**{k: v for k, v in s.items() if k != "requires"}) for s in stages],
            columns=[
                ColumnSpec(**{k: v for k, v in c.items() if k != "is_active"}) for c in columns
            ],
            object_type=top.get("object_type"),
            code=top.get("code"),
            description=top.get("description"),
            account_id=account_id,
            is_template=top.get("is_template", False),
            is_system=top.get("is_system", False),
        )
    for stage_info, needs in zip(info.stages, requires, strict=True):
        for path, name in needs:
            with reported_in_document(path):
                admin.require_column(info.id, stage_info.code, name, actor)
    for index, column in enumerate(columns):
        if column.get("is_active", True) is False:
            with reported_in_document(f"columns[{index}].is_active"):
                admin.deactivate_column(info.id, column["name"], actor)
    if movement is not None:
        with reported_in_document("movement"):
            admin.set_movement(info.id, actor, **movement)
    for index, automation in enumerate(automations):
        with reported_in_document(f"automations[{index}]"):
            admin.add_automation(
                info.id,
                automation["trigger"],
                automation["event_name"],
                actor,
                stage=automation.get("stage"),
                name=automation.get("name"),
                payload_template=automation.get("payload_template"),
                is_active=automation.get("is_active", True),
            )
    return admin.get_pipeline(info.id, actor)


# --- dumping -----------------------------------------------------------------------------


def dump_pipeline(info: PipelineInfo) -> dict[str, Any]:
    """A pipeline as a document that `load_pipeline` reads back into the same definition."""
    doc: dict[str, Any] = {
        "name": info.name,
        "code": info.code,
        "description": info.description,
        "object_type": info.object_type,
        "is_template": info.is_template,
    }
    if info.is_system:
        doc["is_system"] = True
    doc["movement"] = {
        "allow_backward": info.allow_backward,
        "allow_skip_forward": info.allow_skip_forward,
        "allowed_moves": [list(pair) for pair in info.allowed_moves],
    }
    doc["stages"] = [
        _compact(
            {
                "name": s.name,
                "code": s.code,
                "color": s.color,
                "probability": s.probability,
                "sla_days": s.sla_days,
                "is_won": s.is_won,
                "is_lost": s.is_lost,
                "checklist": [
                    {"key": c.key, "label": c.label, "required": c.required} for c in s.checklist
                ],
                "requires": list(s.required_columns),
            }
        )
        for s in info.stages
    ]
    doc["columns"] = [
        _compact(
            {
                "name": c.name,
                "label": c.label,
                "field_type": c.field_type,
                "options": list(c.options) or None,
                "is_required": c.is_required,
            }
        )
        | ({} if c.is_active else {"is_active": False})
        for c in info.columns
    ]
    doc["automations"] = [
        _compact(
            {
                "trigger": a.trigger,
                "event_name": a.event_name,
                "stage": a.stage,
                "name": a.name,
                "payload_template": dict(a.payload_template) or None,
            }
        )
        | ({} if a.is_active else {"is_active": False})
        for a in info.automations
    ]
    return doc


def _compact(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry without its unset keys (None, False, empty lists), as a reader would write it."""
    return {k: v for k, v in entry.items() if v is not None and v is not False and v != []}


# --- helpers -----------------------------------------------------------------------------


class _Shape:
    """Collects every shape problem of a document before anything is written."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, problem: str) -> None:
        self.problems.append((path, problem))

    def raise_problems(self) -> None:
        if self.problems:
            path, problem = self.problems[0]
            raise InvalidDocument(path, problem, self.problems)

    def mapping(
        self,
        value: object,
        path: str,
        keys: Sequence[str],
        required: Sequence[str] = (),
    ) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a mapping, not {_kind(value)}")
            return {}
        for key in value:
            if key not in keys:
                self.fail(_at(path, key), f"unknown key; use one of {', '.join(keys)}")
        for key in required:
            if value.get(key) is None:
                self.fail(_at(path, key), "is required")
        return {str(k): v for k, v in value.items() if k in keys}

    def entries(
        self,
        top: Mapping[str, Any],
        key: str,
        keys: Sequence[str],
        required: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        raw = top.get(key)
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.fail(key, f"expected a list, not {_kind(raw)}")
            return []
        return [self.mapping(entry, f"{key}[{i}]", keys, required) for i, entry in enumerate(raw)]


@contextmanager
def reported_in_document(path: str) -> Iterator[None]:
    """Report a definition refused by one API call at the document path that asked for it.

    Refusals that are not about the document (access, the database) pass through as they are.
    """
    try:
        yield
    except InvalidDocument:
        raise
    except (DefinitionError, InvalidArgument) as exc:
        raise InvalidDocument(path, exc.message) from exc


def _at(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
