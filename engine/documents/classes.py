"""Class documents: a class definition as plain data (YAML or JSON), dumped and loaded.

A document holds one class: its header, the custom actions it uses, its states, methods,
transitions, event rows and access rules. `load_class` checks the whole document first, then
writes it through the authoring API inside one database transaction, so a refused document
leaves nothing behind (not even the actions it declares).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.compile.compiler import compile_class
from flowkernel.compile.soundness import class_problems, problems
from flowkernel.definition.classes import ClassInfo, Definitions
from flowkernel.definition.guard import sort_out
from flowkernel.documents.formats import FORMATS
from flowkernel.errors import DefinitionError, InvalidDocument
from flowkernel.kinds import CallLog
from flowkernel.previews import preview
from flowkernel.validation import check_document_text, check_optional_id

if TYPE_CHECKING:
    from flowkernel.kernel import Flowkernel

from flowkernel.documents.class_spec import (
    CLASS_KEYS,
    ClassDocument,
    check_references,
    kind_of,
    parse_class,
)

__all__ = [
    "CLASS_KEYS",
    "check_compiles",
    "definition_transaction",
    "dump_class",
    "dumps",
    "load_class",
    "loads",
    "reported_at",
    "write_class",
]


# --- dumping -----------------------------------------------------------------------------


def dump_class(fk: Flowkernel, code: str, account_id: int | None = None) -> dict[str, Any]:
    """The document of class `code` (of `account_id`, else platform-wide), read in one snapshot.

    Only the class's own rows are dumped, not what it inherits. Pipeline settings kept outside
    the kernel tables (columns, automations, movement rules, won/lost stages, SLA, checklists)
    are not part of a class document.
    """
    with definition_transaction(fk) as sessions:
        # The whole document is checked at the end, so the writes need no guard of their own.
        d = Definitions(sessions, lambda: fk.handlers.keys(), class_problems, guarded=False)
        info = d.get_class(code, account_id)
        with sessions.begin() as session:
            object_type = Definitions.class_row(session, info.id, account_id).object_type
        states = d.list_states(code, account_id)
        methods = d.list_methods(code, account_id)
        transitions = d.list_transitions(code, account_id)
        events = d.list_events(code, account_id)
        rules = d.list_access_rules(code, account_id)
        catalogue = {a.code: a for a in d.list_actions()}
    used = {m.action for m in methods} | {e.action for e in events}
    doc: dict[str, Any] = {
        "class": info.code,
        "label": info.label,
        "parent": info.parent,
        "abstract": info.is_abstract,
        "movement": info.movement,
    }
    if object_type is not None:
        doc["object_type"] = object_type
    doc["actions"] = [
        {"code": a.code, "label": a.label}
        for a in sorted(catalogue.values(), key=lambda a: a.code)
        if a.code in used and not a.is_standard
    ]
    doc["states"] = [
        {"code": s.code, "type": s.state_type, "label": s.label, "position": s.position}
        for s in states
    ]
    doc["methods"] = [
        {
            "code": m.code,
            "action": m.action,
            "state": m.state,
            "label": m.label,
            "sequence": m.sequence,
            "visible": m.visible,
            # written only when it is not the default, every call
            **({"call_log": m.call_log} if m.call_log != CallLog.ALL else {}),
        }
        for m in methods
    ]
    doc["transitions"] = [
        {"state": t.state, "method": t.method, "to": t.new_state} for t in transitions
    ]
    doc["events"] = [
        {
            "action": e.action,
            **({"parent": True} if e.is_parent else {"handler": e.handler}),
            "label": e.label,
            "sequence": e.sequence,
            "enabled": e.enabled,
        }
        for e in events
    ]
    doc["access"] = [
        {
            "method": r.method,
            "subject_kind": r.subject_kind,
            "subject": r.subject,
            "permission": r.permission,
            "effect": r.effect,
        }
        for r in rules
    ]
    return doc


def dumps(doc: Mapping[str, Any], format: str = "yaml") -> str:
    """A document as YAML or JSON text, one line per row of each list."""
    if format == "yaml":
        text: str = yaml.safe_dump(
            _plain(doc), sort_keys=False, default_flow_style=None, allow_unicode=True, width=4096
        )
        return text
    if format == "json":
        return _json(doc)
    raise InvalidDocument(
        "format", f"unknown format {preview(format)}; use one of {', '.join(FORMATS)}"
    )


def loads(text: str, format: str | None = None) -> dict[str, Any]:
    """Parse a document from YAML or JSON text (`format=None`: JSON if it starts with `{`).

    The text is at most `MAX_DOCUMENT` characters.
    """
    check_document_text(text)
    if format is None:
        format = "json" if text.lstrip().startswith("{") else "yaml"
    if format not in FORMATS:
        raise InvalidDocument(
            "format", f"unknown format {preview(format)}; use one of {', '.join(FORMATS)}"
        )
    try:
        data = json.loads(text) if format == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        problem = " ".join(str(exc).split()) or "nested too deeply"
        raise InvalidDocument("", f"not valid {format.upper()}: {problem}") from exc
    if not isinstance(data, dict):
        raise InvalidDocument("", f"a class document is a mapping, not {kind_of(data)}")
    return data


def _json(doc: Mapping[str, Any]) -> str:
    """JSON with one line per key and per row of a list, as readable as the YAML."""
    lines = []
    for key, value in doc.items():
        name = json.dumps(key, ensure_ascii=False)
        if isinstance(value, list | tuple) and value:
            rows = ",\n".join(f"    {json.dumps(row, ensure_ascii=False)}" for row in value)
            lines.append(f"  {name}: [\n{rows}\n  ]")
        else:
            lines.append(f"  {name}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _plain(value: Any) -> Any:
    """Mappings and sequences as dicts and lists, which `yaml.safe_dump` accepts."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- loading -----------------------------------------------------------------------------


def load_class(
    fk: Flowkernel, document: Mapping[str, Any], account_id: int | None = None
) -> ClassInfo:
    """Create the class a document describes (in `account_id`, else platform-wide).

    Every key, type and reference is checked before anything is written (`InvalidDocument`
    names the path of each problem, such as `states[2].type`); a class code in use raises
    `DuplicateCode`. The writes then run through `fk.definitions`' rules in one transaction
    and the result must compile; any refusal rolls all of it back.
    """
    check_optional_id("account_id", account_id)
    spec = parse_class(document)
    with definition_transaction(fk) as sessions:
        # The whole document is checked at the end, so the writes need no guard of their own.
        d = Definitions(sessions, lambda: fk.handlers.keys(), class_problems, guarded=False)
        with sessions.begin() as session:
            catalogue = check_references(spec, session, set(fk.handlers), account_id)
        for action in spec.actions:
            if action.code not in catalogue:
                with reported_at(action.path):
                    d.add_action(action.code, action.label)
        write_class(d, spec, account_id)
        return check_compiles(fk, sessions, d, spec, account_id)


def check_compiles(
    fk: Flowkernel,
    sessions: sessionmaker[Session],
    d: Definitions,
    spec: ClassDocument,
    account_id: int | None,
) -> ClassInfo:
    """The class written from `spec`, refused (`InvalidDocument`) when it does not compile or
    breaks a whole-class rule.

    The rows may each be valid and still not compile together (a parent's transition into a
    state the subclass lacks); such a class is refused like any other problem.
    """
    info = d.get_class(spec.code, account_id)
    with sessions.begin() as session, reported_at(""):
        found = sort_out(
            problems(compile_class(session, info.id)),
            strict_states=fk.definitions.strict_states,
        )
    if found:
        paths = {s.code: s.path for s in spec.states}
        raise InvalidDocument(
            paths.get(found[0].state or "", ""),
            found[0].message,
            [(paths.get(p.state or "", ""), p.message) for p in found],
        )
    return info


def write_class(d: Definitions, spec: ClassDocument, account_id: int | None) -> None:
    """Write a parsed class document through the authoring API (its actions exist already)."""
    with reported_at("class"):
        d.add_class(
            spec.code,
            spec.label,
            parent=spec.parent,
            abstract=spec.abstract,
            account_id=account_id,
            object_type=spec.object_type,
            movement=spec.movement,
        )
    for s in spec.states:
        with reported_at(s.path):
            d.add_state(
                spec.code, s.type, s.code, s.label, position=s.position, account_id=account_id
            )
    for m in spec.methods:
        with reported_at(m.path):
            d.add_method(
                spec.code,
                m.state,
                m.action,
                code=m.code,
                label=m.label,
                sequence=m.sequence,
                visible=m.visible,
                call_log=m.call_log,
                account_id=account_id,
            )
    for t in spec.transitions:
        with reported_at(t.path):
            d.add_transition(spec.code, t.state, t.method, t.to, account_id=account_id)
    for e in spec.events:
        with reported_at(e.path):
            d.add_event(
                spec.code,
                e.action,
                e.handler,
                parent=e.parent,
                label=e.label,
                sequence=e.sequence,
                enabled=e.enabled,
                account_id=account_id,
            )
    for a in spec.access:
        with reported_at(a.path):
            d.add_access_rule(
                spec.code,
                subject=a.subject,
                subject_kind=a.subject_kind,
                permission=a.permission,
                effect=a.effect,
                method=a.method,
                account_id=account_id,
            )


@contextmanager
def definition_transaction(
    fk: Flowkernel, *, commit: bool = True
) -> Iterator[sessionmaker[Session]]:
    """Sessions that join one database transaction, committed when the block ends cleanly
    (rolled back without `commit`: a dry run).

    Each `Definitions` call then runs in a savepoint of that transaction, so the authoring
    API's checks are reused as they are and a later failure undoes the earlier calls too.
    """
    with fk.engine.connect() as conn, conn.begin() as transaction:
        yield sessionmaker(
            bind=conn,
            expire_on_commit=False,
            autoflush=False,
            join_transaction_mode="create_savepoint",
        )
        if not commit:
            transaction.rollback()


@contextmanager
def reported_at(path: str) -> Iterator[None]:
    """Report a rule broken by one write at the document path that asked for it."""
    try:
        yield
    except InvalidDocument:
        raise
    except DefinitionError as exc:
        raise InvalidDocument(path, exc.message) from exc
