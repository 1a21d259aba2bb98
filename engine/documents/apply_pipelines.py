"""Apply pipeline documents: create a pipeline, or bring an existing one (same code, same
account) in line with its document.

The document is first read the way creating it would read it: it is created under a spare
code in a savepoint, dumped, and the savepoint rolled back, so defaults (stage codes, column
labels, positions) are filled exactly as a new pipeline gets them. The two dumps are then
compared: the header, the movement rules, stages (by code; their name, colour, probability,
SLA, outcome, checklist entries and required columns; their order), columns (by name; one
missing from the document is deactivated, its values kept) and automations (by trigger, stage
and event name). A stage still holding items is not removed: the plan is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.actors import Actor
from flowkernel.definition.pipelines.admin import PipelineAdmin
from flowkernel.definition.pipelines.info import PipelineInfo
from flowkernel.documents.applying import Change, Plan, Write
from flowkernel.documents.pipelines import (
    dump_pipeline,
    load_pipeline_with,
    reported_in_document,
)
from flowkernel.errors import InvalidDocument, UnknownDefinition
from flowkernel.store.schema import ItemRow

SPARE = "fk_apply_draft"
"""The code a document is created under to be read (never committed)."""


def plan_pipeline(
    sessions: sessionmaker[Session],
    admin: PipelineAdmin,
    document: Mapping[str, Any],
    actor: Actor,
    account_id: int | None,
) -> tuple[Plan, list[tuple[str, Write]] | None]:
    """The plan for one pipeline document, and the writes that carry it out (None: create)."""
    code = document.get("code") if isinstance(document, Mapping) else None
    if not isinstance(code, str) or not code:
        raise InvalidDocument("code", "a pipeline document names its pipeline by `code` to apply")
    wanted = _read(sessions, admin, document, actor, account_id)
    try:
        pipeline_id = admin.pipeline_id(code, actor)
        current = admin.get_pipeline(pipeline_id, actor)
    except UnknownDefinition:
        current = None
    if current is None or current.account_id != (
        account_id if account_id is not None else actor.account_id
    ):
        added = [Change("pipeline", code, "add", "created from the document", None)]
        added += [Change("stage", s["code"], "add", s["name"], None) for s in wanted["stages"]]
        added += [
            Change("column", c["name"], "add", c["field_type"], None) for c in wanted["columns"]
        ]
        added += [
            Change("automation", _akey(a), "add", a["event_name"], None)
            for a in wanted["automations"]
        ]
        return Plan("pipeline", code, True, tuple(added)), None
    have = dump_pipeline(current)
    x = _Diff(admin, pipeline_id, actor, _item_counts(sessions, current))
    x.header(have, wanted)
    x.columns(have["columns"], wanted["columns"])
    x.stages(have["stages"], wanted["stages"])
    x.movement(have["movement"], wanted["movement"])
    x.automations(have["automations"], wanted["automations"])
    return Plan("pipeline", code, False, tuple(x.changes)), x.writes


def _read(
    sessions: sessionmaker[Session],
    admin: PipelineAdmin,
    document: Mapping[str, Any],
    actor: Actor,
    account_id: int | None,
) -> dict[str, Any]:
    """The document as the pipeline it creates would dump, read in a rolled-back savepoint."""
    with sessions.begin() as session:
        savepoint = session.connection().begin_nested()
        try:
            draft = {**document, "code": SPARE}
            info = load_pipeline_with(admin, draft, actor, account_id=account_id)
            read = dump_pipeline(info)
        finally:
            savepoint.rollback()
    read["code"] = document["code"]
    return read


def _item_counts(sessions: sessionmaker[Session], pipeline: PipelineInfo) -> dict[str, int]:
    """The pipeline's items (deleted ones too) per stage code."""
    with sessions.begin() as session:
        rows = session.execute(
            select(ItemRow.flow_stage_id, func.count())
            .where(ItemRow.flow_pipeline_id == pipeline.id)
            .group_by(ItemRow.flow_stage_id)
        ).all()
    by_id = dict(rows)
    return {s.code: int(by_id.get(s.id, 0)) for s in pipeline.stages}


class _Diff:
    """The changes between a pipeline's dump and its document's, and the writes for them."""

    def __init__(
        self, admin: PipelineAdmin, pipeline_id: int, actor: Actor, items: dict[str, int]
    ) -> None:
        self.admin, self.id, self.actor, self.items = admin, pipeline_id, actor, items
        self.everyone = sum(items.values())
        self.changes: list[Change] = []
        self.writes: list[tuple[str, Write]] = []

    def found(self, change: Change, path: str, *writes: Write) -> None:
        self.changes.append(change)
        self.writes.extend((path, w) for w in writes)

    def header(self, have: dict[str, Any], want: dict[str, Any]) -> None:
        keys = ("name", "description", "object_type", "is_template")
        parts = [(k, have.get(k), want.get(k)) for k in keys if have.get(k) != want.get(k)]
        if parts:
            edit = partial(
                self.admin.edit_pipeline,
                self.id,
                self.actor,
                name=want["name"],
                description=want.get("description"),
                object_type=want.get("object_type"),
                is_template=bool(want.get("is_template")),
            )
            self.found(
                Change("pipeline", want["code"], "change", _diff(parts), self.everyone), "", edit
            )

    def movement(self, have: dict[str, Any], want: dict[str, Any]) -> None:
        if have != want:
            parts = [(k, have.get(k), want.get(k)) for k in want if have.get(k) != want.get(k)]
            moves = [tuple(pair) for pair in want.get("allowed_moves", [])]
            write = partial(
                self.admin.set_movement,
                self.id,
                self.actor,
                allow_backward=want.get("allow_backward"),
                allow_skip_forward=want.get("allow_skip_forward"),
                allowed_moves=moves or None,
            )
            self.found(
                Change("movement", "", "change", _diff(parts), self.everyone), "movement", write
            )

    def stages(self, have: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
        old = {s["code"]: s for s in have}
        for index, s in enumerate(want):
            path = f"stages[{index}]"
            before = old.get(s["code"])
            if before is None:
                add = partial(
                    self.admin.add_stage,
                    self.id,
                    s["name"],
                    self.actor,
                    code=s["code"],
                    color=s.get("color"),
                    probability=s.get("probability"),
                    sla_days=s.get("sla_days"),
                    is_won=bool(s.get("is_won")),
                    is_lost=bool(s.get("is_lost")),
                    checklist=s.get("checklist", []),
                )
                self.found(Change("stage", s["code"], "add", s["name"], None), path, add)
                for column in s.get("requires", []):
                    self.require(s["code"], column, path, add=True)
                continue
            keys = ("name", "color", "probability", "sla_days", "is_won", "is_lost", "checklist")
            parts = [(k, before.get(k), s.get(k)) for k in keys if before.get(k) != s.get(k)]
            if parts:
                edit = partial(
                    self.admin.edit_stage,
                    self.id,
                    s["code"],
                    self.actor,
                    name=s["name"],
                    color=s.get("color"),
                    probability=s.get("probability"),
                    sla_days=s.get("sla_days"),
                    checklist=s.get("checklist"),
                    is_won=bool(s.get("is_won")),
                    is_lost=bool(s.get("is_lost")),
                )
                items = self.items.get(s["code"], 0)
                self.found(Change("stage", s["code"], "change", _diff(parts), items), path, edit)
            required, wanted = set(before.get("requires", [])), set(s.get("requires", []))
            for column in sorted(wanted - required):
                self.require(s["code"], column, path, add=True)
            for column in sorted(required - wanted):
                self.require(s["code"], column, path, add=False)
        codes = [s["code"] for s in want]
        for code, before in old.items():
            if code not in codes:
                held = self.items.get(code, 0)
                refused = f"{held} item(s)" if held else None
                remove = partial(self.admin.remove_stage, self.id, code, self.actor)
                change = Change("stage", code, "remove", before["name"], held, refused)
                self.found(change, f"stages (no {code})", remove)
        kept = [s["code"] for s in have if s["code"] in codes]
        after = kept + [c for c in codes if c not in old]  # new stages are added last
        if after != codes:
            order = partial(self.admin.reorder_stages, self.id, codes, self.actor)
            detail = f"order {after!r} -> {codes!r}"
            self.found(Change("stage", "*", "change", detail, self.everyone), "stages", order)

    def require(self, stage: str, column: str, path: str, *, add: bool) -> None:
        method = self.admin.require_column if add else self.admin.unrequire_column
        write = partial(method, self.id, stage, column, self.actor)
        op = "add" if add else "remove"
        change = Change("requirement", f"{stage}.{column}", op, "", self.items.get(stage, 0))
        self.found(change, f"{path}.requires", write)

    def columns(self, have: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
        old = {c["name"]: c for c in have}
        for index, c in enumerate(want):
            path = f"columns[{index}]"
            before = old.get(c["name"])
            if before is None:
                add = partial(
                    self.admin.add_column,
                    self.id,
                    c["name"],
                    self.actor,
                    label=c.get("label"),
                    field_type=c["field_type"],
                    options=c.get("options"),
                    is_required=bool(c.get("is_required")),
                )
                self.found(Change("column", c["name"], "add", c["field_type"], None), path, add)
                if c.get("is_active", True) is False:
                    self.writes.append((path, partial(
                        self.admin.edit_column, self.id, c["name"], self.actor, is_active=False
                    )))  # fmt: skip
                continue
            if before["field_type"] != c["field_type"]:
                raise InvalidDocument(
                    f"{path}.field_type",
                    f"column {c['name']!r} is a {before['field_type']} column; a column's type "
                    "does not change (add a column of another name)",
                )
            keys = ("label", "options", "is_required", "is_active")
            parts = [(k, before.get(k), c.get(k)) for k in keys if before.get(k) != c.get(k)]
            if parts:
                edit = partial(
                    self.admin.edit_column,
                    self.id,
                    c["name"],
                    self.actor,
                    label=c.get("label"),
                    options=c.get("options"),
                    is_required=bool(c.get("is_required")),
                    is_active=c.get("is_active", True) is not False,
                )
                self.found(
                    Change("column", c["name"], "change", _diff(parts), self.everyone), path, edit
                )
        names = {c["name"] for c in want}
        for name, before in old.items():
            if name not in names and before.get("is_active", True) is not False:
                off = partial(self.admin.edit_column, self.id, name, self.actor, is_active=False)
                change = Change("column", name, "remove", "deactivated; values kept", self.everyone)
                self.found(change, f"columns (no {name})", off)

    def automations(self, have: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
        current = {(_akey(a)): a for a in have}
        ids = {_akey(a): a.id for a in self.admin.list_automations(self.id, self.actor)}
        for index, a in enumerate(want):
            path = f"automations[{index}]"
            before = current.get(_akey(a))
            if before is None:
                add = partial(
                    self.admin.add_automation,
                    self.id,
                    a["trigger"],
                    a["event_name"],
                    self.actor,
                    stage=a.get("stage"),
                    name=a.get("name"),
                    payload_template=a.get("payload_template"),
                    is_active=a.get("is_active", True) is not False,
                )
                self.found(Change("automation", _akey(a), "add", a["event_name"], None), path, add)
                continue
            keys = ("name", "payload_template", "is_active")
            parts = [(k, before.get(k), a.get(k)) for k in keys if before.get(k) != a.get(k)]
            if parts:
                edit = partial(
                    self.admin.edit_automation,
                    ids[_akey(a)],
                    self.actor,
                    name=a.get("name"),
                    payload_template=a.get("payload_template"),
                    is_active=a.get("is_active", True) is not False,
                    pipeline_id=self.id,
                )
                self.found(
                    Change("automation", _akey(a), "change", _diff(parts), self.everyone),
                    path,
                    edit,
                )
        keys_wanted = {_akey(a) for a in want}
        for key in current:
            if key not in keys_wanted:
                delete = partial(
                    self.admin.delete_automation, ids[key], self.actor, pipeline_id=self.id
                )
                self.found(
                    Change("automation", key, "remove", current[key]["event_name"], self.everyone),
                    "automations",
                    delete,
                )


def run_writes(writes: list[tuple[str, Write]]) -> None:
    """Carry out a plan's writes, a refusal reported at the document path that asked."""
    for path, write in writes:
        with reported_in_document(path):
            write()


def is_pipeline(document: object) -> bool:
    """Whether a document describes a pipeline (stages) rather than a class (states)."""
    return isinstance(document, Mapping) and "class" not in document and "name" in document


def _akey(a: Any) -> str:
    if isinstance(a, Mapping):
        return f"{a['trigger']} {a.get('stage') or '*'} {a['event_name']}"
    return f"{a.trigger} {a.stage or '*'} {a.event_name}"


def _diff(parts: list[tuple[str, object, object]]) -> str:
    return "; ".join(f"{name} {old!r} -> {new!r}" for name, old, new in parts)
