"""Field types: valid values round-trip, invalid values are refused, on the DB too."""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from flowkernel import Actor, Flowkernel, InvalidValue, UnknownDefinition
from flowkernel.fields import (
    FIELD_TYPES,
    MAX_NUMBER_DIGITS,
    MAX_VALUE_BYTES,
    FieldSpec,
    normalize,
    parse,
)
from flowkernel.store.tables import columns, item_values

OPTIONS = ("High", "Medium", "Low", "Urgent")
TEXT = FieldSpec("decision_maker", "text")
NUMBER = FieldSpec("contract_value", "number")
DATE = FieldSpec("close_date", "date")
BOOLEAN = FieldSpec("signed", "boolean")
SELECT = FieldSpec("priority", "select", OPTIONS)
MULTI = FieldSpec("tags", "multi_select", OPTIONS)
JSON = FieldSpec("meta", "json")
SPECS = {s.field_type: s for s in (TEXT, NUMBER, DATE, BOOLEAN, SELECT, MULTI, JSON)}
NUMERIC = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
CANONICAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?")

# --- strategies ----------------------------------------------------------------------------

texts = st.text(min_size=1, max_size=60).filter(lambda s: "\x00" not in s)
decimals = st.builds(
    lambda digits, exponent: Decimal(f"{digits}e{exponent}"),
    st.integers(-(10**40), 10**40),
    st.integers(-60, 60),
)
numbers: st.SearchStrategy[object] = st.one_of(
    st.integers(-(10**30), 10**30),
    decimals,
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**18), 10**18)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
).filter(lambda v: v is not None and not isinstance(v, str))  # a str is read as JSON text
multi_values = st.lists(st.sampled_from(OPTIONS), min_size=1, unique=True)

VALID: dict[str, st.SearchStrategy[Any]] = {
    "text": texts,
    "number": numbers,
    "date": st.dates(),
    "boolean": st.booleans(),
    "select": st.sampled_from(OPTIONS),
    "multi_select": multi_values,
    "json": json_values,
}


def _not_json(text: str) -> bool:
    try:
        json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (ValueError, RecursionError):
        return True
    return False


INVALID: dict[str, st.SearchStrategy[Any]] = {
    "text": st.one_of(st.just(""), st.integers(), st.booleans(), st.lists(texts, max_size=2)),
    "number": st.one_of(
        st.text(max_size=20).filter(lambda s: not NUMERIC.fullmatch(s)),
        st.booleans(),
        st.sampled_from([math.nan, math.inf, -math.inf, Decimal("NaN"), Decimal("-Infinity")]),
        st.sampled_from(
            ["1_000", " 1", "1e", "0x10", "1,5", "\u0661\u0662", f"1e{MAX_NUMBER_DIGITS}"]
        ),
        st.lists(st.integers(), max_size=2),
    ),
    "date": st.one_of(
        st.datetimes(),
        st.text(max_size=12).filter(lambda s: not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s)),
        st.sampled_from(["2026-02-30", "2026-13-01", "0000-01-01", "20260701", "2026-7-1"]),
        st.integers(),
    ),
    "boolean": st.one_of(
        st.integers(),
        st.text(max_size=8).filter(lambda s: s not in ("true", "false")),
        st.sampled_from(["True", "FALSE", "1", "yes"]),
    ),
    "select": st.one_of(
        st.text(max_size=10).filter(lambda s: s not in OPTIONS),
        st.sampled_from(["high", "High ", ""]),
        st.integers(),
        st.just(["High"]),
    ),
    "multi_select": st.one_of(
        st.just([]),
        st.just("[]"),
        st.lists(st.sampled_from(OPTIONS), min_size=2).filter(lambda v: len(set(v)) < len(v)),
        st.lists(st.text(max_size=6), min_size=1).filter(
            lambda v: any(x not in OPTIONS for x in v)
        ),
        st.sampled_from(["High", '"High"', '{"a": 1}', "[1]", "not json", '["High",]']),
        st.frozensets(st.sampled_from(OPTIONS), min_size=1),
    ),
    "json": st.one_of(
        st.text(max_size=20).filter(_not_json),
        st.sampled_from(["NaN", "[Infinity]", "-Infinity", "{'a': 1}", "[1,]"]),
        st.sampled_from([math.nan, [math.inf], {"a": -math.inf}, {1: "x"}, {(1,): 2}]),
        st.sets(st.integers(), min_size=1),
        st.binary(min_size=1),
    ),
}


# --- pure properties ---------------------------------------------------------------------


@pytest.mark.parametrize("field_type", FIELD_TYPES)
@given(data=st.data())
def test_valid_values_round_trip_and_normalize_is_idempotent(
    field_type: str, data: st.DataObject
) -> None:
    spec = SPECS[field_type]
    value = data.draw(VALID[field_type])
    text = normalize(spec, value)
    assert isinstance(text, str)
    assert normalize(spec, text) == text
    assert parse(spec, text) == _expected_parse(field_type, value)


def _expected_parse(field_type: str, value: Any) -> Any:
    if field_type == "number":
        # floats come back as the decimal their repr shows, which reads back as the same float
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return value


@given(numbers)
def test_numbers_store_canonical_fixed_point_text(value: object) -> None:
    text = normalize(NUMBER, value)
    assert CANONICAL.fullmatch(text)
    assert text != "-0"
    if isinstance(value, float):
        assert float(parse(NUMBER, text)) == value
    else:
        assert parse(NUMBER, text) == value


@given(decimals)
def test_numeric_strings_normalize_like_their_numbers(value: Decimal) -> None:
    assert normalize(NUMBER, str(value)) == normalize(NUMBER, value)
    assert normalize(NUMBER, format(value, "f")) == normalize(NUMBER, value)


def test_number_examples() -> None:
    assert normalize(NUMBER, 42500) == "42500"
    assert normalize(NUMBER, "42500") == "42500"
    assert normalize(NUMBER, "4.25e4") == "42500"
    assert normalize(NUMBER, Decimal("1.50")) == "1.5"
    assert normalize(NUMBER, 0.1) == "0.1"
    assert normalize(NUMBER, -0.0) == "0"
    assert normalize(NUMBER, "-0.000") == "0"
    assert normalize(NUMBER, ".5") == "0.5"
    assert parse(NUMBER, "42500") == Decimal(42500)


@given(st.dates())
def test_dates_accept_date_and_iso_text(value: date) -> None:
    assert normalize(DATE, value) == value.isoformat()
    assert normalize(DATE, value.isoformat()) == value.isoformat()
    assert parse(DATE, value.isoformat()) == value


def test_boolean_select_and_multi_select_examples() -> None:
    assert normalize(BOOLEAN, True) == "true"
    assert normalize(BOOLEAN, "false") == "false"
    assert parse(BOOLEAN, "false") is False
    assert normalize(SELECT, "High") == "High"
    assert normalize(MULTI, ["High", "Urgent"]) == '["High","Urgent"]'
    assert normalize(MULTI, ("Low",)) == '["Low"]'
    assert normalize(MULTI, '[ "High" , "Urgent" ]') == '["High","Urgent"]'
    assert parse(MULTI, '["High","Urgent"]') == ["High", "Urgent"]


@given(json_values)
def test_json_text_and_value_normalize_alike(value: Any) -> None:
    assert normalize(JSON, json.dumps(value, indent=2)) == normalize(JSON, value)
    assert parse(JSON, normalize(JSON, value)) == value


def test_json_examples() -> None:
    assert normalize(JSON, {"a": [1, 2.5, None]}) == '{"a":[1,2.5,null]}'
    assert normalize(JSON, '{"a": 1}') == '{"a":1}'
    assert normalize(JSON, "null") == "null"
    assert normalize(JSON, '"hello"') == '"hello"'
    assert normalize(JSON, ("x", 1)) == '["x",1]'
    assert normalize(JSON, {"ünï": "cödé"}) == '{"ünï":"cödé"}'
    assert parse(JSON, '"hello"') == "hello"


@pytest.mark.parametrize("field_type", FIELD_TYPES)
@given(data=st.data())
def test_invalid_values_are_refused_naming_the_format(field_type: str, data: st.DataObject) -> None:
    spec = SPECS[field_type]
    value = data.draw(INVALID[field_type])
    with pytest.raises(InvalidValue) as refused:
        normalize(spec, value)
    assert refused.value.column == spec.name
    assert refused.value.expected
    assert refused.value.expected in str(refused.value)


@pytest.mark.parametrize("field_type", FIELD_TYPES)
def test_none_is_refused_with_a_hint_to_clear(field_type: str) -> None:
    with pytest.raises(InvalidValue, match="clear the value"):
        normalize(SPECS[field_type], None)


def test_expected_formats_are_named() -> None:
    cases = {
        NUMBER: "finite number",
        DATE: "ISO 8601 date",
        BOOLEAN: "true or false",
        SELECT: "one of the options: High, Medium, Low, Urgent",
        MULTI: "distinct options",
        JSON: "valid JSON",
        TEXT: "non-empty string",
    }
    for spec, words in cases.items():
        with pytest.raises(InvalidValue) as refused:
            normalize(spec, object())
        assert words in refused.value.expected


def test_select_without_options_refuses_everything() -> None:
    bare = FieldSpec("kind", "select")
    with pytest.raises(InvalidValue, match="no options"):
        normalize(bare, "anything")


def test_unknown_field_type_is_a_definition_error() -> None:
    with pytest.raises(UnknownDefinition) as refused:
        normalize(FieldSpec("colour", "color"), "red")
    assert refused.value.known == FIELD_TYPES


def test_size_limit() -> None:
    assert normalize(TEXT, "x" * MAX_VALUE_BYTES) == "x" * MAX_VALUE_BYTES
    with pytest.raises(InvalidValue, match=f"at most {MAX_VALUE_BYTES} bytes"):
        normalize(TEXT, "x" * (MAX_VALUE_BYTES + 1))
    # the limit counts UTF-8 bytes, not characters
    with pytest.raises(InvalidValue, match="bytes"):
        normalize(TEXT, "é" * (MAX_VALUE_BYTES // 2 + 1))
    with pytest.raises(InvalidValue, match="bytes"):
        normalize(JSON, {"k": "x" * MAX_VALUE_BYTES})
    with pytest.raises(InvalidValue):
        normalize(NUMBER, "1" * (MAX_NUMBER_DIGITS + 1))
    with pytest.raises(InvalidValue):
        normalize(NUMBER, "0." + "0" * MAX_NUMBER_DIGITS + "1")
    with pytest.raises(InvalidValue):
        normalize(NUMBER, "1e999999999")  # refused before it is expanded
    assert len(normalize(NUMBER, "9" * MAX_NUMBER_DIGITS)) == MAX_NUMBER_DIGITS


def test_text_a_database_cannot_hold_is_refused() -> None:
    with pytest.raises(InvalidValue, match="NUL"):
        normalize(TEXT, "a\x00b")
    with pytest.raises(InvalidValue, match="UTF-8"):
        normalize(TEXT, "\ud800")
    with pytest.raises(InvalidValue, match="UTF-8"):
        normalize(JSON, '"\\ud800"')
    assert parse(JSON, normalize(JSON, ["a\x00b"])) == ["a\x00b"]  # escaped in JSON text
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(InvalidValue):
        normalize(JSON, cycle)
    with pytest.raises(InvalidValue):
        normalize(JSON, "[" * 50_000 + "]" * 50_000)


def test_parse_refuses_text_that_does_not_fit() -> None:
    for spec, text in [(NUMBER, "abc"), (DATE, "2026-02-30"), (BOOLEAN, "yes"), (SELECT, "x")]:
        with pytest.raises(InvalidValue):
            parse(spec, text)


# --- on the database ------------------------------------------------------------------------

ACCOUNT = 10


def _pipeline_with_every_type(fk: Flowkernel) -> tuple[int, dict[str, int]]:
    """A pipeline with one column per field type and one item; the item id and column ids."""
    info = fk.definitions.add_class("typed", "Typed", movement="free", account_id=ACCOUNT)
    fk.definitions.add_state("typed", "enabled", "open", "Open", account_id=ACCOUNT)
    ids: dict[str, int] = {}
    with fk.engine.begin() as conn:
        for position, spec in enumerate(SPECS.values()):
            ids[spec.field_type] = conn.execute(
                insert(columns)
                .values(
                    flow_pipeline_id=info.id,
                    name=spec.name,
                    label=spec.name.replace("_", " ").title(),
                    field_type=spec.field_type,
                    position=position,
                    options=list(spec.options) or None,
                )
                .returning(columns.c.id)
            ).scalar_one()
    item = fk.place("typed", "crm_opportunity", 1, Actor.user(1, ACCOUNT))
    return item.id, ids


def _stored(fk: Flowkernel, item_id: int) -> dict[int, tuple[str | None, datetime]]:
    with fk.engine.connect() as conn:
        return {
            r.flow_column_id: (r.value, r.updated_at)
            for r in conn.execute(select(item_values).where(item_values.c.flow_item_id == item_id))
        }


@pytest.mark.parametrize("field_type", FIELD_TYPES)
def test_valid_values_round_trip_through_the_database(fk: Flowkernel, field_type: str) -> None:
    item_id, ids = _pipeline_with_every_type(fk)
    spec = SPECS[field_type]
    actor = Actor.user(1, ACCOUNT)

    @settings(max_examples=15, deadline=None)
    @given(value=VALID[field_type])
    def check(value: Any) -> None:
        written = fk.items.set_value(item_id, spec.name, value, actor)
        assert written.value == normalize(spec, value)
        assert _stored(fk, item_id)[ids[field_type]][0] == written.value
        read = {v.name: v for v in fk.items.values(item_id, actor)}[spec.name]
        assert read.value == written.value
        assert read.valid
        assert read.parsed == parse(spec, written.value) == _expected_parse(field_type, value)

    check()


@pytest.mark.parametrize("field_type", FIELD_TYPES)
def test_invalid_values_change_nothing_in_the_database(fk: Flowkernel, field_type: str) -> None:
    item_id, ids = _pipeline_with_every_type(fk)
    spec = SPECS[field_type]
    actor = Actor.user(1, ACCOUNT)
    seed = {
        "text": "Ada",
        "number": 42500,
        "date": date(2026, 7, 1),
        "boolean": True,
        "select": "High",
        "multi_select": ["High", "Urgent"],
        "json": {"a": 1},
    }
    fk.items.set_values(item_id, {SPECS[t].name: v for t, v in seed.items()}, actor)
    before = _stored(fk, item_id)

    @settings(max_examples=15, deadline=None)
    @given(value=INVALID[field_type])
    def check(value: Any) -> None:
        with pytest.raises(InvalidValue):
            fk.items.set_value(item_id, spec.name, value, actor)
        with pytest.raises(InvalidValue):  # together with a valid value: neither is written
            fk.items.set_values(item_id, {TEXT.name: "Grace", spec.name: value}, actor)
        assert _stored(fk, item_id) == before

    check()
    assert _stored(fk, item_id)[ids[field_type]] == before[ids[field_type]]
