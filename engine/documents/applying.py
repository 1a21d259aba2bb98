"""Apply class documents: make the database's classes match them, or say what that would do.

A class a document names that does not exist is created; one that exists is compared with the
document entry by entry and brought in line: states (by code), methods (by state and code),
transitions (by state and method), events (by action, handler and place among that action's
events), access rules (by method, subject and permission). The plan lists each addition,
change and removal with the number of items it affects (the items in the state a change is
about; every item of the class for the class-wide ones). Entries a document leaves out are
defaults: an omitted position, sequence or label keeps what the database has.

Every document of a call is applied in one transaction, and each class must then compile and
keep the whole-class rules, or nothing is written. A state that still holds items, or that the
history names, is not removed: the plan is refused (`DefinitionInUse`). A dry run writes the
plan in a transaction it rolls back, so it refuses what applying would refuse, and reports a
state still in use in the plan instead.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flowkernel.actors import Actor
from flowkernel.compile.soundness import class_problems
from flowkernel.definition.classes import Definitions
from flowkernel.definition.events import EventDef
from flowkernel.definition.pipelines.admin import PipelineAdmin
from flowkernel.definition.states import StateInfo, state_users
from flowkernel.documents.class_spec import ClassDocument, check_references, parse_class
from flowkernel.documents.classes import (
    check_compiles,
    definition_transaction,
    reported_at,
    write_class,
)
from flowkernel.documents.pipelines import load_pipeline_with
from flowkernel.errors import (
    DefinitionInUse,
    InvalidArgument,
    InvalidDocument,
    UnknownDefinition,
)
from flowkernel.previews import preview
from flowkernel.store.schema import ItemRow
from flowkernel.validation import check_bool, check_optional_id

if TYPE_CHECKING:
    from flowkernel.kernel import Flowkernel


@dataclass(frozen=True, slots=True)
class Change:
    """One step of a plan: `op` is add, change or remove; `items` the items it affects (None
    for an addition); `refused` why it cannot be applied (None: it can)."""

    kind: str
    key: str
    op: str
    detail: str
    items: int | None
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What applying one class document does (or did): nothing when `changes` is empty."""

    kind: str
    code: str
    created: bool
    changes: tuple[Change, ...]

    @property
    def unchanged(self) -> bool:
        return not self.changes

    @property
    def refusals(self) -> list[Change]:
        return [c for c in self.changes if c.refused is not None]


def apply(
    fk: Flowkernel,
    documents: Sequence[Mapping[str, Any]],
    *,
    dry_run: bool = False,
    account_id: int | None = None,
    actor: Actor | None = None,
) -> list[Plan]:
    """Make the classes and pipelines of `documents` (in `account_id`, else platform-wide)
    match them, in one transaction; with `dry_run`, only plan. Pipelines are written as
    `actor` (default: the system actor of `account_id`). Returns one plan per document."""
    from flowkernel.documents import apply_pipelines as pipes

    check_optional_id("account_id", account_id)
    check_bool("dry_run", dry_run)
    if not isinstance(documents, list | tuple):
        raise InvalidArgument(
            f"documents must be a list of class or pipeline documents, not {preview(documents)}",
            documents=documents,
        )
    acting = actor if actor is not None else Actor.system(account_id)
    specs = [None if pipes.is_pipeline(doc) else parse_class(doc) for doc in documents]
    seen = Counter(s.code for s in specs if s is not None)
    twice = sorted(code for code, n in seen.items() if n > 1)
    if twice:
        raise InvalidDocument("class", f"class {twice[0]!r} is in more than one document")
    plans: list[Plan] = []
    with definition_transaction(fk, commit=not dry_run) as sessions:
        d = Definitions(sessions, lambda: fk.handlers.keys(), class_problems, guarded=False)
        admin = PipelineAdmin(sessions, fk.executor.relocate)
        for doc, spec in zip(documents, specs, strict=True):
            if spec is None:
                plan, writes = pipes.plan_pipeline(sessions, admin, doc, acting, account_id)
                plans.append(plan)
                if _skip(plan, dry_run):
                    continue
                if writes is None:
                    load_pipeline_with(admin, doc, acting, account_id=account_id)
                else:
                    pipes.run_writes(writes)
                continue
            with sessions.begin() as session:
                catalogue = check_references(spec, session, set(fk.handlers), account_id, new=False)
                plan, compare = _plan(session, d, spec, account_id)
            plans.append(plan)
            if _skip(plan, dry_run):
                continue
            for action in [a for a in spec.actions if a.code not in catalogue]:
                with reported_at(action.path):
                    d.add_action(action.code, action.label)
            if compare is None:
                write_class(d, spec, account_id)
            else:
                compare.run()
            check_compiles(fk, sessions, d, spec, account_id)
    return plans


def _skip(plan: Plan, dry_run: bool) -> bool:
    """Whether a plan writes nothing: unchanged, or refused in a dry run (which reports it);
    refused otherwise, `DefinitionInUse`."""
    if plan.unchanged or (dry_run and plan.refusals):
        return True
    for change in plan.refusals:
        raise DefinitionInUse(change.kind, change.key, change.refused or "")
    return False


Write = Callable[[], object]


@dataclass
class _Compare:
    """One class against its document: the queued writes (additions and changes first, then
    removals, last queued first) and the changes found."""

    d: Definitions
    spec: ClassDocument
    account: int | None
    session: Session
    items: dict[str, int]  # items per state code
    everyone: int
    changes: list[Change] = field(default_factory=list)
    early: list[tuple[str, Write]] = field(default_factory=list)
    late: list[tuple[str, Write]] = field(default_factory=list)

    def found(self, change: Change, path: str, *writes: Write, last: bool = False) -> None:
        self.changes.append(change)
        (self.late if last else self.early).extend((path, w) for w in writes)

    def affected(self, state: str | None) -> int:
        """The items a change to what runs in `state` touches (None: every state)."""
        return self.everyone if state is None else self.items.get(state, 0)

    def run(self) -> None:
        for path, write in [*self.early, *reversed(self.late)]:
            with reported_at(path):
                write()


def _plan(
    session: Session, d: Definitions, spec: ClassDocument, account_id: int | None
) -> tuple[Plan, _Compare | None]:
    """Compare the class with the document: the plan, and the writes that carry it out (None
    for a class to create)."""
    try:
        info = d.get_class(spec.code, account_id)
    except UnknownDefinition:
        info = None
    if info is None or info.account_id != account_id:  # a platform class is shadowed, not edited
        return Plan("class", spec.code, True, tuple(_creation(spec))), None
    states = d.list_states(spec.code, account_id)
    by_id = _items_by_state(session, info.id)
    items = {s.code: by_id.get(s.id, 0) for s in states}
    compare = _Compare(d, spec, account_id, session, items, sum(by_id.values()))
    _header(compare, info, Definitions.class_row(session, info.id, account_id).object_type)
    _states(compare, states)
    _methods(compare)
    _transitions(compare)
    _events(compare)
    _rules(compare)
    return Plan("class", spec.code, False, tuple(compare.changes)), compare


def _creation(spec: ClassDocument) -> list[Change]:
    added = [Change("class", spec.code, "add", "created from the document", None)]
    added += [Change("state", s.code, "add", s.type, None) for s in spec.states]
    added += [Change("method", _mkey(m.state, m.code), "add", m.action, None) for m in spec.methods]
    added += [
        Change("transition", _mkey(t.state, t.method), "add", f"to {t.to}", None)
        for t in spec.transitions
    ]
    added += [Change("event", e.action, "add", _event_name(e), None) for e in spec.events]
    added += [Change("access rule", _akey(a), "add", a.effect, None) for a in spec.access]
    return added


def _header(x: _Compare, info: Any, object_type: str | None) -> None:
    spec = x.spec
    parts = [
        (name, old, new)
        for name, old, new in (
            ("label", info.label, spec.label),
            ("parent", info.parent, spec.parent),
            ("abstract", info.is_abstract, spec.abstract),
            ("movement", info.movement, spec.movement),
            ("object_type", object_type, spec.object_type or object_type),
        )
        if old != new
    ]
    if parts:
        x.found(
            Change("class", spec.code, "change", _diff(parts), x.everyone),
            "class",
            partial(
                x.d.edit_class,
                spec.code,
                label=spec.label,
                parent=spec.parent,
                abstract=spec.abstract,
                movement=spec.movement,
                object_type=spec.object_type,
                account_id=x.account,
            ),
        )


def _states(x: _Compare, current: Sequence[StateInfo]) -> None:
    c, acc = x.spec.code, x.account
    existing = {s.code: s for s in current}
    for s in x.spec.states:
        old = existing.get(s.code)
        if old is None:
            write = partial(x.d.add_state, c, s.type, s.code, s.label, position=s.position)
            x.found(
                Change("state", s.code, "add", s.type, None), s.path, partial(write, account_id=acc)
            )
            continue
        parts = [
            (name, before, after)
            for name, before, after in (
                ("type", old.state_type, s.type),
                ("label", old.label, s.label),
                ("position", old.position, old.position if s.position is None else s.position),
            )
            if before != after
        ]
        if parts:
            users = state_users(x.session, old.id) if s.type != old.state_type else None
            x.found(
                Change("state", s.code, "change", _diff(parts), x.items[s.code], users),
                s.path,
                partial(
                    x.d.edit_state,
                    c,
                    s.code,
                    label=s.label,
                    position=s.position,
                    state_type=s.type,
                    account_id=acc,
                ),
            )
    wanted = {s.code for s in x.spec.states}
    for code, old in existing.items():
        if code not in wanted:
            users = state_users(x.session, old.id)
            x.found(
                Change("state", code, "remove", old.state_type, x.items[code], users),
                f"states (no {code})",
                partial(x.d.delete_state, c, code, acc),
                last=True,
            )


def _methods(x: _Compare) -> None:
    c, acc = x.spec.code, x.account
    existing = {(m.state, m.code): m for m in x.d.list_methods(c, acc) if m.class_code == c}
    for m in x.spec.methods:
        old = existing.get((m.state, m.code))
        key = _mkey(m.state, m.code)
        add = partial(
            x.d.add_method,
            c,
            m.state,
            m.action,
            code=m.code,
            label=m.label,
            sequence=m.sequence,
            visible=m.visible,
            call_log=m.call_log,
            account_id=acc,
        )
        if old is None:
            x.found(Change("method", key, "add", m.action, None), m.path, add)
            continue
        if old.action != m.action:  # a method's action is its identity in the seed: replace it
            detail = _diff([("action", old.action, m.action)])
            remove = partial(x.d.delete_method, c, m.state, m.code, acc)
            x.found(
                Change("method", key, "change", detail, x.affected(m.state)), m.path, remove, add
            )
            continue
        parts = [
            (name, before, after)
            for name, before, after in (
                ("label", old.label, old.label if m.label is None else m.label),
                ("sequence", old.sequence, old.sequence if m.sequence is None else m.sequence),
                ("visible", old.visible, m.visible),
                ("call_log", old.call_log, m.call_log),
            )
            if before != after
        ]
        if parts:
            edit = partial(
                x.d.edit_method,
                c,
                m.state,
                m.code,
                label=m.label,
                sequence=m.sequence,
                visible=m.visible,
                call_log=m.call_log,
                account_id=acc,
            )
            x.found(
                Change("method", key, "change", _diff(parts), x.affected(m.state)), m.path, edit
            )
    wanted = {(m.state, m.code) for m in x.spec.methods}
    for (state, code), old in existing.items():
        if (state, code) not in wanted:
            key = _mkey(state, code)
            x.found(
                Change("method", key, "remove", old.action, x.affected(state)),
                f"methods (no {key})",
                partial(x.d.delete_method, c, state, code, acc),
                last=True,
            )


def _transitions(x: _Compare) -> None:
    c, acc = x.spec.code, x.account
    existing = {(t.state, t.method): t for t in x.d.list_transitions(c, acc) if t.class_code == c}
    for t in x.spec.transitions:
        old = existing.get((t.state, t.method))
        key = _mkey(t.state, t.method)
        add = partial(x.d.add_transition, c, t.state, t.method, t.to, account_id=acc)
        if old is None:
            x.found(Change("transition", key, "add", f"to {t.to}", None), t.path, add)
        elif old.new_state != t.to:
            change = Change(
                "transition",
                key,
                "change",
                _diff([("to", old.new_state, t.to)]),
                x.affected(t.state),
            )
            x.found(change, t.path, partial(x.d.delete_transition, c, t.state, t.method, acc), add)
    wanted = {(t.state, t.method) for t in x.spec.transitions}
    for (state, method), old in existing.items():
        if (state, method) not in wanted:
            key = _mkey(state, method)
            x.found(
                Change("transition", key, "remove", f"to {old.new_state}", x.affected(state)),
                f"transitions (no {key})",
                partial(x.d.delete_transition, c, state, method, acc),
            )


def _events(x: _Compare) -> None:
    c, acc = x.spec.code, x.account
    existing: dict[tuple[str, str | None, bool], list[EventDef]] = defaultdict(list)
    for e in x.d.list_events(c, acc):
        if e.class_code == c:
            existing[e.action, e.handler, e.is_parent].append(e)
    wanted: dict[tuple[str, str | None, bool], list[Any]] = defaultdict(list)
    for w in x.spec.events:
        wanted[w.action, w.handler, w.parent].append(w)
    for ident, entries in wanted.items():
        olds = existing.get(ident, [])
        for k, e in enumerate(entries):
            if k >= len(olds):
                add = partial(
                    x.d.add_event,
                    c,
                    e.action,
                    e.handler,
                    parent=e.parent,
                    label=e.label,
                    sequence=e.sequence,
                    enabled=e.enabled,
                    account_id=acc,
                )
                x.found(Change("event", e.action, "add", _event_name(e), None), e.path, add)
                continue
            old = olds[k]
            parts = [
                (name, before, after)
                for name, before, after in (
                    ("label", old.label, e.label or old.label),  # no label: keep the one given
                    ("sequence", old.sequence, old.sequence if e.sequence is None else e.sequence),
                    ("enabled", old.enabled, e.enabled),
                )
                if before != after
            ]
            if parts:
                edit = partial(
                    x.d.edit_event,
                    old.id,
                    sequence=e.sequence,
                    enabled=e.enabled,
                    label=e.label or None,
                    account_id=acc,
                )
                detail = f"{_event_name(e)}: {_diff(parts)}"
                x.found(Change("event", e.action, "change", detail, x.everyone), e.path, edit)
    for ident, olds in existing.items():
        for old in olds[len(wanted.get(ident, [])) :]:
            name = old.handler if old.handler is not None else "parent's events"
            x.found(
                Change("event", old.action, "remove", name, x.everyone),
                f"events (no {old.action})",
                partial(x.d.delete_event, old.id, acc),
                last=True,
            )


def _rules(x: _Compare) -> None:
    c, acc = x.spec.code, x.account
    existing = {
        (r.method, r.subject_kind, r.subject, r.permission): r
        for r in x.d.list_access_rules(c, acc)
        if r.class_code == c
    }
    for a in x.spec.access:
        old = existing.get((a.method, a.subject_kind, a.subject, a.permission))
        add = partial(
            x.d.add_access_rule,
            c,
            subject=a.subject,
            subject_kind=a.subject_kind,
            permission=a.permission,
            effect=a.effect,
            method=a.method,
            account_id=acc,
        )
        if old is None:
            x.found(Change("access rule", _akey(a), "add", a.effect, None), a.path, add)
        elif old.effect != a.effect:
            detail = _diff([("effect", old.effect, a.effect)])
            remove = partial(x.d.delete_access_rule, old.id, acc)
            x.found(
                Change("access rule", _akey(a), "change", detail, x.everyone), a.path, remove, add
            )
    wanted = {(a.method, a.subject_kind, a.subject, a.permission) for a in x.spec.access}
    for ident, old in existing.items():
        if ident not in wanted:
            x.found(
                Change("access rule", _akey(old), "remove", old.effect, x.everyone),
                "access",
                partial(x.d.delete_access_rule, old.id, acc),
                last=True,
            )


def _items_by_state(session: Session, class_id: int) -> dict[int, int]:
    """The class's items (deleted ones too) per state id."""
    rows = session.execute(
        select(ItemRow.flow_stage_id, func.count())
        .where(ItemRow.flow_pipeline_id == class_id)
        .group_by(ItemRow.flow_stage_id)
    )
    return {int(state): int(n) for state, n in rows}


def _diff(parts: Sequence[tuple[str, object, object]]) -> str:
    return "; ".join(f"{name} {old!r} -> {new!r}" for name, old, new in parts)


def _mkey(state: str | None, code: str) -> str:
    return f"{state or '*'}.{code}"


def _akey(a: Any) -> str:
    return f"{a.subject_kind} {a.subject} {a.permission} {a.method or '*'}"


def _event_name(e: Any) -> str:
    return "parent's events" if e.parent else str(e.handler)
