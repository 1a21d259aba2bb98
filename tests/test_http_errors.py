"""Errors over HTTP: one JSON shape, a status per error family, malformed requests refused
before they reach the engine, and the OpenAPI document that describes it all."""

from __future__ import annotations

import inspect
from typing import Any

import httpx
import pytest
from http_fixtures import World, api, serve, world

import flowkernel.errors
from flowkernel import SYSTEM, Flowkernel, FlowkernelError, RequirementMissing
from flowkernel.documents.class_spec import (
    ACCESS_KEYS,
    ACTION_KEYS,
    CLASS_KEYS,
    EVENT_KEYS,
    METHOD_KEYS,
    STATE_KEYS,
    TRANSITION_KEYS,
)
from flowkernel.documents.pipelines import (
    AUTOMATION_KEYS,
    COLUMN_KEYS,
    MOVEMENT_KEYS,
    PIPELINE_KEYS,
    STAGE_KEYS,
)
from flowkernel.http import create_app
from flowkernel.http.errors import STATUS, details_of, status_of

__all__ = ["api", "world"]

ERRORS = [
    cls
    for _name, cls in inspect.getmembers(flowkernel.errors, inspect.isclass)
    if issubclass(cls, FlowkernelError)
]

EXPECTED = {
    "invalid_token": 401,
    "access_denied": 403,
    "item_not_found": 404,
    "unknown_definition": 404,
    "event_not_found": 404,
    "concurrent_update": 409,
    "object_already_placed": 409,
    "duplicate_code": 409,
    "definition_in_use": 409,
    "stage_not_empty": 409,
    "idempotency_key_reused": 409,
    "stage_requirement_missing": 422,
    "checklist_incomplete": 422,
    "move_not_allowed": 422,
    "method_not_available": 422,
    "handler_failed": 422,
    "invalid_argument": 422,
    "invalid_value": 422,
    "item_deleted": 422,
    "item_not_deleted": 422,
    "column_inactive": 422,
    "invalid_document": 400,
    "invalid_definition": 400,
    "duplicate_transition": 400,
    "foreign_reference": 400,
    "unknown_handler": 400,
    "abstract_class": 400,
    "database_unreachable": 503,
    "database_not_migrated": 503,
    "graphviz_unavailable": 503,
}


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_every_error_class_has_a_status(cls: type[FlowkernelError]) -> None:
    error = cls.__new__(cls)
    Exception.__init__(error, "refused")
    error.message = "refused"
    status = status_of(error)
    if cls.code in EXPECTED:
        assert status == EXPECTED[cls.code]
    elif issubclass(cls, flowkernel.errors.DatabaseError):
        assert status == 503
    elif issubclass(cls, flowkernel.errors.ExecutionError | flowkernel.errors.DefinitionError):
        assert 400 <= status < 500
    else:  # neither a request's fault nor the database's: a server error
        assert status == 500
    assert set(EXPECTED) - {c.code for c in ERRORS} == set()
    assert all(isinstance(k, type) for k in STATUS)


def test_details_name_the_missing_fields() -> None:
    error = RequirementMissing("proposal", [("close_date", "Expected Close")])
    assert details_of(error) == {
        "stage": "proposal",
        "missing": [{"column": "close_date", "label": "Expected Close"}],
    }


def test_malformed_requests_are_refused_with_the_error_shape(world: World) -> None:
    fk = world.api.fk
    client = world.system
    deal = world.deal
    for method, path, kwargs in (
        (
            "POST",
            "/v1/items",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
        ),
        ("POST", "/v1/items", {"json": {"class": "station"}}),
        (
            "POST",
            "/v1/items",
            {"json": {"class": "station", "object_type": "x", "object_id": 2**64}},
        ),
        ("POST", "/v1/items", {"json": {"class": "", "object_type": "x", "object_id": 1}}),
        ("POST", f"/v1/items/{deal}/move", {"json": {}}),
        ("POST", f"/v1/items/{deal}/move", {"json": {"stage": None}}),
        ("POST", f"/v1/items/{deal}/methods/move_to_won", {"json": {"params": [1, 2]}}),
        ("POST", f"/v1/items/{deal}/methods/move_to_won", {"json": {"idempotency_key": ""}}),
        ("POST", f"/v1/items/{deal}/methods/{'m' * 129}", {}),
        ("GET", "/v1/items/0", {}),
        ("GET", f"/v1/items/{2**63}", {}),
        ("GET", "/v1/items/abc", {}),
        ("PATCH", f"/v1/items/{deal}/values", {"json": {"values": {}}}),
        ("PATCH", f"/v1/items/{deal}/values", {"json": {"values": "amount=1"}}),
        ("PUT", f"/v1/items/{deal}/checklist/proposal_sent", {"json": {"completed": "maybe"}}),
        ("PUT", f"/v1/items/{deal}/watchers/-3", {}),
        ("GET", f"/v1/pipelines/{world.sales}/board", {"params": {"per_stage": 0}}),
        ("GET", f"/v1/pipelines/{world.sales}/funnel", {"params": {"from_stage": "lead"}}),
        ("GET", "/v1/classes", {"params": {"account_id": "one"}}),
        # values of another JSON type than the field's, and keys the body does not have
        ("POST", "/v1/batches", {"json": {"executions": [], "by_action": "yes"}}),
        ("POST", "/v1/batches", {"json": {"executions": [{"item_id": "3", "method": "x"}]}}),
        ("POST", "/v1/batches", {"json": {"executions": [], "on_eror": "skip"}}),
        (
            "POST",
            "/v1/items",
            {"json": {"class": "station", "object_type": "x", "object_id": True}},
        ),
        ("POST", "/v1/items", {"json": {"class": "station", "object_type": "x", "object_id": ""}}),
        ("POST", "/v1/items", {"json": {"class": "station", "object_type": "x", "object_id": 5.0}}),
        (
            "POST",
            "/v1/items",
            {"json": {"class": "station", "object_type": "x", "object_id": 5, "stat": "x"}},
        ),
        ("PUT", f"/v1/items/{deal}/checklist/proposal_sent", {"json": {"completed": "yes"}}),
        ("PUT", f"/v1/items/{deal}/checklist/proposal_sent", {"json": {"completed": 1}}),
        ("POST", f"/v1/items/{deal}/move", {"json": {"stage": "won", "force": True}}),
        ("POST", f"/v1/items/{deal}/methods/move_to_won", {"json": {"idempotency_key": 7}}),
    ):
        response = client.request(method, path, **kwargs)
        assert response.status_code == 422, (method, path, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_request", (path, error)
        assert error["details"]["problems"] and "openapi" in error["message"]
    assert fk.item(deal, SYSTEM).state == "lead"
    assert len(fk.history(deal, SYSTEM)) == 1


def test_body_problems_say_what_to_send(world: World) -> None:
    deal = world.deal
    broken = world.system.post(
        f"/v1/items/{deal}/move",
        content=b'{"stage":',
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 422
    [problem] = broken.json()["error"]["details"]["problems"]
    assert problem["location"] == ["body"]
    assert problem["problem"] == "the body is not valid JSON (at character 9)"
    as_form = world.system.post(
        f"/v1/items/{deal}/move",
        content=b'{"stage": "won"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert as_form.status_code == 422
    assert "Content-Type: application/json" in as_form.json()["error"]["message"]
    assert world.api.fk.item(deal, SYSTEM).state == "lead"


def test_unknown_routes_and_methods(world: World) -> None:
    missing = world.user.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = world.user.delete(f"/v1/items/{world.deal}")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert wrong.headers["allow"] == "GET, OPTIONS"
    # OPTIONS answers with every method of the path, whichever route serves it
    for path, allowed in (
        ("/v1/classes", "GET, OPTIONS, POST"),
        (f"/v1/items/{world.deal}", "GET, OPTIONS"),
        ("/v1/items", "GET, OPTIONS, POST"),
        (f"/v1/items/{world.deal}/watchers/3", "DELETE, OPTIONS, PUT"),
    ):
        options = world.user.options(path)
        assert options.status_code == 204, (path, options.text)
        assert options.headers["allow"] == allowed, path
        assert options.content == b""
    assert world.user.options("/v1/nothing-here").status_code == 404
    patched = world.user.patch("/v1/classes")
    assert patched.status_code == 405 and patched.headers["allow"] == "GET, OPTIONS, POST"


def test_values_the_database_refuses_are_not_server_errors(world: World) -> None:
    # PostgreSQL refuses NUL characters in text; SQLite stores them
    placed = world.system.post(
        "/v1/items",
        json={"class": "station", "object_type": "a\u0000b", "object_id": 77},
    )
    assert placed.status_code in (201, 422), placed.text
    if placed.status_code == 422:
        assert placed.json()["error"]["code"] == "invalid_argument"
    beat = world.system.post(
        f"/v1/items/{world.station}/methods/heartbeat",
        json={"params": {"status": "ok\u0000"}},
    )
    assert beat.status_code in (200, 422), beat.text
    failed = world.system.post(
        f"/v1/items/{world.station}/methods/heartbeat", json={"params": {"status": 3}}
    )
    assert failed.status_code == 422 and failed.json()["error"]["code"] == "handler_failed"


def test_the_openapi_document(world: World) -> None:
    with world.api.client() as anonymous:
        document = anonymous.get("/openapi.json").json()
        assert anonymous.get("/docs").status_code == 200
    assert document["info"]["title"] == "Flowkernel"
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    operations = [
        (path, method, op)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]
    assert len(operations) >= 30
    for path, _method, op in operations:
        if path == "/v1/health":
            assert "security" not in op
            continue
        assert op["security"] == [{"HTTPBearer": []}], path
        assert "401" in op["responses"] and "403" in op["responses"], path
    refused = document["paths"]["/v1/items/{item_id}/move"]["post"]["responses"]["422"]
    assert refused["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    for path, _method, op in operations:
        assert {"400", "422", "503"} <= set(op["responses"]), path

    # request bodies refuse unknown keys, and the documents are described key by key
    schemas = document["components"]["schemas"]
    for name in ("PlaceIn", "ExecuteIn", "MoveIn", "BatchIn", "ChecklistIn", "ValuesIn"):
        assert schemas[name]["additionalProperties"] is False, name

    def body_of(path: str) -> dict[str, Any]:
        content = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        schema: dict[str, Any] = content["schema"]
        assert "example" in content
        return schema

    def keys(schema: dict[str, Any], *at: str) -> set[str]:
        for key in at:
            node = schema["properties"][key]
            node = next((o for o in node.get("anyOf", [node]) if o.get("type") != "null"), node)
            schema = node.get("items", node)
        assert schema["additionalProperties"] is False, at
        return set(schema["properties"])

    klass = body_of("/v1/classes")
    assert klass["required"] == ["class"]
    assert keys(klass) == set(CLASS_KEYS)
    for key, expected in (
        ("actions", ACTION_KEYS),
        ("states", STATE_KEYS),
        ("methods", METHOD_KEYS),
        ("transitions", TRANSITION_KEYS),
        ("events", EVENT_KEYS),
        ("access", ACCESS_KEYS),
    ):
        assert keys(klass, key) == set(expected), key
    pipeline = body_of("/v1/pipelines")
    assert pipeline["required"] == ["name"]
    assert keys(pipeline) == set(PIPELINE_KEYS)
    for key, expected in (
        ("stages", STAGE_KEYS),
        ("columns", COLUMN_KEYS),
        ("automations", AUTOMATION_KEYS),
        ("movement", MOVEMENT_KEYS),
    ):
        assert keys(pipeline, key) == set(expected), key
    assert keys(pipeline, "stages", "checklist") == {"key", "label", "required"}


def test_an_unreachable_database_is_503() -> None:
    dead = Flowkernel("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    try:
        with serve(create_app(dead)) as url, httpx.Client(base_url=url) as client:
            health = client.get("/v1/health")
            assert health.status_code == 503
            assert health.json()["error"]["code"] == "database_unreachable"
            token = {"Authorization": "Bearer fk_00000000_" + "a" * 43}
            assert client.get("/v1/me", headers=token).status_code == 503
    finally:
        dead.close()
