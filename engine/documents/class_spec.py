"""A class document read into typed entries: every key, type and reference checked, each
problem reported with its path (`states[2].type`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from flowkernel.definition.classes import Definitions
from flowkernel.errors import DuplicateCode, InvalidDocument, UnknownDefinition
from flowkernel.kinds import MOVEMENTS, STATE_TYPES, CallLog, Movement
from flowkernel.previews import preview
from flowkernel.store.schema import ActionRow

CLASS_KEYS: Final = (
    "class", "label", "parent", "abstract", "movement", "object_type",
    "actions", "states", "methods", "transitions", "events", "access",
)  # fmt: skip
ACTION_KEYS: Final = ("code", "label")
STATE_KEYS: Final = ("code", "type", "label", "position")
METHOD_KEYS: Final = ("code", "action", "state", "label", "sequence", "visible", "call_log")
CALL_LOGS: Final = tuple(c.value for c in CallLog)
TRANSITION_KEYS: Final = ("state", "method", "to")
EVENT_KEYS: Final = ("action", "handler", "parent", "label", "sequence", "enabled")
ACCESS_KEYS: Final = ("method", "subject_kind", "subject", "permission", "effect")

SUBJECT_KINDS: Final = ("user", "group")
PERMISSIONS: Final = ("execute", "visible")
EFFECTS: Final = ("allow", "deny")

_CODE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass(frozen=True, slots=True)
class _Action:
    path: str
    code: str
    label: str | None


@dataclass(frozen=True, slots=True)
class _State:
    path: str
    code: str
    type: str
    label: str
    position: int | None


@dataclass(frozen=True, slots=True)
class _Method:
    path: str
    code: str
    action: str
    state: str | None
    label: str | None
    sequence: int | None
    visible: bool
    call_log: str


@dataclass(frozen=True, slots=True)
class _Transition:
    path: str
    state: str | None
    method: str
    to: str


@dataclass(frozen=True, slots=True)
class _Event:
    path: str
    action: str
    handler: str | None
    parent: bool
    label: str
    sequence: int | None
    enabled: bool


@dataclass(frozen=True, slots=True)
class _Access:
    path: str
    method: str | None
    subject_kind: str
    subject: str
    permission: str
    effect: str


@dataclass(frozen=True, slots=True)
class ClassDocument:
    code: str
    label: str
    parent: str | None
    abstract: bool
    movement: str
    object_type: str | None
    actions: tuple[_Action, ...]
    states: tuple[_State, ...]
    methods: tuple[_Method, ...]
    transitions: tuple[_Transition, ...]
    events: tuple[_Event, ...]
    access: tuple[_Access, ...]


class _Reader:
    """Reads typed values out of a document, collecting every problem with its path."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, problem: str) -> None:
        self.problems.append((path, problem))

    def raise_problems(self) -> None:
        if self.problems:
            path, problem = self.problems[0]
            raise InvalidDocument(path, problem, self.problems)

    def entry(
        self, value: object, path: str, keys: Sequence[str], required: Sequence[str]
    ) -> Mapping[str, object]:
        """A mapping with only `keys` and at least `required`; {} after a problem."""
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a mapping with keys {', '.join(keys)}; got {kind_of(value)}")
            return {}
        for key in value:
            if key not in keys:
                self.fail(_at(path, key), f"unknown key; use one of {', '.join(keys)}")
        for key in required:
            if key not in value:
                self.fail(_at(path, key), "required key is missing")
        return value

    def rows(self, doc: Mapping[str, object], key: str) -> list[tuple[str, object]]:
        """The entries of the list `key` with their paths (an absent or null list is empty)."""
        value = doc.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"expected a list; got {kind_of(value)}")
            return []
        return [(f"{key}[{i}]", item) for i, item in enumerate(value)]

    def _value(
        self, entry: Mapping[str, object], key: str, path: str, kind: type, name: str
    ) -> object:
        value = entry.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(_at(path, key), f"expected {name}; got {kind_of(value)}")
            return None
        return value

    def text(self, entry: Mapping[str, object], key: str, path: str) -> str | None:
        value = self._value(entry, key, path, str, "a string")
        return value if isinstance(value, str) else None

    def code(
        self, entry: Mapping[str, object], key: str, path: str, *, required: bool = True
    ) -> str | None:
        value = self.text(entry, key, path)
        if value is None:
            if required and key in entry:
                self.fail(_at(path, key), "expected a code; got null")
            return None
        if not _CODE.fullmatch(value):
            self.fail(
                _at(path, key),
                f"{preview(value)} is not a code: use 1-128 ASCII letters, digits or '_', "
                "not starting with a digit",
            )
        return value

    def integer(self, entry: Mapping[str, object], key: str, path: str) -> int | None:
        value = self._value(entry, key, path, int, "an integer")
        return value if isinstance(value, int) else None

    def boolean(self, entry: Mapping[str, object], key: str, path: str, default: bool) -> bool:
        value = self._value(entry, key, path, bool, "true or false")
        return value if isinstance(value, bool) else default

    def choice(
        self,
        entry: Mapping[str, object],
        key: str,
        path: str,
        allowed: Sequence[str],
        default: str,
    ) -> str:
        value = self.text(entry, key, path)
        if value is None:
            return default
        if value not in allowed:
            self.fail(_at(path, key), f"{preview(value)} is not one of {', '.join(allowed)}")
        return value


def parse_class(document: Mapping[str, Any]) -> ClassDocument:
    """The document as typed entries; `InvalidDocument` lists every problem of keys and types
    and of references inside it."""
    """Check keys and types of a whole document; every problem is reported together."""
    r = _Reader()
    doc = r.entry(document, "", CLASS_KEYS, ("class",))
    code = r.code(doc, "class", "") or ""
    label = r.text(doc, "label", "")
    actions = []
    for path, raw in r.rows(doc, "actions"):
        e = r.entry(raw, path, ACTION_KEYS, ("code",))
        actions.append(_Action(path, r.code(e, "code", path) or "", r.text(e, "label", path)))
    states = []
    for path, raw in r.rows(doc, "states"):
        e = r.entry(raw, path, STATE_KEYS, ("code", "type"))
        state_code = r.code(e, "code", path) or ""
        states.append(
            _State(
                path,
                state_code,
                r.choice(e, "type", path, STATE_TYPES, ""),
                r.text(e, "label", path) or _label(state_code),
                r.integer(e, "position", path),
            )
        )
    methods = []
    for path, raw in r.rows(doc, "methods"):
        e = r.entry(raw, path, METHOD_KEYS, ("action",))
        action = r.code(e, "action", path) or ""
        methods.append(
            _Method(
                path,
                r.code(e, "code", path, required=False) or action,
                action,
                r.code(e, "state", path, required=False),
                r.text(e, "label", path),
                r.integer(e, "sequence", path),
                r.boolean(e, "visible", path, True),
                r.choice(e, "call_log", path, CALL_LOGS, CallLog.ALL.value),
            )
        )
    transitions = []
    for path, raw in r.rows(doc, "transitions"):
        e = r.entry(raw, path, TRANSITION_KEYS, ("method", "to"))
        transitions.append(
            _Transition(
                path,
                r.code(e, "state", path, required=False),
                r.code(e, "method", path) or "",
                r.code(e, "to", path) or "",
            )
        )
    events = []
    for path, raw in r.rows(doc, "events"):
        e = r.entry(raw, path, EVENT_KEYS, ("action",))
        handler = r.text(e, "handler", path)
        parent = r.boolean(e, "parent", path, False)
        if parent == (handler is not None) and e:
            r.fail(path, "an event names a `handler` or has `parent: true`, exactly one of them")
        events.append(
            _Event(
                path,
                r.code(e, "action", path) or "",
                handler,
                parent,
                r.text(e, "label", path) or "",
                r.integer(e, "sequence", path),
                r.boolean(e, "enabled", path, True),
            )
        )
    access = []
    for path, raw in r.rows(doc, "access"):
        e = r.entry(raw, path, ACCESS_KEYS, ("subject",))
        subject = e.get("subject")
        if isinstance(subject, int) and not isinstance(subject, bool):
            subject = str(subject)  # a user id written as a number
        elif not isinstance(subject, str) or not subject:
            if "subject" in e:
                r.fail(
                    _at(path, "subject"),
                    f"expected a user id or group name; got {preview(subject)}",
                )
            subject = ""
        access.append(
            _Access(
                path,
                r.code(e, "method", path, required=False),
                r.choice(e, "subject_kind", path, SUBJECT_KINDS, "user"),
                subject,
                r.choice(e, "permission", path, PERMISSIONS, "execute"),
                r.choice(e, "effect", path, EFFECTS, "allow"),
            )
        )
    spec = ClassDocument(
        code=code,
        label=label or _label(code),
        parent=r.code(doc, "parent", "", required=False),
        abstract=r.boolean(doc, "abstract", "", False),
        movement=r.choice(doc, "movement", "", MOVEMENTS, Movement.EXPLICIT),
        object_type=r.text(doc, "object_type", ""),
        actions=tuple(actions),
        states=tuple(states),
        methods=tuple(methods),
        transitions=tuple(transitions),
        events=tuple(events),
        access=tuple(access),
    )
    r.raise_problems()
    _check_internal(spec, r)
    r.raise_problems()
    return spec


def _check_internal(spec: ClassDocument, r: _Reader) -> None:
    """References between the parts of one document, and codes used twice."""
    declared: dict[str, str] = {}
    for action in spec.actions:
        if action.code in declared:
            r.fail(_at(action.path, "code"), f"action {preview(action.code)} is declared twice")
        declared[action.code] = action.path
    states: set[str] = set()
    for state in spec.states:
        if state.code in states:
            r.fail(_at(state.path, "code"), f"state {preview(state.code)} is defined twice")
        states.add(state.code)
    known = ", ".join(s.code for s in spec.states) or "none"
    methods: set[tuple[str | None, str]] = set()
    for method in spec.methods:
        if method.state is not None and method.state not in states:
            r.fail(_at(method.path, "state"), f"no state {preview(method.state)}; states: {known}")
        key = (method.state, method.code)
        if key in methods:
            where = f"state {preview(method.state)}" if method.state else "the global methods"
            r.fail(
                _at(method.path, "code"),
                f"method {preview(method.code)} is defined twice in {where}",
            )
        methods.add(key)
    pairs: set[tuple[str | None, str]] = set()
    for t in spec.transitions:
        if t.state is not None and t.state not in states:
            r.fail(_at(t.path, "state"), f"no state {preview(t.state)}; states: {known}")
        elif (t.state, t.method) not in methods and (None, t.method) not in methods:
            where = f"state {preview(t.state)} or among the global methods" if t.state else "global"
            r.fail(
                _at(t.path, "method"),
                f"no {where} method {preview(t.method)}; add it under methods",
            )
        if t.to not in states:
            r.fail(_at(t.path, "to"), f"no state {preview(t.to)}; states: {known}")
        if (t.state, t.method) in pairs:
            src = f"state {preview(t.state)}" if t.state else "any state"
            r.fail(t.path, f"method {preview(t.method)} from {src} already has a transition")
        pairs.add((t.state, t.method))
    for event in spec.events:
        if event.parent and spec.parent is None:
            r.fail(_at(event.path, "parent"), "the class has no parent whose chain to splice in")
    codes = {code for _, code in methods}
    for rule in spec.access:
        if (
            rule.method is not None
            and spec.movement == Movement.EXPLICIT
            and rule.method not in codes
        ):
            r.fail(_at(rule.path, "method"), f"no method {preview(rule.method)} in this document")


def check_references(
    spec: ClassDocument,
    session: Session,
    handlers: set[str],
    account_id: int | None,
    *,
    new: bool = True,
) -> set[str]:
    """Check what the document takes from the database and the plugins (with `new`, that its
    class does not exist yet); the action catalogue."""
    r = _Reader()
    try:
        existing = Definitions.class_row(session, spec.code, account_id)
    except UnknownDefinition:
        pass
    else:
        # a platform class may be shadowed per account
        if new and existing.iam_account_id == account_id:
            scope = "the platform" if account_id is None else f"account {account_id}"
            raise DuplicateCode("class", spec.code, scope)
    if spec.parent is not None:
        try:
            Definitions.class_row(session, spec.parent, account_id)
        except UnknownDefinition as exc:
            r.fail("parent", exc.message)
    catalogue = set(session.execute(select(ActionRow.code)).scalars())
    known = catalogue | {a.code for a in spec.actions}
    uses: list[tuple[str, str]] = [(m.path, m.action) for m in spec.methods]
    uses += [(e.path, e.action) for e in spec.events]
    for path, action in uses:
        if action not in known:
            r.fail(
                _at(path, "action"), f"unknown action {preview(action)}; declare it under actions"
            )
    for event in spec.events:
        if event.handler is not None and event.handler not in handlers:
            r.fail(
                _at(event.path, "handler"),
                f"no plugin provides the handler {preview(event.handler)}; register one that does "
                f"(known: {', '.join(sorted(handlers))})",
            )
    r.raise_problems()
    return catalogue


def _at(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def kind_of(value: object) -> str:
    """What a document value is, in words, for problems (`a list`, `true`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {preview(value)}"


def _label(code: str) -> str:
    return code.replace("_", " ").capitalize()
