"""The auditor may read everything and write nothing: every write route of the store
service, enumerated from its own /openapi.json (so routes added later are covered without
touching this test), called by the auditor with a body that passes validation, answers 403,
and the audit head and every table's row count stay as they were. Read routes called by the
auditor change nothing either. Directly and through the dashboard gateway."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hilt.pipelines.store.authentication import PROXY_SECRET_HEADER
from hilt.pipelines.store.modes.client import ON_BEHALF_HEADER
from hilt.pipelines.workspace import Workspace
from tests.conftest import (
    PROXY_SECRET,
    TEST_MODEL,
    RunningService,
    issue_tokens,
    operator,
    stand_in,
    start_service,
)

WRITE_METHODS = ("post", "put", "patch", "delete")
#: Strings that satisfy patterns used in the API (anything else gets "x").
PATTERN_EXAMPLES = {r"^[0-9a-f]{64}$": "0" * 64}


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def example(schema: dict[str, Any], spec: dict[str, Any], case_id: str) -> Any:
    """A minimal value that the schema accepts: required fields only, smallest sizes."""
    schema = _resolve(schema, spec)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(s, spec).get("type") != "null"]
            return example(options[0] if options else schema[key][0], spec, case_id)
    if "allOf" in schema:
        return example(schema["allOf"][0], spec, case_id)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "string":
        pattern = schema.get("pattern")
        if pattern:
            return PATTERN_EXAMPLES.get(pattern, "x")
        return case_id if schema.get("maxLength", 128) >= len(case_id) else "x"
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
        return max(int(low), 1)
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return True
    if kind == "array":
        return [example(schema.get("items", {}), spec, case_id)] * max(1, schema.get("minItems", 1))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: example(props[name], spec, case_id) for name in schema.get("required", [])}
    return "x"


def request_for(
    path: str, op: dict[str, Any], spec: dict[str, Any], case_id: str
) -> tuple[str, dict[str, Any], Any]:
    """(URL path, query params, JSON body or None) for one operation of the spec."""
    params: dict[str, Any] = {}
    url = path
    for p in op.get("parameters", []):
        value = example(p.get("schema", {}), spec, case_id)
        if p["in"] == "path":
            url = re.sub(r"\{" + re.escape(p["name"]) + r"(:[^}]*)?\}", str(value), url)
        elif p["in"] == "query" and p.get("required"):
            params[p["name"]] = value
    body = None
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        body = example(content["application/json"]["schema"], spec, case_id)
    return url, params, body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningService, str]]:
    """A served workspace with cases, predictions and one decision; tokens for every user
    of the config (otto: auditor) and a gateway token."""
    import polars as pl

    from hilt.pipelines.store import DecisionRequest, Identity, open_store_as
    from hilt.pipelines.store.create import create_workspace
    from tests.conftest import CSV, predictions_for, proxied_config

    root = tmp_path_factory.mktemp("auditor-403")
    ws = Workspace.at(root / "ws")
    create_workspace(ws, proxied_config(root))  # the gateway acts for otto behind a proxy
    cases = pl.read_csv(CSV, infer_schema=False).head(20)
    operator(ws).ingest_cases(cases)
    stand_in(ws)
    operator(ws).add_predictions(TEST_MODEL.model, predictions_for(cases), TEST_MODEL.sha256)
    alice = open_store_as(ws, Identity(name="alice"))
    leased = alice.next_case()
    assert leased is not None
    alice.record_decision(DecisionRequest(case_id=leased.case.case_id, action="accept"))
    tokens = issue_tokens(ws, ws.settings())
    gateway = operator(ws).add_user("voila-gateway", "gateway").token
    svc = start_service(ws)
    svc.tokens = tokens
    try:
        yield svc, gateway
    finally:
        svc.stop()


def _state(svc: RunningService) -> tuple[Any, Any]:
    admin = {"Authorization": f"Bearer {svc.tokens['dana']}"}
    head = httpx.get(svc.url + "/v1/audit/head", headers=admin).json()
    counts = httpx.get(svc.url + "/v1/counts", headers=admin).json()
    return head, counts


def _operations(svc: RunningService, methods: tuple[str, ...]) -> list[tuple[str, str, Any]]:
    spec = httpx.get(svc.url + "/openapi.json").json()
    ops = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in methods:
                ops.append((method.upper(), path, op))
    return [(m, p, (o, spec)) for m, p, o in ops]


def _as(svc: RunningService, gateway: str, via_gateway: bool) -> dict[str, str]:
    if via_gateway:
        return {
            "Authorization": f"Bearer {gateway}",
            ON_BEHALF_HEADER: "otto",
            PROXY_SECRET_HEADER: PROXY_SECRET,
        }
    return {"Authorization": f"Bearer {svc.tokens['otto']}"}


@pytest.mark.parametrize("via_gateway", [False, True], ids=["own-token", "dashboard-gateway"])
def test_every_write_route_answers_403_to_the_auditor_and_nothing_changes(
    served: tuple[RunningService, str], via_gateway: bool
) -> None:
    svc, gateway = served
    headers = _as(svc, gateway, via_gateway)
    me = httpx.get(svc.url + "/v1/me", headers=headers).json()
    assert me == {"name": "otto", "roles": ["auditor"]}
    case_id = "APP-000001"
    writes = _operations(svc, WRITE_METHODS)
    paths = {p for _, p, _ in writes}
    # The enumeration sees the routes we know of (and any added since).
    assert {"/v1/decisions", "/v1/audit/checkpoint", "/v1/users", "/v1/events"} <= paths
    before = _state(svc)
    answers = {}
    for method, path, (op, spec) in writes:
        url, params, body = request_for(path, op, spec, case_id)
        r = httpx.request(
            method, svc.url + url, headers=headers, params=params, json=body, timeout=30
        )
        answers[f"{method} {path}"] = (r.status_code, r.text[:160])
    not_refused = {k: v for k, v in answers.items() if v[0] != 403}
    assert not_refused == {}, (
        "write routes that did not answer 403 to the auditor (a 422 means the test's body "
        "did not validate; teach example() the field):",
        not_refused,
    )
    assert all('"forbidden"' in text for _, text in answers.values())
    assert _state(svc) == before


def test_read_routes_change_nothing_for_the_auditor(served: tuple[RunningService, str]) -> None:
    svc, gateway = served
    headers = _as(svc, gateway, via_gateway=False)
    before = _state(svc)
    codes = {}
    for method, path, (op, spec) in _operations(svc, ("get",)):
        url, params, _ = request_for(path, op, spec, "APP-000001")
        r = httpx.request(method, svc.url + url, headers=headers, params=params, timeout=60)
        codes[path] = r.status_code
    assert codes["/v1/audit/search"] == 200
    assert codes["/v1/audit/verify"] == 200
    assert all(code in (200, 403, 404) for code in codes.values()), codes
    assert _state(svc) == before
