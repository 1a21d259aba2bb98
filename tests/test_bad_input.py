"""Bad input: every public operation refuses malformed arguments with a typed error.

Hypothesis feeds malformed codes, unknown ids, values of the wrong type or out of range,
field values that do not fit their column, malformed JSON and YAML and oversized payloads to
each argument of each public operation (the facade, `fk.definitions`, `fk.pipelines`,
`fk.items`, `fk.queries`, the SLA scan, dead letters, explain, and the class and pipeline
documents). Every call must raise a `FlowkernelError` (never a `TypeError`, a SQLAlchemy or
driver error, and never succeed) whose message names what was wrong, and every row of every
table must be as it was before the call.

Each argument is one `Case`: the call with a bad value in that argument and valid values in
the others. The strategies draw only values that are wrong for their argument, so a success is
always a bug. The last tests check that every public operation has its cases.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sweep import (
    API_CLASSES,
    AUTOMATION,
    DEAL,
    EVENT,
    FK,
    PIPELINE,
    TEMPLATE,
    Call,
    World,
    X,
    define_lamp,
    snapshot,
)

from flowkernel import Actor, Flowkernel, FlowkernelError, InvalidArgument, StageSpec
from flowkernel.definition.pipelines.admin import MAX_OPTIONS
from flowkernel.documents.classes import CLASS_KEYS
from flowkernel.documents.pipelines import PIPELINE_KEYS
from flowkernel.previews import preview
from flowkernel.runtime.batch import MAX_BATCH
from flowkernel.runtime.scope import MAX_PAGE
from flowkernel.runtime.watching import MAX_INBOX
from flowkernel.validation import (
    MAX_ACTION_CODE,
    MAX_CODE,
    MAX_DOCUMENT,
    MAX_ID,
    MAX_INT,
    MAX_NAME,
    MAX_OBJECT_TYPE,
    MAX_PARAMS_BYTES,
    MAX_POSITION,
    MAX_STATE_CODE,
    MAX_TEXT,
    MIN_ID,
    MIN_INT,
)

ACCOUNT = 1
ALICE = Actor.user(1, ACCOUNT)
NOW = datetime.now(UTC)
SYSTEM = Actor.system()
EXAMPLES = 5
"""Random examples per argument, besides the fixed ones every kind of bad value carries."""


# --- the world every case runs against ----------------------------------------------------


@pytest.fixture
def world(fk: Flowkernel) -> World:
    d = fk.definitions
    define_lamp(fk)
    event = d.add_event("lamp", "enable", "change_object_state")
    rule = d.add_access_rule("lamp", subject="2", method="switch_on", effect="deny")
    pipeline = fk.pipelines.create_pipeline(
        "Deals",
        ALICE,
        code="deals",
        object_type="deal",
        stages=[
            StageSpec("Lead", code="lead"),
            StageSpec("Proposal", code="proposal", checklist=[{"key": "sent", "label": "Sent"}]),
            StageSpec("Won", code="won", is_won=True),
            StageSpec("Lost", code="lost", is_lost=True),
        ],
        columns=[
            {"name": "title", "field_type": "text"},
            {"name": "amount", "field_type": "number"},
            {"name": "close_on", "field_type": "date"},
            {"name": "hot", "field_type": "boolean"},
            {"name": "tier", "field_type": "select", "options": ["A", "B"]},
            {"name": "tags", "field_type": "multi_select", "options": ["x", "y"]},
            {"name": "meta", "field_type": "json"},
        ],
    )
    template = fk.pipelines.create_pipeline(
        "Template", ALICE, is_template=True, stages=[StageSpec("Open"), StageSpec("Done")]
    )
    automation = fk.pipelines.add_automation(
        pipeline.id, "stage_entered", "deal.won", ALICE, stage="won"
    )
    deal = fk.place(pipeline.id, "deal", 1, ALICE)
    fk.items.set_value(deal.id, "title", "First deal", ALICE)
    fk.items.watch(deal.id, 1, ALICE)
    lamp = fk.place("lamp", "lamp", 1, ALICE)
    gone = fk.place(pipeline.id, "deal", 2, ALICE)
    fk.items.delete(gone.id, ALICE)
    return World(
        fk, pipeline.id, template.id, automation.id, deal.id, gone.id, lamp.id, event.id, rule.id
    )


# --- bad values ----------------------------------------------------------------------------


class Opaque:
    """An object no JSON encoder, database driver or code lookup knows."""

    def __repr__(self) -> str:
        return "<opaque>"


@dataclass(frozen=True)
class Bad:
    """Values wrong for one kind of argument: a strategy, and examples always tried."""

    strategy: st.SearchStrategy[Any]
    fixed: tuple[Any, ...] = ()

    def __or__(self, other: Bad) -> Bad:
        return Bad(st.one_of(self.strategy, other.strategy), self.fixed + other.fixed)

    def but(self, keep: Callable[[Any], bool]) -> Bad:
        """These values without those `keep` refuses (values valid in some argument)."""
        return Bad(self.strategy.filter(keep), tuple(v for v in self.fixed if keep(v)))


def sized(low: int, high: int) -> st.SearchStrategy[str]:
    """Strings of `low` to `high` characters, cheap to draw however long."""
    return st.integers(low, high).map(lambda n: "x" * n)


def _deep(wrap: Callable[[Any], Any], depth: int = 5_000) -> Any:
    value: Any = None
    for _ in range(depth):
        value = wrap(value)
    return value


DEEP = (_deep(lambda inner: [inner]), _deep(lambda inner: {"a": inner}))

NOTHING = Bad(st.nothing())
NONE = Bad(st.none(), (None,))
BOOLS = Bad(st.booleans(), (True, False))
OTHER = Bad(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.binary(max_size=6),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.frozensets(st.integers(), max_size=3),
        st.builds(Opaque),
        st.complex_numbers(max_magnitude=1e6),
        st.dates(),
    ),
    (1.5, math.nan, math.inf, b"\x00", [1], {"a": 1}, frozenset({1}), Opaque(), *DEEP),
)
"""Values that are neither strings, integers, booleans nor None (among them a list and a
mapping nested too deep for `repr`)."""
WIDE = Bad(
    st.one_of(st.integers(min_value=MAX_ID + 1), st.integers(max_value=MIN_ID - 1)),
    (MAX_ID + 1, 2**70, MIN_ID - 1),
)
"""Integers no 64-bit column holds."""
UNKNOWN_ID = Bad(
    st.one_of(st.integers(10**9, MAX_ID), st.integers(MIN_ID, 0)), (0, -1, 10**12, MAX_ID)
)
"""64-bit ids that name nothing in the world."""
NOT_INT = OTHER | BOOLS | Bad(st.text(max_size=8), ("1", "abc", ""))
NOT_STR = OTHER | BOOLS | WIDE | Bad(st.integers(), (123,))

ID = NOT_INT | WIDE | UNKNOWN_ID | NONE
"""Wrong for the id of a row that must exist."""
ANY_ID = NOT_INT | WIDE
"""Wrong for an id that may name anything, such as an account or a user (None: the default)."""
HOST_KEY = (
    OTHER
    | BOOLS
    | WIDE
    | NONE
    | Bad(
        st.text(max_size=140).filter(
            lambda s: not s or s != s.strip() or not s.isprintable() or len(s) > 128
        ),
        ("", " 1", "1 ", "a\tb", "x" * 129),
    )
)
"""Wrong for the host's key of an object: an integer, a UUID or a short text key."""

_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def malformed(limit: int) -> Bad:
    """Strings that are no codes of at most `limit` characters."""
    return Bad(
        st.one_of(
            st.text(max_size=12).filter(lambda s: not _CODE.fullmatch(s)),
            sized(limit + 1, 3 * limit),
        ),
        ("", "9lives", "has space", "dash-ed", "é", "_x", "a\x00b", "a\ud800", "x" * (limit + 1)),
    )


def code(limit: int = MAX_CODE) -> Bad:
    """Wrong for a new code."""
    return NOT_STR | malformed(limit)


UNKNOWN_CODE = Bad(st.from_regex(r"zz[a-z0-9_]{0,10}", fullmatch=True), ("zz", "zz_missing"))
REF = NOT_STR | malformed(MAX_CODE) | UNKNOWN_CODE
"""Wrong for a code something is looked up by."""
STAGE_REF = OTHER | BOOLS | UNKNOWN_ID | WIDE | malformed(MAX_CODE) | UNKNOWN_CODE
"""Wrong for a stage (or column) named by its code (name) or its id."""


def text(limit: int = MAX_NAME) -> Bad:
    """Wrong for a name or label of at most `limit` characters."""
    return NOT_STR | Bad(
        st.one_of(
            st.text(alphabet=" \t\n", max_size=3),
            st.text(max_size=5).map(lambda s: s + "\x00"),
            sized(limit + 1, limit + 20),
        ),
        ("", "  ", "a\x00b", "a\ud800", "x" * (limit + 1), "x" * 1_000_000),
    )


def flag(*, optional: bool = True) -> Bad:
    """Wrong for True or False (None: the default, when `optional`)."""
    return (
        OTHER
        | Bad(st.one_of(st.integers(), st.text(max_size=5)), (0, 1, "yes", "true"))
        | (NOTHING if optional else NONE)
    )


def integer(low: int, high: int, *, optional: bool = True) -> Bad:
    """Wrong for an integer from `low` to `high` (None: the default, when `optional`)."""
    outside = Bad(
        st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1)),
        (low - 1, high + 1, 2**70),
    )
    return NOT_INT | outside | (NOTHING if optional else NONE)


def not_json(*, optional: bool = True) -> Bad:
    """Wrong for a JSON object such as params or a payload template."""
    unjson = st.one_of(
        st.frozensets(st.integers(), max_size=2),
        st.builds(Opaque),
        st.sampled_from([math.nan, math.inf, -math.inf]),
        st.complex_numbers(max_magnitude=10),
        st.binary(max_size=3),
        st.datetimes(),
        st.text(max_size=4).map(lambda s: s + "\x00"),
    )
    return (
        Bad(
            st.one_of(
                st.text(max_size=5),
                st.integers(),
                st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=4), unjson, min_size=1, max_size=3),
                st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
                st.builds(lambda v: {"nested": {"list": [v]}}, unjson),
            ),
            (
                "a=1",
                [("a", 1)],
                {"s": {1, 2}},
                {"o": Opaque()},
                {"n": math.nan},
                {1: "a"},
                {"t": "a\x00"},
                {"u": "\ud800"},
                {"big": "x" * (MAX_PARAMS_BYTES + 1)},
                {"deep": json.loads("[" * 200 + "]" * 200)},
            ),
        )
        | BOOLS
        | (NOTHING if optional else NONE)
    )


def moment() -> Bad:
    """Wrong for a datetime (None is the current time)."""
    return NOT_STR | Bad(
        st.one_of(st.dates(), st.text(max_size=10)), (date(2026, 1, 1), "2026-01-01T00:00:00Z")
    )


def past() -> Bad:
    """Wrong for an instant of the past: not a datetime, or a future one."""
    return moment() | Bad(
        st.datetimes(min_value=datetime(2100, 1, 1)), (datetime(2999, 1, 1, tzinfo=UTC),)
    )


def sequence_of(bad_entry: Bad) -> Bad:
    """Wrong for a list: no list at all, or a list holding a bad entry."""
    return Bad(
        st.one_of(
            st.integers(),
            st.builds(Opaque),
            st.lists(bad_entry.strategy, min_size=1, max_size=3),
        ),
        (1, Opaque(), *([v] for v in bad_entry.fixed[:4])),
    )


# --- field values wrong for each of the seven field types -----------------------------------

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _is_json(raw: str) -> bool:
    def refuse(name: str) -> object:
        raise ValueError(name)

    try:
        json.loads(raw, parse_constant=refuse)
    except (ValueError, RecursionError):
        return False
    return True


TOO_BIG = "x" * (64 * 1024 + 1)
FIELD_VALUES: dict[str, Bad] = {
    "title": OTHER | BOOLS | Bad(st.integers(), ("", "a\x00b", "a\ud800", TOO_BIG, None, 1)),
    "amount": Bad(
        st.one_of(
            st.text(max_size=10).filter(lambda s: not _NUMBER.fullmatch(s)),
            st.sampled_from([math.nan, math.inf, -math.inf]),
            st.booleans(),
            st.lists(st.integers(), max_size=2),
        ),
        ("abc", "1e5000", "nan", "Infinity", "", " 1", True, math.nan, [1], None),
    ),
    "close_on": Bad(
        st.one_of(
            st.text(max_size=12).filter(
                lambda s: not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", s)
            ),
            st.datetimes(),
            st.integers(),
            st.booleans(),
        ),
        ("2026-13-01", "2026-02-30", "01/07/2026", datetime(2026, 7, 1), 20260701, None),
    ),
    "hot": Bad(
        st.one_of(
            st.integers(),
            st.text(max_size=6).filter(lambda s: s not in ("true", "false")),
            st.floats(),
        ),
        (0, 1, "True", "yes", "", None),
    ),
    "tier": Bad(
        st.one_of(
            st.text(max_size=5).filter(lambda s: s not in ("A", "B")),
            st.integers(),
            st.lists(st.just("A"), max_size=2),
        ),
        ("C", "a", "", ["A"], None, "A\x00"),
    ),
    "tags": Bad(
        st.one_of(
            st.lists(
                st.text(max_size=3).filter(lambda s: s not in ("x", "y")), min_size=1, max_size=3
            ),
            st.lists(st.sampled_from(["x", "y"]), min_size=3, max_size=4),  # an option twice
            st.text(max_size=8).filter(lambda s: not s.lstrip().startswith("[")),
            st.integers(),
        ),
        ([], ["x", "x"], ["z"], '["x", "z"]', "[]", "not json", ("x", 1), None),
    ),
    "meta": Bad(
        st.one_of(
            st.text(max_size=10).filter(lambda s: not _is_json(s)),
            st.frozensets(st.integers(), min_size=1, max_size=2),
            st.builds(Opaque),
            st.sampled_from([math.nan, math.inf]),
            st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
        ),
        ("{bad", "NaN", "", '{"a": Infinity}', {"a": {1}}, {1: "a"}, Opaque(), None),
    ),
}


# --- documents -------------------------------------------------------------------------------


def _is_mapping_document(raw: str) -> bool:
    """Whether `raw` parses (as YAML, of which JSON is a subset) into a mapping."""
    try:
        return isinstance(yaml.safe_load(raw), dict)
    except (yaml.YAMLError, ValueError, RecursionError):
        return False


DOCUMENT_TEXT = NOT_STR | Bad(
    st.text(max_size=30).filter(lambda s: not _is_mapping_document(s)),
    (
        "{bad json",
        "class: [",
        "- 1\n- 2",
        "[" * 1100,
        "{" * 1100,
        "a: " + "1" * 5000,
        '{"a": ' + "1" * 5000 + "}",
        "!!python/object/apply:os.system ['true']",
        "a: \x00",
        "x" * (MAX_DOCUMENT + 1),
    ),
)
"""Wrong for document text: no text, malformed YAML or JSON, no mapping, or too long."""


def _no_document(keys: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """No mapping at all, or a mapping of keys a document does not know."""
    unknown = st.text(max_size=5).filter(lambda k: k not in keys)
    return st.one_of(
        st.integers(),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(unknown, st.integers(), min_size=1, max_size=2),
    )


def class_documents() -> Bad:
    """Class documents that are wrong somewhere: their shape, a type, a code, a value."""

    def doc(**parts: Any) -> dict[str, Any]:
        return {"class": "zz_new", **parts}

    def state(**fields: Any) -> dict[str, Any]:
        return doc(states=[{"code": "s", "type": "enabled", **fields}])

    label = text().but(lambda v: v not in ("", None))  # an empty label takes the default
    return Bad(
        st.one_of(
            _no_document(CLASS_KEYS),
            code().strategy.map(lambda c: {"class": c}),
            label.strategy.map(lambda v: doc(label=v)),
            label.strategy.map(lambda v: state(label=v)),
            integer(MIN_INT, MAX_INT).strategy.map(lambda v: state(position=v)),
            code(MAX_STATE_CODE).strategy.map(lambda v: state(code=v)),
            NOT_STR.strategy.map(lambda v: state(type=v)),
            flag().strategy.map(lambda v: doc(abstract=v)),
            NOT_STR.strategy.map(lambda v: doc(access=[{"subject": "1", "effect": v}])),
            OTHER.strategy.map(lambda v: doc(states=v)),
        ),
        (
            {},
            {"label": "no class"},
            {"class": "zz_new", "unknown": 1},
            doc(states=[{"code": "s", "type": "bogus"}]),
            doc(states=[{"code": "s", "type": "enabled", "position": 2**70}]),
            doc(states=[{"code": "s", "type": "enabled", "label": "a\x00"}]),
            doc(methods=[{"action": "zz_unknown"}]),
            doc(methods=[{"action": "edit", "sequence": 1.5}]),
            doc(methods=[{"action": "edit", "visible": "no"}]),
            doc(access=[{"subject": "alice"}]),
            doc(events=[{"action": "edit", "handler": "zz_nobody"}]),
            doc(actions=[{"code": "x" * (MAX_ACTION_CODE + 1)}]),
            {"class": "lamp"},  # the platform has it already
        ),
    )


def pipeline_documents() -> Bad:
    """Pipeline documents that are wrong somewhere."""

    def doc(**parts: Any) -> dict[str, Any]:
        return {"name": "Zz", **parts}

    return Bad(
        st.one_of(
            _no_document(PIPELINE_KEYS),
            text().but(lambda v: v is not None).strategy.map(lambda v: {"name": v}),
            code(MAX_STATE_CODE).strategy.map(lambda v: doc(code=v)),
            OTHER.but(lambda v: v != []).strategy.map(lambda v: doc(stages=v)),  # [] is no stage
            integer(1, MAX_INT).strategy.map(lambda v: doc(stages=[{"name": "S", "sla_days": v}])),
            flag().strategy.map(lambda v: doc(is_template=v)),
            NOT_STR.strategy.map(lambda v: doc(columns=[{"name": "c", "field_type": v}])),
            flag().strategy.map(lambda v: doc(movement={"allow_backward": v})),
            not_json().strategy.map(
                lambda v: doc(
                    automations=[
                        {"trigger": "item_created", "event_name": "e", "payload_template": v}
                    ]
                )
            ),
        ),
        (
            {},
            doc(unknown=1),
            doc(stages=[{"name": "S", "probability": 101}]),
            doc(stages=[{"name": "S", "checklist": "x"}]),
            doc(stages=[{"name": "S", "requires": ["zz_missing"]}]),
            doc(columns=[{"name": "c", "field_type": "select"}]),
            doc(columns=[{"name": "9c"}]),
            doc(automations=[{"trigger": "zz", "event_name": "e"}]),
            doc(description="x" * (MAX_TEXT + 1)),
            doc(is_system=True),  # only the platform's system actor creates system templates
        ),
    )


# --- the cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One argument of one public operation given bad values; the other arguments are valid."""

    bad: Bad
    call: Call
    words: tuple[str, ...]

    @property
    def operation(self) -> str:
        return self.call.operation

    @property
    def name(self) -> str:
        return f"{self.call.operation}({self.call.argument})"


def c(bad: Bad, operation: str, *args: Any, _words: tuple[str, ...] = (), **kwargs: Any) -> Case:
    """A case: `operation` called with `args` and `kwargs`, the bad value where `X` stands.

    The error's message must name one of `_words` (by default: the argument's name).
    """
    call = Call(operation, args, kwargs)
    return Case(bad, call, _words or (call.argument,))


def facade_cases() -> list[Case]:
    won, item, cls, account = "move_to_won", ("item",), ("class",), ("account",)
    idempotency = ("idempotency",)
    key = NOT_STR | Bad(st.just(""), ("", "a\x00b", "x" * 100_000))
    batch_ids = sequence_of(ID) | Bad(st.text(max_size=3), ("12",))
    on_error = NOT_STR | UNKNOWN_CODE | NONE | Bad(st.just("ABORT"), ("ABORT", ""))
    explained = OTHER | BOOLS | UNKNOWN_ID | WIDE | UNKNOWN_CODE | Bad(st.just("9"), ("a\x00",))
    limit = integer(1, MAX_ID, optional=False)
    return [
        c(REF, "place", X, "deal", 99, ALICE, _words=cls),
        c(text(MAX_OBJECT_TYPE), "place", PIPELINE, X, 99, ALICE),
        c(HOST_KEY, "place", PIPELINE, "deal", X, ALICE),
        c(REF, "place", PIPELINE, "deal", 99, ALICE, state=X),
        c(ANY_ID, "place", PIPELINE, "deal", 99, ALICE, account_id=X),
        c(ANY_ID, "place", PIPELINE, "deal", 99, ALICE, assigned_user_id=X),
        c(not_json(), "place", PIPELINE, "deal", 99, ALICE, params=X),
        c(ID, "execute", X, won, ALICE, _words=item),
        c(REF, "execute", DEAL, X, ALICE),
        c(not_json(), "execute", DEAL, won, ALICE, params=X),
        c(key, "execute", DEAL, won, ALICE, idempotency_key=X, _words=idempotency),
        c(ID, "execute_action", X, "move", ALICE, _words=item),
        c(REF, "execute_action", DEAL, X, ALICE, _words=("action", "method")),
        c(not_json(), "execute_action", DEAL, "delete", ALICE, params=X),
        c(key, "execute_action", DEAL, "delete", ALICE, idempotency_key=X, _words=idempotency),
        c(batch_ids, "execute_batch", X, won, ALICE, _words=item),
        c(REF | sequence_of(NOT_STR), "execute_batch", [DEAL], X, ALICE),
        c(not_json(), "execute_batch", [DEAL], won, ALICE, params=X),
        c(flag(optional=False), "execute_batch", [DEAL], "delete", ALICE, by_action=X),
        c(on_error, "execute_batch", [DEAL], won, ALICE, on_error=X),
        c(ID, "move", X, "won", ALICE, _words=item),
        c(STAGE_REF, "move", DEAL, X, ALICE, _words=("stage", "method")),
        c(key, "move", DEAL, "won", ALICE, idempotency_key=X, _words=idempotency),
        c(ID, "item", X, ALICE, _words=item),
        c(ID, "methods", X, ALICE, _words=item),
        c(ID, "history", X, ALICE, _words=item),
        c(ID, "state_at", X, datetime.now(UTC), ALICE, _words=item),
        c(moment(), "state_at", DEAL, X, ALICE),
        c(ID, "explain", X, "won", ALICE, _words=item),
        c(explained, "explain", DEAL, X, ALICE, _words=("method", "stage", "state")),
        c(REF, "compiled", X, _words=cls),
        c(ANY_ID, "compiled", "lamp", X, _words=account),
        c(limit, "deliver_events", X),
    ]


def definition_cases() -> list[Case]:
    d, cls = "definitions.", ("class",)
    state, seq = code(MAX_STATE_CODE), integer(MIN_INT, MAX_INT)
    reserved = Bad(st.sampled_from(["state", "guard", "trigger", "machine"]), ("guard",))
    kinds = NOT_STR | UNKNOWN_CODE | NONE
    subject = NOT_STR | UNKNOWN_CODE | Bad(st.just(""), ("", "a\x00", "1 ", "-1"))
    label = text().but(lambda v: not (isinstance(v, str) and not v.strip()))  # may be empty
    return [
        c(code(), d + "add_class", X, "X"),
        c(text(), d + "add_class", "zz", X),
        c(REF, d + "add_class", "zz", "X", parent=X, _words=cls),
        c(flag(optional=False), d + "add_class", "zz", "X", abstract=X),
        c(ANY_ID, d + "add_class", "zz", "X", account_id=X),
        c(text(MAX_OBJECT_TYPE), d + "add_class", "zz", "X", object_type=X),
        c(kinds, d + "add_class", "zz", "X", movement=X),
        c(REF, d + "get_class", X, _words=cls),
        c(ANY_ID, d + "get_class", "lamp", X),
        c(ANY_ID, d + "list_classes", X),
        c(REF, d + "edit_class", X, label="X", _words=cls),
        c(text(), d + "edit_class", "lamp", label=X),
        c(REF.but(lambda v: v is not False), d + "edit_class", "lamp", parent=X, _words=cls),
        c(flag(), d + "edit_class", "lamp", abstract=X),
        c(REF, d + "delete_class", X, _words=cls),
        c(ANY_ID, d + "delete_class", "lamp", X),
        c(REF, d + "add_state", X, "enabled", "zz", "S", _words=cls),
        c(kinds, d + "add_state", "lamp", X, "zz", "S", _words=("state type",)),
        c(state, d + "add_state", "lamp", "enabled", X, "S", _words=("state",)),
        c(text(), d + "add_state", "lamp", "enabled", "zz", X),
        c(seq, d + "add_state", "lamp", "enabled", "zz", "S", position=X),
        c(REF, d + "list_states", X, _words=cls),
        c(REF, d + "edit_state", "lamp", X, label="X", _words=("state",)),
        c(text(), d + "edit_state", "lamp", "on", label=X),
        c(seq, d + "edit_state", "lamp", "on", position=X),
        c(
            state.but(lambda v: v != "on"),
            d + "edit_state",
            "lamp",
            "on",
            new_code=X,
            _words=("state",),
        ),
        c(REF, d + "delete_state", "lamp", X, _words=("state",)),
        c(REF, d + "delete_state", X, "on", _words=cls),
        c(code(MAX_ACTION_CODE), d + "add_action", X, _words=("action",)),
        c(text(), d + "add_action", "zz", X),
        c(text(MAX_TEXT), d + "add_action", "zz", "A", X),
        c(REF, d + "delete_action", X, _words=("action",)),
        c(REF, d + "add_method", X, None, "edit", _words=cls),
        c(REF, d + "add_method", "lamp", X, "edit"),
        c(REF, d + "add_method", "lamp", None, X, code="zz"),
        c(code() | reserved, d + "add_method", "lamp", None, "edit", code=X, _words=("method",)),
        c(text(), d + "add_method", "lamp", None, "edit", label=X),
        c(seq, d + "add_method", "lamp", None, "edit", sequence=X),
        c(flag(optional=False), d + "add_method", "lamp", None, "edit", visible=X),
        c(REF, d + "list_methods", X, _words=cls),
        c(REF, d + "edit_method", "lamp", "off", X, label="X", _words=("method",)),
        c(REF, d + "edit_method", "lamp", X, "switch_on", label="X"),
        c(text(), d + "edit_method", "lamp", "off", "switch_on", label=X),
        c(seq, d + "edit_method", "lamp", "off", "switch_on", sequence=X),
        c(flag(), d + "edit_method", "lamp", "off", "switch_on", visible=X),
        c(REF, d + "delete_method", "lamp", "off", X, _words=("method",)),
        c(REF, d + "delete_method", X, "off", "switch_on", _words=cls),
        c(REF, d + "add_transition", "lamp", X, "inspect", "on"),
        c(REF, d + "add_transition", "lamp", "on", X, "on"),
        c(REF, d + "add_transition", "lamp", "on", "inspect", X, _words=("state",)),
        c(REF, d + "list_transitions", X, _words=cls),
        c(REF, d + "problems", X, _words=cls),
        c(REF, d + "delete_transition", "lamp", "off", X),
        c(REF, d + "delete_transition", X, "off", "switch_on", _words=cls),
        c(REF, d + "add_event", "lamp", X, "change_object_state"),
        c(REF, d + "add_event", "lamp", "enable", X),
        c(flag(optional=False), d + "add_event", "lamp", "enable", parent=X),
        c(label, d + "add_event", "lamp", "enable", "change_object_state", label=X),
        c(seq, d + "add_event", "lamp", "enable", "change_object_state", sequence=X),
        c(
            flag(optional=False),
            d + "add_event",
            "lamp",
            "enable",
            "change_object_state",
            enabled=X,
        ),
        c(REF, d + "list_events", X, _words=cls),
        c(ID, d + "edit_event", X, label="X", _words=("event",)),
        c(seq, d + "edit_event", EVENT, sequence=X),
        c(flag(), d + "edit_event", EVENT, enabled=X),
        c(label, d + "edit_event", EVENT, label=X),
        c(ID, d + "delete_event", X, _words=("event",)),
        c(subject, d + "add_access_rule", "lamp", subject=X),
        c(kinds, d + "add_access_rule", "lamp", subject="1", subject_kind=X),
        c(kinds, d + "add_access_rule", "lamp", subject="1", permission=X),
        c(kinds, d + "add_access_rule", "lamp", subject="1", effect=X),
        c(REF, d + "add_access_rule", "lamp", subject="1", method=X),
        c(REF, d + "add_access_rule", X, subject="1", _words=cls),
        c(REF, d + "list_access_rules", X, _words=cls),
        c(ID, d + "delete_access_rule", X, _words=("access rule",)),
        c(REF, d + "default_methods", X, _words=cls),
        c(REF, d + "default_transitions", X, _words=cls),
        c(REF, d + "add_default_methods", X, _words=cls),
    ]


def _checklists() -> Bad:
    entries = Bad(
        st.one_of(
            st.integers(),
            NOT_STR.strategy.map(lambda k: {"key": k}),
            st.integers().map(lambda x: {"key": "k", "extra": x}),
        ),
        ({"key": ""}, {"key": "k", "required": "yes"}, {"key": "a\x00"}, {"label": "no key"}),
    )
    return sequence_of(entries) | Bad(st.text(max_size=3), ("x", {"key": "k"}))


def pipeline_cases() -> list[Case]:
    p, pipeline = "pipelines.", ("pipeline",)
    stage_code = code(MAX_STATE_CODE)
    position = integer(0, MAX_POSITION)
    true = Bad(st.just(True), (True,))  # a second won (or lost) stage
    column_name = NOT_STR | Bad(
        st.one_of(
            st.text(max_size=10).filter(lambda s: not re.fullmatch(r"[A-Za-z_]\w*", s, re.ASCII)),
            sized(129, 300),
        ),
        ("", "9x", "a b", "a\x00", "title"),  # the last exists already
    )
    column = OTHER | BOOLS | UNKNOWN_ID | WIDE | malformed(MAX_CODE) | UNKNOWN_CODE
    options = sequence_of(NOT_STR | Bad(st.just(""), ("", "a\x00"))) | Bad(
        st.just([]), ([], ["A", "A"], "AB", ["x"] * (MAX_OPTIONS + 1))
    )
    pairs = Bad(
        st.one_of(
            st.integers(),
            st.tuples(STAGE_REF.strategy, st.just("won")),
            st.lists(st.just("lead"), min_size=3, max_size=3),
        ),
        (("lead",), ("lead", "lead"), ("lead", "zz")),
    )
    moves = sequence_of(pairs) | Bad(st.text(max_size=3), ("lead:won",))
    stages = sequence_of(
        Bad(
            st.one_of(
                st.integers(),
                text().strategy.map(lambda v: {"name": v}),
                integer(0, 100).strategy.map(lambda v: {"name": "S", "probability": v}),
                integer(1, MAX_INT).strategy.map(lambda v: {"name": "S", "sla_days": v}),
                stage_code.strategy.map(lambda v: {"name": "S", "code": v}),
            ),
            ({"nam": "S"}, {"name": "S", "color": ""}, {1: "S"}, {"name": "S", "is_won": "yes"}),
        )
    )
    columns = sequence_of(
        Bad(
            st.one_of(
                st.integers(),
                column_name.strategy.map(lambda v: {"name": v}),
                NOT_STR.strategy.map(lambda v: {"name": "c", "field_type": v}),
            ),
            ({"name": "c", "field_type": "select"}, {"name": "c", "options": ["a"]}),
        )
    )
    order = sequence_of(STAGE_REF) | Bad(st.just(["lead"]), (["lead", "lead", "won", "lost"],))
    kinds = NOT_STR | UNKNOWN_CODE | NONE
    return [
        c(text(), p + "create_pipeline", X, ALICE),
        c(stages, p + "create_pipeline", "Zz", ALICE, stages=X, _words=("stage",)),
        c(columns, p + "create_pipeline", "Zz", ALICE, columns=X, _words=("column",)),
        c(text(MAX_OBJECT_TYPE), p + "create_pipeline", "Zz", ALICE, object_type=X),
        c(stage_code | Bad(st.just("deals")), p + "create_pipeline", "Zz", ALICE, code=X),
        c(text(MAX_TEXT), p + "create_pipeline", "Zz", ALICE, description=X),
        c(ANY_ID, p + "create_pipeline", "Zz", SYSTEM, account_id=X),
        c(flag(optional=False), p + "create_pipeline", "Zz", ALICE, is_template=X),
        c(flag(optional=False), p + "create_pipeline", "Zz", SYSTEM, is_system=X),
        c(ID, p + "get_pipeline", X, ALICE, _words=pipeline),
        c(REF, p + "pipeline_id", X, ALICE, _words=pipeline),
        c(ANY_ID, p + "list_pipelines", SYSTEM, account_id=X),
        c(flag(), p + "list_pipelines", ALICE, templates=X),
        c(ID, p + "edit_pipeline", X, ALICE, name="X", _words=pipeline),
        c(text(), p + "edit_pipeline", PIPELINE, ALICE, name=X),
        c(stage_code.but(lambda v: v != "deals"), p + "edit_pipeline", PIPELINE, ALICE, code=X),
        c(text(MAX_TEXT), p + "edit_pipeline", PIPELINE, ALICE, description=X),
        c(text(MAX_OBJECT_TYPE), p + "edit_pipeline", PIPELINE, ALICE, object_type=X),
        c(flag(), p + "edit_pipeline", PIPELINE, ALICE, is_template=X),
        c(ID, p + "delete_pipeline", X, ALICE, _words=pipeline),
        c(ID, p + "add_stage", X, "S", ALICE, _words=pipeline),
        c(text(), p + "add_stage", PIPELINE, X, ALICE),
        c(stage_code | Bad(st.just("lead")), p + "add_stage", PIPELINE, "S", ALICE, code=X),
        c(position, p + "add_stage", PIPELINE, "S", ALICE, position=X),
        c(text(64), p + "add_stage", PIPELINE, "S", ALICE, color=X),
        c(integer(0, 100), p + "add_stage", PIPELINE, "S", ALICE, probability=X),
        c(integer(1, MAX_INT), p + "add_stage", PIPELINE, "S", ALICE, sla_days=X),
        c(
            flag(optional=False) | true,
            p + "add_stage",
            PIPELINE,
            "S",
            ALICE,
            is_won=X,
            _words=("won",),
        ),
        c(
            flag(optional=False) | true,
            p + "add_stage",
            PIPELINE,
            "S",
            ALICE,
            is_lost=X,
            _words=("lost",),
        ),
        c(_checklists(), p + "add_stage", PIPELINE, "S", ALICE, checklist=X),
        c(ID, p + "edit_stage", X, "lead", ALICE, name="X", _words=pipeline),
        c(STAGE_REF, p + "edit_stage", PIPELINE, X, ALICE, name="X"),
        c(text(), p + "edit_stage", PIPELINE, "lead", ALICE, name=X),
        c(stage_code | Bad(st.just("won")), p + "edit_stage", PIPELINE, "lead", ALICE, code=X),
        c(position, p + "edit_stage", PIPELINE, "lead", ALICE, position=X),
        c(text(64), p + "edit_stage", PIPELINE, "lead", ALICE, color=X),
        c(integer(0, 100), p + "edit_stage", PIPELINE, "lead", ALICE, probability=X),
        c(integer(1, MAX_INT), p + "edit_stage", PIPELINE, "lead", ALICE, sla_days=X),
        c(_checklists(), p + "edit_stage", PIPELINE, "lead", ALICE, checklist=X),
        c(flag() | true, p + "edit_stage", PIPELINE, "lead", ALICE, is_won=X, _words=("won",)),
        c(flag() | true, p + "edit_stage", PIPELINE, "lead", ALICE, is_lost=X, _words=("lost",)),
        c(ID, p + "reorder_stages", X, ["lead"], ALICE, _words=pipeline),
        c(order, p + "reorder_stages", PIPELINE, X, ALICE, _words=("order", "stage")),
        c(ID, p + "remove_stage", X, "lost", ALICE, _words=pipeline),
        c(STAGE_REF, p + "remove_stage", PIPELINE, X, ALICE),
        c(
            STAGE_REF | Bad(st.just("lead")),
            p + "remove_stage",
            PIPELINE,
            "lead",
            ALICE,
            target=X,
            _words=("stage",),
        ),
        c(flag(optional=False), p + "remove_stage", PIPELINE, "lost", ALICE, dry_run=X),
        c(ID, p + "set_movement", X, ALICE, allow_backward=False, _words=pipeline),
        c(flag(), p + "set_movement", PIPELINE, ALICE, allow_skip_forward=X),
        c(flag(), p + "set_movement", PIPELINE, ALICE, allow_backward=X),
        c(moves, p + "set_movement", PIPELINE, ALICE, allowed_moves=X, _words=("move", "stage")),
        c(ID, p + "add_column", X, "zz", ALICE, _words=pipeline),
        c(column_name, p + "add_column", PIPELINE, X, ALICE, _words=("column",)),
        c(text(), p + "add_column", PIPELINE, "zz", ALICE, label=X),
        c(kinds, p + "add_column", PIPELINE, "zz", ALICE, field_type=X, _words=("field type",)),
        c(
            options | NONE,
            p + "add_column",
            PIPELINE,
            "zz",
            ALICE,
            field_type="select",
            options=X,
            _words=("option",),
        ),
        c(flag(optional=False), p + "add_column", PIPELINE, "zz", ALICE, is_required=X),
        c(position, p + "add_column", PIPELINE, "zz", ALICE, position=X),
        c(ID, p + "edit_column", X, "tier", ALICE, label="X", _words=pipeline),
        c(column, p + "edit_column", PIPELINE, X, ALICE, label="X"),
        c(text(), p + "edit_column", PIPELINE, "tier", ALICE, label=X),
        c(options, p + "edit_column", PIPELINE, "tier", ALICE, options=X, _words=("option",)),
        c(position, p + "edit_column", PIPELINE, "tier", ALICE, position=X),
        c(flag(), p + "edit_column", PIPELINE, "tier", ALICE, is_required=X),
        c(ID, p + "deactivate_column", X, "tier", ALICE, _words=pipeline),
        c(column, p + "deactivate_column", PIPELINE, X, ALICE),
        c(ID, p + "activate_column", X, "tier", ALICE, _words=pipeline),
        c(column, p + "activate_column", PIPELINE, X, ALICE),
        c(ID, p + "require_column", X, "won", "tier", ALICE, _words=pipeline),
        c(STAGE_REF, p + "require_column", PIPELINE, X, "tier", ALICE),
        c(column, p + "require_column", PIPELINE, "won", X, ALICE),
        c(ID, p + "unrequire_column", X, "won", "tier", ALICE, _words=pipeline),
        c(STAGE_REF, p + "unrequire_column", PIPELINE, X, "tier", ALICE),
        c(column, p + "unrequire_column", PIPELINE, "won", X, ALICE),
        c(ID, p + "add_automation", X, "item_created", "e", ALICE, _words=pipeline),
        c(kinds, p + "add_automation", PIPELINE, X, "e", ALICE),
        c(text() | NONE, p + "add_automation", PIPELINE, "item_created", X, ALICE),
        c(STAGE_REF, p + "add_automation", PIPELINE, "item_created", "e", ALICE, stage=X),
        c(text(), p + "add_automation", PIPELINE, "item_created", "e", ALICE, name=X),
        c(
            not_json(),
            p + "add_automation",
            PIPELINE,
            "item_created",
            "e",
            ALICE,
            payload_template=X,
        ),
        c(
            flag(optional=False),
            p + "add_automation",
            PIPELINE,
            "item_created",
            "e",
            ALICE,
            is_active=X,
        ),
        c(ID, p + "list_automations", X, ALICE, _words=pipeline),
        c(ID, p + "edit_automation", X, ALICE, name="x", _words=("automation",)),
        c(kinds.but(lambda v: v is not None), p + "edit_automation", AUTOMATION, ALICE, trigger=X),
        c(text(), p + "edit_automation", AUTOMATION, ALICE, event_name=X),
        c(STAGE_REF, p + "edit_automation", AUTOMATION, ALICE, stage=X),
        c(text(), p + "edit_automation", AUTOMATION, ALICE, name=X),
        c(not_json(), p + "edit_automation", AUTOMATION, ALICE, payload_template=X),
        c(flag(), p + "edit_automation", AUTOMATION, ALICE, is_active=X),
        c(ID, p + "deactivate_automation", X, ALICE, _words=("automation",)),
        c(ID, p + "activate_automation", X, ALICE, _words=("automation",)),
        c(ID, p + "delete_automation", X, ALICE, _words=("automation",)),
        c(ID, p + "clone_template", X, ACCOUNT, ALICE, _words=("template", "pipeline")),
        c(ANY_ID | NONE, p + "clone_template", TEMPLATE, X, SYSTEM),
        c(text(), p + "clone_template", TEMPLATE, ACCOUNT, ALICE, X),
        c(
            stage_code | Bad(st.just("deals")),
            p + "clone_template",
            TEMPLATE,
            ACCOUNT,
            ALICE,
            code=X,
        ),
    ]


def item_cases() -> list[Case]:
    i, item = "items.", ("item",)
    column = NOT_STR | UNKNOWN_CODE | malformed(MAX_CODE)
    user = NOT_INT | WIDE | NONE
    values = Bad(
        st.one_of(
            st.integers(),
            st.lists(st.integers(), max_size=2),
            st.dictionaries(UNKNOWN_CODE.strategy, st.integers(), min_size=1, max_size=2),
            FIELD_VALUES["amount"].strategy.map(lambda v: {"title": "ok", "amount": v}),
        ),
        ("title=x", [("title", "x")], {"zz": 1}, {1: "x"}, {"hot": "yes"}),
    )
    entry_ids = sequence_of(NOT_INT | WIDE | NONE) | Bad(st.text(max_size=3), ("1,2",))
    outside = integer(0, MAX_INT, optional=False) | Bad(st.integers(1, MAX_INT), (1,))
    checklist_key = NOT_STR | UNKNOWN_CODE
    return [
        *(
            c(bad, i + "set_value", DEAL, name, X, ALICE, _words=("column",))
            for name, bad in FIELD_VALUES.items()
        ),
        c(column, i + "set_value", DEAL, X, "x", ALICE),
        c(values, i + "set_values", DEAL, X, ALICE, _words=("values", "column")),
        c(column, i + "clear_value", DEAL, X, ALICE),
        c(checklist_key, i + "complete_checklist_item", DEAL, X, ALICE, _words=("checklist",)),
        c(checklist_key, i + "reopen_checklist_item", DEAL, X, ALICE, _words=("checklist",)),
        c(NOT_INT | WIDE, i + "assign", DEAL, X, ALICE),
        c(outside, i + "reorder", DEAL, X, ALICE),
        c(user, i + "watch", DEAL, X, ALICE),
        c(user, i + "unwatch", DEAL, X, ALICE),
        c(user, i + "inbox", X, SYSTEM),
        c(flag(optional=False), i + "inbox", 1, ALICE, unread_only=X),
        c(integer(1, MAX_INBOX, optional=False), i + "inbox", 1, ALICE, limit=X),
        c(user, i + "mark_read", X, SYSTEM),
        c(entry_ids, i + "mark_read", 1, ALICE, X),
        c(ID, i + "set_value", X, "title", "x", ALICE, _words=item),
        c(ID, i + "set_values", X, {"title": "x"}, ALICE, _words=item),
        c(ID, i + "clear_value", X, "title", ALICE, _words=item),
        c(ID, i + "values", X, ALICE, _words=item),
        c(ID, i + "complete_checklist_item", X, "sent", ALICE, _words=item),
        c(ID, i + "reopen_checklist_item", X, "sent", ALICE, _words=item),
        c(ID, i + "checklist", X, ALICE, _words=item),
        c(ID, i + "assign", X, 7, ALICE, _words=item),
        c(ID, i + "reorder", X, 0, ALICE, _words=item),
        c(ID, i + "delete", X, ALICE, _words=item),
        c(ID, i + "restore", X, ALICE, _words=item),
        c(ID, i + "drop", X, ALICE, _words=item),
        c(ID, i + "watch", X, 7, ALICE, _words=item),
        c(ID, i + "unwatch", X, 1, ALICE, _words=item),
        c(ID, i + "watchers", X, ALICE, _words=item),
        c(text(MAX_OBJECT_TYPE), i + "find", X, 1, ALICE),
        c(HOST_KEY, i + "find", "deal", X, ALICE),
    ]


def query_cases() -> list[Case]:
    q, pipeline, item = "queries.", ("pipeline",), ("item",)
    size = integer(1, MAX_PAGE, optional=False)
    stage_cursor = NOT_STR | Bad(
        st.text(max_size=12).filter(lambda s: not re.fullmatch(r"-?[0-9]+:-?[0-9]+", s)),
        ("", "1", "a:b", "1:2:3", f"{2**70}:1", "1:" + "9" * 30),
    )
    board_cursor = NOT_STR | Bad(
        st.text(max_size=16).filter(lambda s: not re.fullmatch(r"[-0-9:;]*", s)),
        ("", "1:2", "1:a:b", f"1:{2**70}:1", "1:1:1;"),
    )
    calls_cursor = NOT_STR | Bad(
        st.text(max_size=16).filter(lambda s: s.count("|") != 2),
        ("", "x", "soon|2|1", "2026-01-01T00:00:00|9|1", "2026-01-01T00:00:00|2|abc"),
    )
    number = NOT_STR | UNKNOWN_CODE | Bad(st.sampled_from(["title", "tier"]), ("title",))
    period = (
        OTHER
        | BOOLS
        | Bad(
            st.text(max_size=8).filter(lambda s: s not in ("week", "month", "quarter")),
            ("year", "", "Month"),
        )
    )
    idle = (
        OTHER
        | Bad(
            st.one_of(
                st.integers(max_value=-1), st.dictionaries(st.text(max_size=4), st.integers())
            ),
            (-1, True, "7", {"zz": 1}, {"lead": -1}, {"won": 3}, {"lead": True}, 10**6),
        )
    ).but(lambda v: v != {})  # {}: no stage has a threshold
    return [
        c(ID, q + "board", X, ALICE, _words=pipeline),
        c(size, q + "board", PIPELINE, ALICE, per_stage=X),
        c(integer(0, MAX_INT, optional=False), q + "board", PIPELINE, ALICE, page=X),
        c(board_cursor, q + "board", PIPELINE, ALICE, cursor=X),
        c(number, q + "board", PIPELINE, ALICE, value_column=X, _words=("column",)),
        c(ID, q + "stage_items", X, "lead", ALICE, _words=pipeline),
        c(STAGE_REF, q + "stage_items", PIPELINE, X, ALICE),
        c(size, q + "stage_items", PIPELINE, "lead", ALICE, limit=X),
        c(stage_cursor, q + "stage_items", PIPELINE, "lead", ALICE, cursor=X),
        c(number, q + "stage_items", PIPELINE, "lead", ALICE, value_column=X, _words=("column",)),
        c(ID, q + "item_history", X, ALICE, _words=item),
        c(ID, q + "calls", X, ALICE, _words=item),
        c(size, q + "calls", DEAL, ALICE, limit=X),
        c(calls_cursor, q + "calls", DEAL, ALICE, cursor=X),
        c(ID, q + "time_in_stage", X, ALICE, _words=item),
        c(moment(), q + "time_in_stage", DEAL, ALICE, X),
        c(text(MAX_OBJECT_TYPE), q + "pipelines_of", X, 1, ALICE),
        c(HOST_KEY, q + "pipelines_of", "deal", X, ALICE),
        c(ID, q + "conversion", X, "lead", "won", ALICE, _words=pipeline),
        c(STAGE_REF, q + "conversion", PIPELINE, X, "won", ALICE, _words=("stage",)),
        c(STAGE_REF, q + "conversion", PIPELINE, "lead", X, ALICE, _words=("stage",)),
        c(ID, q + "items_at", X, "lead", NOW, ALICE, _words=pipeline),
        c(STAGE_REF, q + "items_at", PIPELINE, X, NOW, ALICE, _words=("stage",)),
        c(moment(), q + "items_at", PIPELINE, "lead", X, ALICE),
        c(size, q + "items_at", PIPELINE, "lead", NOW, ALICE, limit=X),
        c(ANY_ID, q + "items_at", PIPELINE, "lead", NOW, ALICE, after=X),
        c(ID, q + "stage_times", X, ALICE, _words=pipeline),
        c(moment(), q + "stage_times", PIPELINE, ALICE, X),
        c(past(), q + "board", PIPELINE, ALICE, as_of=X),
        c(past(), q + "stage_items", PIPELINE, "lead", ALICE, as_of=X),
        c(ID, q + "forecast", X, ALICE, _words=pipeline),
        c(number, q + "forecast", PIPELINE, ALICE, close_column=X, _words=("column",)),
        c(number, q + "forecast", PIPELINE, ALICE, value_column=X, _words=("column",)),
        c(period, q + "forecast", PIPELINE, ALICE, period=X),
        c(idle, q + "forecast", PIPELINE, ALICE, idle_days=X),
        c(past(), q + "forecast", PIPELINE, ALICE, as_of=X),
        c(text(), q + "events", ALICE, event_name=X),
        c(NOT_INT | WIDE | UNKNOWN_ID, q + "events", ALICE, item_id=X, _words=item),
        c(size, q + "events", ALICE, limit=X),
    ]


def worker_cases() -> list[Case]:
    """The SLA scan and event delivery with its dead letters."""
    seconds = Bad(
        st.one_of(st.floats(max_value=0), st.text(max_size=3), st.booleans(), st.none()),
        (0, -1, math.nan, "1", True, None),
    )
    positive = NOT_INT | WIDE | Bad(st.integers(max_value=0), (0, -1))
    runs = NOT_INT | Bad(st.integers(max_value=0), (0,))
    event_ids = sequence_of(NOT_STR) | Bad(
        st.lists(UNKNOWN_CODE.strategy, min_size=1, max_size=2), ("abc", ["zz"], ["a\x00"])
    )
    name = NOT_STR | Bad(st.just("a\x00"), ("a\x00", "\ud800"))  # any other text filters
    outbox_ids = sequence_of(NOT_INT | WIDE | NONE) | Bad(st.text(max_size=3), ("1",))
    return [
        c(ANY_ID, "sla.scan", pipeline_id=X),
        c(moment(), "sla.scan", now=X),
        c(integer(1, MAX_ID, optional=False), "sla.scan", limit=X),
        c(integer(1, MAX_BATCH, optional=False), "sla.scan", batch_size=X),
        c(ANY_ID, "sla.plan", pipeline_id=X),
        c(moment(), "sla.plan", now=X),
        c(seconds, "sla.run_forever", X, max_runs=1),
        c(runs, "sla.run_forever", 1, max_runs=X),
        c(ANY_ID, "sla.run_forever", 1, pipeline_id=X, max_runs=1),
        c(positive, "delivery.dead_letters", SYSTEM, item_id=X),
        c(name, "delivery.dead_letters", SYSTEM, event_name=X),
        c(positive | NONE, "delivery.dead_letters", SYSTEM, limit=X),
        c(event_ids, "delivery.retry_dead", SYSTEM, X, _words=("event",)),
        c(positive, "delivery.retry_dead", SYSTEM, item_id=X),
        c(outbox_ids, "delivery.deliver", X),
        c(positive | NONE, "delivery.deliver", limit=X),
        c(seconds.but(lambda v: v != 0), "delivery.run_forever", X, max_runs=1),
    ]


def document_cases() -> list[Case]:
    fmt = NOT_STR | Bad(st.sampled_from(["xml", "YAML", "toml"]), ("xml",))
    where = ("document", "class", "states", "methods", "access", "events", "actions", "label")
    where += ("abstract", "name", "code", "columns", "movement", "automations", "is_", "system")
    where += ("stage",)
    return [
        c(DOCUMENT_TEXT, "documents.loads", X, _words=("document",)),
        c(fmt, "documents.loads", "class: x", X),
        c(fmt, "documents.dumps", {"class": "x"}, X),
        c(class_documents(), "documents.load_class", FK, X, _words=where),
        c(ANY_ID, "documents.load_class", FK, {"class": "zz"}, X),
        c(sequence_of(class_documents()), "documents.apply", FK, X, _words=where),
        c(ANY_ID, "documents.apply", FK, [{"class": "zz"}], account_id=X),
        c(flag(), "documents.apply", FK, [], dry_run=X),
        c(REF, "documents.dump_class", FK, X, _words=("class",)),
        c(ANY_ID, "documents.dump_class", FK, "lamp", X),
        c(DOCUMENT_TEXT, "documents.parse_pipeline_text", X, _words=("document",)),
        c(fmt, "documents.parse_pipeline_text", "name: x", X),
        c(pipeline_documents(), "documents.load_pipeline", FK, X, ALICE, _words=where),
        c(ANY_ID, "documents.load_pipeline", FK, {"name": "Zz"}, SYSTEM, account_id=X),
    ]


# --- running the cases -----------------------------------------------------------------------


def _checker(world: World, case: Case) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        try:
            result = case.call.run(world, value)
        except FlowkernelError as exc:
            message = str(exc).lower()
            assert message, f"{case.name} raised {type(exc).__name__} without a message"
            assert any(word in message for word in case.words), (
                f"{case.name}: {type(exc).__name__} {str(exc)!r:.300} names none of {case.words}"
            )
        except Exception as exc:
            raise AssertionError(
                f"{case.name} raised {type(exc).__name__}, not a FlowkernelError"
            ) from exc
        else:
            raise AssertionError(f"{case.name} accepted {value!r:.200}: {result!r:.200}")

    return check


def run(world: World, cases: list[Case]) -> None:
    """Each case with its fixed bad values and `EXAMPLES` random ones, then the database as it
    was before the case (compared per case, not per call: a snapshot costs more than a call).
    Every failing case is reported."""
    failures = []
    for case in cases:
        before = snapshot(world.fk)
        test = given(case.bad.strategy)(_checker(world, case))
        for value in case.bad.fixed:
            test = example(value)(test)
        try:
            settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                report_multiple_bugs=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            )(test)()
        except Exception as exc:
            notes = " ".join(getattr(exc, "__notes__", []))
            failures.append(f"{exc} [{' '.join(notes.split())[:300]}]")
        if snapshot(world.fk) != before:
            failures.append(f"{case.name} changed the database")
    assert not failures, "\n".join(failures)


ALL_CASES = (
    facade_cases,
    definition_cases,
    pipeline_cases,
    item_cases,
    query_cases,
    worker_cases,
    document_cases,
)


@pytest.mark.parametrize("cases", ALL_CASES, ids=lambda f: f.__name__.removesuffix("_cases"))
def test_bad_input_is_refused_with_a_typed_error_and_changes_nothing(
    world: World, cases: Callable[[], list[Case]]
) -> None:
    run(world, cases())


# --- every public operation has its cases ----------------------------------------------------

NO_ARGUMENTS_TO_GET_WRONG = {
    "close", "upgrade", "register_plugin", "definitions.list_actions", "delivery.after_commit",
    "definitions.transaction",
}  # fmt: skip
"""Calls without caller data: lifecycle, plugin registration, the whole action catalogue, an
authoring transaction, and the hook the engine itself calls after each commit."""


def public_operations() -> set[str]:
    """Public methods of the facade and of its APIs, named as the cases name them."""
    names = {n for n, _ in inspect.getmembers(Flowkernel, inspect.isfunction) if n[0] != "_"}
    for prefix, api in API_CLASSES.items():
        names |= {
            f"{prefix}.{n}"
            for n, _ in inspect.getmembers(api, inspect.isfunction)
            if n[0] != "_" and n != "class_row"  # class_row works in the caller's Session
        }
    return names


def test_a_value_too_deep_for_repr_is_shown_by_its_type(world: World) -> None:
    fk = world.fk
    for deep in DEEP:
        with pytest.raises(InvalidArgument) as refused:
            fk.compiled(deep)
        assert f"<{type(deep).__name__}>" in refused.value.message
        assert len(refused.value.message) < 200
    assert preview("x" * 1_000) == "'" + "x" * 79 + "... (1002 characters)"
    assert preview([1, "a"]) == "[1, 'a']"


def test_every_public_operation_has_bad_input_cases() -> None:
    covered = {case.operation for cases in ALL_CASES for case in cases()}
    missing = public_operations() - covered - NO_ARGUMENTS_TO_GET_WRONG
    assert not missing, f"public operations without bad-input cases: {sorted(missing)}"


# --- no SQL from strings -----------------------------------------------------------------------

SQL_CALLS = {"text", "execute", "exec_driver_sql", "literal_column", "from_statement"}
"""Calls that would run a string as SQL."""


def _built_string(node: ast.expr) -> bool:
    """Whether `node` builds a string at run time: an f-string, `+` or `%` on strings, `.format`."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return (
            any(
                isinstance(s, ast.Constant) and isinstance(s.value, str)
                for s in (node.left, node.right)
            )
            or _built_string(node.left)
            or _built_string(node.right)
        )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in ("format", "join")
    return False


def test_no_sql_is_built_from_strings() -> None:
    """In the engine and the plugins, no statement is a string put together at run time: every
    value a caller gives travels as a bound parameter."""
    root = Path(__file__).resolve().parent.parent
    found = []
    for path in sorted(
        [*root.joinpath("engine").rglob("*.py"), *root.joinpath("plugins").rglob("*.py")]
    ):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = (
                node.func.attr
                if isinstance(node.func, ast.Attribute)
                else getattr(node.func, "id", "")
            )
            if name in SQL_CALLS and _built_string(node.args[0]):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not found, f"SQL built from strings at {found}"
