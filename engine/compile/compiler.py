"""Compiling a class definition (rows) into an immutable `CompiledClass` with one machine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session
from transitions import Machine
from transitions.core import MachineError

from flowkernel.access import AccessRule
from flowkernel.compile.compiled import (
    CompiledAutomation,
    CompiledClass,
    CompiledColumn,
    CompiledMethod,
    CompiledState,
    RequiredColumn,
    guard_condition,
)
from flowkernel.compile.lifecycle import first_of_types, global_target, offered
from flowkernel.definition.codes import state_code
from flowkernel.definition.pipelines.specs import ChecklistItem
from flowkernel.errors import InvalidDefinition, UnknownDefinition
from flowkernel.kinds import MOVE_PREFIX, MOVEMENTS, SLA_BREACH, CallLog, Movement
from flowkernel.previews import preview
from flowkernel.store.schema import (
    AccessRuleRow,
    ActionRow,
    AutomationRow,
    ColumnRow,
    EventRow,
    MethodRow,
    PipelineRow,
    StageMoveRow,
    StageRequiredColumnRow,
    StageRow,
    TransitionRow,
)

CHANGE_OBJECT_STATE: Final = "change_object_state"
STANDARD_CHAINS: Final[Mapping[str, tuple[str, ...]]] = {"drop": ("drop_object",)}
"""Chains of standard actions other than the default `change_object_state`."""
PIPELINE_CHAINS: Final[Mapping[str, tuple[str, ...]]] = {
    "delete": ("soft_delete_object",),
    "restore": ("restore_object",),
    "drop": ("drop_object",),
}
"""On a pipeline, delete and restore mark the item instead of moving it."""


def _state_type(row: StageRow) -> str:
    if row.state_type:
        return row.state_type
    return "disabled" if row.is_won or row.is_lost else "enabled"


def _checklist(raw: Any, stage: str) -> tuple[ChecklistItem, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidDefinition(
            f"checklist of stage {preview(stage)} must be a JSON array", stage=stage
        )
    items = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise InvalidDefinition(
                f"checklist entry {preview(entry)} of stage {preview(stage)} needs a string 'key'",
                stage=stage,
            )
        items.append(
            ChecklistItem(
                key=entry["key"],
                label=str(entry.get("label", entry["key"])),
                required=bool(entry.get("required", False)),
            )
        )
    return tuple(items)


class _Definition:
    """The rows of one class, loaded in a few queries."""

    def __init__(self, conn: Session, row: PipelineRow) -> None:
        self.row = row
        self.stages = list(
            conn.execute(
                select(StageRow)
                .where(StageRow.flow_pipeline_id == row.id, StageRow.deleted_at.is_(None))
                .order_by(StageRow.position, StageRow.id)
            ).scalars()
        )
        self.methods = list(
            conn.execute(
                select(MethodRow, ActionRow.code)
                .join(ActionRow, ActionRow.id == MethodRow.action_id)
                .where(MethodRow.class_id == row.id)
                .order_by(MethodRow.sequence, MethodRow.id)
            ).all()
        )
        # plain rows, not ORM objects: a big class has a thousand transitions
        self.transitions = conn.execute(
            select(
                TransitionRow.state_id, TransitionRow.method_id, TransitionRow.new_state_id
            ).where(TransitionRow.class_id == row.id)
        ).all()
        self.events = list(
            conn.execute(
                select(EventRow, ActionRow.code)
                .join(ActionRow, ActionRow.id == EventRow.action_id)
                .where(EventRow.class_id == row.id, EventRow.enabled.is_(True))
                .order_by(EventRow.sequence, EventRow.id)
            ).all()
        )
        self.access = list(
            conn.execute(select(AccessRuleRow).where(AccessRuleRow.class_id == row.id)).scalars()
        )


def _load(conn: Session, class_id: int) -> list[_Definition]:
    """The class and its ancestors, deepest first."""
    lineage: list[_Definition] = []
    seen: set[int] = set()
    next_id: int | None = class_id
    while next_id is not None:
        if next_id in seen:
            raise InvalidDefinition(
                f"class {class_id} has a cycle in its parents", class_id=class_id
            )
        seen.add(next_id)
        row = conn.execute(
            select(PipelineRow).where(PipelineRow.id == next_id)
        ).scalar_one_or_none()
        if row is None:
            raise UnknownDefinition("class", next_id)
        lineage.append(_Definition(conn, row))
        next_id = row.parent_id
    return lineage


SELF_MOVING: Final = ("enable", "disable", "delete", "restore")
"""Standard actions that change state on their own, whatever handlers their chain holds."""


def _chain(
    lineage: Sequence[_Definition], index: int, action: str, standard: set[str], pipeline: bool
) -> tuple[str, ...]:
    """The handlers `action` runs, in order. A chain of its own replaces the default one,
    but the state change of a self-moving standard action stays in it (at its end, unless
    the chain names it already)."""
    chain = _handlers(lineage, index, action, standard, pipeline)
    if action in SELF_MOVING and action in standard:
        change = (PIPELINE_CHAINS.get(action) if pipeline else None) or (CHANGE_OBJECT_STATE,)
        if not set(change) & set(chain):
            chain = (*chain, *change)
    return chain


def _handlers(
    lineage: Sequence[_Definition], index: int, action: str, standard: set[str], pipeline: bool
) -> tuple[str, ...]:
    definition = lineage[index]
    rows = [event for event, code in definition.events if code == action]
    parent = index + 1 if index + 1 < len(lineage) else None
    if not rows:
        if parent is not None:
            return _handlers(lineage, parent, action, standard, pipeline)
        if pipeline and action in PIPELINE_CHAINS:
            return PIPELINE_CHAINS[action]
        if action in standard:
            return STANDARD_CHAINS.get(action, (CHANGE_OBJECT_STATE,))
        return ()
    chain: list[str] = []
    for event in rows:
        if event.is_parent:
            if parent is not None:
                chain.extend(_handlers(lineage, parent, action, standard, pipeline))
        elif event.handler:
            chain.append(event.handler)
    return tuple(chain)


def _states(conn: Session, stages: Sequence[StageRow]) -> dict[str, CompiledState]:
    required: dict[int, list[RequiredColumn]] = {}
    if stages:
        rows = conn.execute(
            select(
                StageRequiredColumnRow.flow_stage_id, ColumnRow.id, ColumnRow.name, ColumnRow.label
            )
            .join(ColumnRow, ColumnRow.id == StageRequiredColumnRow.flow_column_id)
            .where(StageRequiredColumnRow.flow_stage_id.in_([s.id for s in stages]))
            .order_by(ColumnRow.position, ColumnRow.id)
        )
        for stage_id, column_id, name, label in rows:
            required.setdefault(stage_id, []).append(RequiredColumn(column_id, name, label))
        # Columns flagged is_required are an entry requirement of every stage but the first
        # (where items are placed) and the lost one (an item may be lost at any time).
        everywhere = [
            RequiredColumn(column_id, name, label)
            for column_id, name, label in conn.execute(
                select(ColumnRow.id, ColumnRow.name, ColumnRow.label)
                .where(
                    ColumnRow.flow_pipeline_id == stages[0].flow_pipeline_id,
                    ColumnRow.is_required.is_(True),
                    ColumnRow.is_active.is_(True),
                    ColumnRow.deleted_at.is_(None),
                )
                .order_by(ColumnRow.position, ColumnRow.id)
            ).all()
        ]
        for row in stages[1:]:
            if not row.is_lost:
                own = required.setdefault(row.id, [])
                own.extend(c for c in everywhere if c not in own)
    states: dict[str, CompiledState] = {}
    for row in stages:
        code = state_code(row)
        states[code] = CompiledState(
            id=row.id,
            code=code,
            label=row.name,
            state_type=_state_type(row),
            position=row.position,
            is_won=row.is_won,
            is_lost=row.is_lost,
            sla_days=row.sla_days,
            probability=row.probability,
            color=row.color,
            checklist=_checklist(row.checklist, code),
            required=tuple(required.get(row.id, ())),
        )
    return states


def _explicit_methods(
    lineage: Sequence[_Definition],
    states: Mapping[str, CompiledState],
    standard: set[str],
) -> dict[str, dict[str, CompiledMethod]]:
    resolved: dict[str, dict[str, CompiledMethod]] = {code: {} for code in states}
    seen: dict[str, set[str]] = {code: set() for code in states}
    first = first_of_types(states)
    # The class's own methods, then those of its non-abstract ancestors, deepest first.
    for definition in (lineage[0], *(d for d in lineage[1:] if not d.row.is_abstract)):
        stage_codes = {s.id: state_code(s) for s in definition.stages}
        targets: dict[tuple[str | None, int], int] = {}
        for t in definition.transitions:
            source = stage_codes.get(t.state_id) if t.state_id is not None else None
            targets[(source, t.method_id)] = t.new_state_id
        # A state's own method wins over a global one of the same code (Apostol's lookup).
        own_first = sorted(definition.methods, key=lambda row: row[0].state_id is None)
        for state in states:
            for method, action in own_first:
                bound = stage_codes.get(method.state_id) if method.state_id is not None else None
                if method.state_id is not None and bound != state:
                    continue
                if method.code in seen[state] or action == "create":
                    continue  # create places items; it is not run on one
                seen[state].add(method.code)
                own = targets.get((state, method.id))
                written = _target_code(
                    lineage, stage_codes, states, method.code, targets.get((None, method.id))
                )
                target = _target_code(lineage, stage_codes, states, method.code, own) or written
                chain = _chain(lineage, 0, action, standard, pipeline=False)
                if method.state_id is None and own is None:
                    target = global_target(states[state], action, written, first, states)
                    if not offered(states[state], action, target, chain, action in standard):
                        continue  # a global method that would do nothing here is not offered
                resolved[state][method.code] = CompiledMethod(
                    code=method.code,
                    action=action,
                    label=method.label,
                    visible=method.visible,
                    sequence=method.sequence,
                    target=target,
                    chain=chain,
                    is_global=method.state_id is None,
                    log=CallLog(method.call_log),
                )
    return resolved


def _target_code(
    lineage: Sequence[_Definition],
    stage_codes: Mapping[int, str],
    states: Mapping[str, CompiledState],
    method: str,
    target_id: int | None,
) -> str | None:
    """The code of a transition's target, which must be a state of the class."""
    if target_id is None:
        return None
    target = stage_codes.get(target_id)
    if target not in states:
        raise InvalidDefinition(
            f"method {preview(method)} leads to a state that class "
            f"{preview(lineage[0].row.code)} does not have",
            method=method,
        )
    return target


def _pipeline_methods(
    lineage: Sequence[_Definition],
    states: Mapping[str, CompiledState],
    moves: Mapping[int, set[int]],
    standard: set[str],
) -> dict[str, dict[str, CompiledMethod]]:
    row = lineage[0].row
    ordered = sorted(states.values(), key=lambda s: (s.position, s.id))
    rank = {s.code: i for i, s in enumerate(ordered)}
    move_chain = _chain(lineage, 0, "move", standard, pipeline=True)

    def lifecycle(code: str, label: str, visible: bool, sequence: int) -> CompiledMethod:
        return CompiledMethod(
            code=code,
            action=code,
            label=label,
            visible=visible,
            sequence=sequence,
            target=None,
            chain=_chain(lineage, 0, code, standard, pipeline=True),
            is_global=True,
        )

    resolved: dict[str, dict[str, CompiledMethod]] = {}
    for state in ordered:
        methods: dict[str, CompiledMethod] = {}
        for index, target in enumerate(ordered):
            if target.code == state.code:
                continue
            restriction = None
            if state.id in moves and target.id not in moves[state.id]:
                restriction = "allowed_moves"
            elif not row.allow_backward and rank[target.code] < rank[state.code]:
                restriction = "no_moving_back"
            elif (
                not row.allow_skip_forward
                and rank[target.code] > rank[state.code] + 1
                and not (target.is_won or target.is_lost)
            ):
                restriction = "no_skipping_forward"
            methods[MOVE_PREFIX + target.code] = CompiledMethod(
                code=MOVE_PREFIX + target.code,
                action="move",
                label=f"Move to {target.label}",
                visible=True,
                sequence=index,
                target=target.code,
                chain=move_chain,
                is_global=True,
                restriction=restriction,
            )
        base = len(ordered)
        methods["delete"] = lifecycle("delete", "Delete", True, base + 1)
        methods["restore"] = lifecycle("restore", "Restore", True, base + 2)
        methods["drop"] = lifecycle("drop", "Drop", True, base + 3)
        methods[SLA_BREACH] = lifecycle(SLA_BREACH, "SLA breached", False, base + 4)
        resolved[state.code] = methods
    return resolved


def _build_machine(
    code: str,
    states: Mapping[str, CompiledState],
    methods: Mapping[str, Mapping[str, CompiledMethod]],
) -> Machine:
    try:
        return _machine(states, methods)
    except (ValueError, MachineError) as exc:
        raise InvalidDefinition(
            f"class {preview(code)} does not build a state machine: {exc}; rename the offending "
            "state or method",
            class_code=code,
        ) from exc


def _machine(
    states: Mapping[str, CompiledState], methods: Mapping[str, Mapping[str, CompiledMethod]]
) -> Machine:
    machine = Machine(
        model=None,
        states=list(states) or ["__none__"],
        initial=None,
        auto_transitions=False,
        send_event=True,
    )
    for state, available in methods.items():
        for method in available.values():
            machine.add_transition(
                method.code,
                state,
                method.target,
                conditions=[guard_condition] if method.target is not None else [],
            )
    return machine


def compile_class(conn: Session, class_id: int) -> CompiledClass:
    """Load class `class_id` with its ancestors and compile it."""
    lineage = _load(conn, class_id)
    row = lineage[0].row
    if row.movement not in MOVEMENTS:
        raise InvalidDefinition(
            f"class {preview(row.code or row.id)} has movement {preview(row.movement)}; use one "
            f"of {MOVEMENTS}",
            movement=row.movement,
        )
    standard = set(conn.execute(select(ActionRow.code).where(ActionRow.is_standard)).scalars())
    owner = next((d for d in lineage if d.stages), lineage[0])
    states = _states(conn, owner.stages)
    pipeline = row.movement == Movement.FREE
    idle: frozenset[str] = frozenset()
    if pipeline:
        won = [s.code for s in states.values() if s.is_won]
        lost = [s.code for s in states.values() if s.is_lost]
        if len(won) > 1 or len(lost) > 1:
            raise InvalidDefinition(
                f"pipeline {preview(row.name)} has more than one won or lost stage "
                f"(won: {won}, lost: {lost}); keep at most one of each",
                won=won,
                lost=lost,
            )
        moves: dict[int, set[int]] = {}
        for move in conn.execute(
            select(StageMoveRow).where(StageMoveRow.flow_pipeline_id == row.id)
        ).scalars():
            moves.setdefault(move.from_stage_id, set()).add(move.to_stage_id)
        methods = _pipeline_methods(lineage, states, moves, standard)
        first = min(states.values(), key=lambda s: (s.position, s.id), default=None)
        create: CompiledMethod | None = CompiledMethod(
            code="create",
            action="create",
            label="Create",
            visible=True,
            sequence=0,
            target=first.code if first else None,
            chain=_chain(lineage, 0, "create", standard, pipeline=True),
            is_global=True,
        )
    else:
        methods = _explicit_methods(lineage, states, standard)
        defined = {
            method.code
            for definition in (lineage[0], *(d for d in lineage[1:] if not d.row.is_abstract))
            for method, action in definition.methods
            if action != "create"
        }
        idle = frozenset(defined.difference(*(m.keys() for m in methods.values())))
        create = _create_method(lineage, states, standard)
    access = tuple(
        AccessRule(
            method=rule.method_code,
            subject_kind=rule.subject_kind,
            subject=rule.subject,
            permission=rule.permission,
            effect=rule.effect,
        )
        for definition in lineage
        for rule in definition.access
    )
    automations = tuple(
        CompiledAutomation(
            id=a.id,
            trigger=a.trigger,
            stage_id=a.flow_stage_id,
            event_name=a.event_name,
            payload_template=dict(a.payload_template or {}),
        )
        for a in conn.execute(
            select(AutomationRow)
            .where(
                AutomationRow.flow_pipeline_id == row.id,
                AutomationRow.is_active.is_(True),
                AutomationRow.deleted_at.is_(None),
            )
            .order_by(AutomationRow.id)
        ).scalars()
    )
    columns = {
        c.name: CompiledColumn(
            id=c.id,
            name=c.name,
            label=c.label,
            field_type=c.field_type,
            options=tuple(str(o) for o in (c.options or ())),
            is_required=c.is_required,
            is_active=c.is_active,
            position=c.position,
        )
        for c in conn.execute(
            select(ColumnRow)
            .where(ColumnRow.flow_pipeline_id == row.id, ColumnRow.deleted_at.is_(None))
            .order_by(ColumnRow.position, ColumnRow.id)
        ).scalars()
    }
    return CompiledClass(
        id=row.id,
        code=row.code or f"pipeline_{row.id}",
        name=row.name,
        version=row.version,
        account_id=row.iam_account_id,
        object_type=row.object_type,
        is_abstract=row.is_abstract,
        is_template=row.is_template,
        movement=row.movement,
        lineage=tuple(d.row.id for d in lineage),
        states=states,
        states_by_id={s.id: s for s in states.values()},
        methods={
            s: dict(sorted(m.items(), key=lambda kv: (kv[1].sequence, kv[0])))
            for s, m in methods.items()
        },
        create=create,
        access=access,
        automations=automations,
        columns=columns,
        machine=_build_machine(row.code or f"pipeline_{row.id}", states, methods),
        idle=idle,
    )


def _create_method(
    lineage: Sequence[_Definition], states: Mapping[str, CompiledState], standard: set[str]
) -> CompiledMethod | None:
    """The global create method and where it places items (its transition or the created state)."""
    for definition in lineage:
        stage_codes = {s.id: state_code(s) for s in definition.stages}
        for method, action in definition.methods:
            if method.state_id is not None or action != "create":
                continue
            target = next(
                (
                    stage_codes.get(t.new_state_id)
                    for t in definition.transitions
                    if t.method_id == method.id and t.state_id is None
                ),
                None,
            )
            if target is None:
                target = next(
                    (
                        s.code
                        for s in sorted(states.values(), key=lambda s: (s.position, s.id))
                        if s.state_type == "created"
                    ),
                    None,
                )
            return CompiledMethod(
                code=method.code,
                action=action,
                label=method.label,
                visible=method.visible,
                sequence=method.sequence,
                target=target,
                chain=_chain(lineage, 0, action, standard, pipeline=False),
                is_global=True,
            )
    first_created = next(
        (
            s.code
            for s in sorted(states.values(), key=lambda s: (s.position, s.id))
            if s.state_type == "created"
        ),
        None,
    )
    if first_created is None:
        return None
    return CompiledMethod(
        code="create",
        action="create",
        label="Create",
        visible=True,
        sequence=0,
        target=first_created,
        chain=_chain(lineage, 0, "create", standard, pipeline=False),
        is_global=True,
    )
