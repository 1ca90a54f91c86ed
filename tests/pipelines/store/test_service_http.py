"""The store service at the HTTP level: raw requests, as a production system (or an
attacker) would send them, not through StoreClient.

Every rejected write must leave the store exactly as it was: same row counts, same audit
head. And the service's log must not carry case ids or personal values.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.modes.client import StoreClient, tls_context
from hilt.pipelines.store.modes.service_http import MAX_BODY_BYTES
from hilt.pipelines.workspace import Workspace
from tests.conftest import (
    CONFIG,
    CSV,
    TEST_MODEL,
    RunningService,
    issue_tokens,
    operator,
    predictions_for,
    stand_in,
    start_service,
)

Kwargs = dict[str, Any]


def http(svc: RunningService, user: str | None = None, token: str | None = None) -> httpx.Client:
    """A raw client; ``user`` picks that user's token, ``token`` sends any text at all."""
    headers = {}
    if user is not None:
        token = svc.tokens[user]
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=svc.url, headers=headers, timeout=30, verify=tls_context())


def state(svc: RunningService) -> tuple[dict[str, int], dict[str, Any]]:
    """Row counts of every table and the audit head: what 'nothing was written' means."""
    with http(svc, "dana") as admin:
        counts = admin.get("/v1/counts")
        head = admin.get("/v1/audit/head")
    assert counts.status_code == head.status_code == 200
    return counts.json(), head.json()


def assert_error(response: httpx.Response, status: int, kind: str, *names: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == kind, body
    assert isinstance(body["detail"], str) and body["detail"]
    for name in names:
        assert name in body["detail"], body


# ---------------------------------------------------------------------- rejected requests


@pytest.fixture(scope="module")
def shared_service(
    tmp_path_factory: pytest.TempPathFactory, cases_frame: pl.DataFrame
) -> Iterator[RunningService]:
    """One service for the tests that must not change anything (they check that they
    did not): the same content as the ``service`` fixture, started once."""
    ws = Workspace.at(tmp_path_factory.mktemp("http") / "ws")
    create_workspace(ws, CONFIG)
    admin = operator(ws)
    admin.ingest_cases(cases_frame.head(200))
    stand_in(ws)
    admin.add_predictions(
        TEST_MODEL.model, predictions_for(cases_frame.head(200)), TEST_MODEL.sha256
    )
    tokens = issue_tokens(ws, ws.settings())
    svc = start_service(ws)
    svc.tokens = tokens
    try:
        yield svc
    finally:
        svc.stop()


DECISION = {"case_id": "APP-000001", "action": "accept"}
JSON = {"content-type": "application/json"}

# (who, method, path, request kwargs, status, error kind, words the detail must name)
# fmt: off
REJECTED: dict[str, tuple[str | None, str, str, Kwargs, int, str, tuple[str, ...]]] = {
    "no-authorization-get": (None, "GET", "/v1/me", {}, 401, "unauthenticated", ("bearer",)),
    "no-authorization-write": (
        None, "POST", "/v1/decisions", {"json": DECISION}, 401, "unauthenticated", ("bearer",)
    ),
    "wrong-token": (
        "!wrong", "POST", "/v1/decisions", {"json": DECISION}, 401, "unauthenticated", ()
    ),
    "not-a-bearer-token": (
        "!basic", "POST", "/v1/decisions", {"json": DECISION}, 401, "unauthenticated", ()
    ),
    "reviewer-adds-user": (
        "alice", "POST", "/v1/users", {"json": {"name": "mallory", "role": "admin"}},
        403, "forbidden", ("alice",),
    ),
    "auditor-records-decision": (
        "otto", "POST", "/v1/decisions", {"json": DECISION}, 403, "forbidden", ("otto",)
    ),
    "auditor-checkpoints": (
        "otto", "POST", "/v1/audit/checkpoint", {}, 403, "forbidden", ("otto",)
    ),
    "reviewer-ingests-cases": (
        "alice", "POST", "/v1/cases", {"json": {"rows": [{"application_id": "X-1"}]}},
        403, "forbidden", (),
    ),
    "bad-json": (
        "alice", "POST", "/v1/decisions",
        {"content": b'{"case_id": "APP-000001", "action": ', "headers": JSON},
        422, "input", ("JSON",),
    ),
    "not-an-object": (
        "alice", "POST", "/v1/decisions", {"json": ["APP-000001", "accept"]},
        422, "input", (),
    ),
    "missing-case-id": (
        "alice", "POST", "/v1/decisions", {"json": {"action": "accept"}},
        422, "input", ("case_id",),
    ),
    "missing-action": (
        "alice", "POST", "/v1/decisions", {"json": {"case_id": "APP-000001"}},
        422, "input", ("action",),
    ),
    "unknown-action": (
        "alice", "POST", "/v1/decisions", {"json": {**DECISION, "action": "approve"}},
        422, "input", ("action",),
    ),
    "extra-field": (
        "alice", "POST", "/v1/decisions", {"json": {**DECISION, "final_labell": "1"}},
        422, "input", ("final_labell",),
    ),
    "negative-time": (
        "alice", "POST", "/v1/decisions", {"json": {**DECISION, "time_on_item_ms": -5}},
        422, "input", ("time_on_item_ms",),
    ),
    "user-without-role": (
        "dana", "POST", "/v1/users", {"json": {"name": "mallory"}}, 422, "input", ("role",)
    ),
    "empty-rows": ("dana", "POST", "/v1/cases", {"json": {"rows": []}}, 422, "input", ("rows",)),
    "predictions-without-model": (
        "dana", "POST", "/v1/predictions", {"json": {"rows": [{"case_id": "APP-000001"}]}},
        422, "input", ("model_version",),
    ),
}
# fmt: on


def client_for(svc: RunningService, who: str | None) -> httpx.Client:
    if who == "!wrong":
        return http(svc, token="hilt_" + "x" * 43)
    if who == "!basic":
        client = http(svc)
        client.headers["Authorization"] = "Basic " + svc.tokens["alice"]
        return client
    return http(svc, who)


@pytest.mark.parametrize("name", list(REJECTED))
def test_a_rejected_request_gets_a_json_error_and_writes_nothing(
    shared_service: RunningService, name: str
) -> None:
    who, method, path, kwargs, status, kind, names = REJECTED[name]
    before = state(shared_service)
    with client_for(shared_service, who) as client:
        response = client.request(method, path, **kwargs)
    assert_error(response, status, kind, *names)
    assert state(shared_service) == before


def raw_request(svc: RunningService, head: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send bytes on a socket (so the headers are exactly these) and read the answer."""
    with socket.create_connection(("127.0.0.1", svc.port), timeout=30) as s:
        s.sendall(head.encode("ascii") + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                headers, _, rest = data.partition(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length:\s*(\d+)", headers)
                if match and len(rest) >= int(match.group(1)):
                    break
    headers, _, rest = data.partition(b"\r\n\r\n")
    status = int(headers.split(b" ", 2)[1])
    return status, json.loads(rest)


def test_a_body_larger_than_the_limit_is_refused_before_it_is_read(
    shared_service: RunningService,
) -> None:
    """The client claims a huge body and sends only its first bytes: 413 at once."""
    before = state(shared_service)
    head = (
        "POST /v1/decisions HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{shared_service.port}\r\n"
        f"Authorization: Bearer {shared_service.tokens['alice']}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {MAX_BODY_BYTES * 4}\r\n"
        "\r\n"
    )
    status, body = raw_request(shared_service, head, b'{"case_id": "APP-000001", ')
    assert status == 413
    assert body["error"] == "input" and str(MAX_BODY_BYTES) in body["detail"]
    assert state(shared_service) == before


def test_a_chunked_body_larger_than_the_limit_is_refused(shared_service: RunningService) -> None:
    """No Content-Length at all: the limit counts the bytes as they arrive."""
    before = state(shared_service)
    piece = b"x" * (1024 * 1024)
    pieces = MAX_BODY_BYTES // len(piece) + 2

    def body() -> Iterator[bytes]:
        yield b'{"case_id": "APP-000001", "action": "accept", "comment": "'
        for _ in range(pieces):
            yield piece
        yield b'"}'

    with http(shared_service, "alice") as client:
        try:
            response = client.post(
                "/v1/decisions", content=body(), headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as e:  # the server may hang up while we are still sending
            pytest.fail(f"no answer: {type(e).__name__}")
    assert_error(response, 413, "input", str(MAX_BODY_BYTES))
    assert state(shared_service) == before


def test_a_case_row_that_is_not_valid_unicode_is_a_422(shared_service: RunningService) -> None:
    """A lone surrogate is valid JSON but not valid Unicode: a clear 422, not a 500."""
    before = state(shared_service)
    row = pl.read_csv(CSV, infer_schema=False).slice(950, 1).to_dicts()[0]
    row["application_id"] = "BAD-\ud800"
    with http(shared_service, "dana") as dana:
        response = dana.post("/v1/cases", content=json.dumps({"rows": [row]}), headers=JSON)
    assert_error(response, 422, "input", "application_id")
    assert state(shared_service) == before


# ---------------------------------------------------------------------- what is accepted


def test_openapi_lists_the_endpoints(shared_service: RunningService) -> None:
    with http(shared_service) as client:
        spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        "/health": {"get"},
        "/v1/me": {"get"},
        "/v1/cases": {"post"},
        "/v1/cases/{case_id}": {"get"},
        "/v1/predictions": {"post"},
        "/v1/decisions": {"get", "post"},
        "/v1/counts": {"get"},
        "/v1/audit/head": {"get"},
        "/v1/audit/events": {"get"},
        "/v1/audit/verify": {"get"},
        "/v1/audit/checkpoint": {"post"},
        "/v1/users": {"post"},
    }
    for path, methods in expected.items():
        assert path in paths, sorted(paths)
        assert methods <= set(paths[path]), (path, sorted(paths[path]))
    schema = spec["components"]["schemas"]["DecisionRequest"]
    assert {"case_id", "action"} <= set(schema["required"])


def test_a_good_write_moves_the_head_and_is_readable(service: RunningService) -> None:
    """The control for the tests above: a valid request does change the state."""
    counts, head = state(service)
    with http(service, "alice") as alice:
        assert alice.post("/v1/queue/lease", json={"case_id": DECISION["case_id"]}).is_success
        counts, head = state(service)
        response = alice.post("/v1/decisions", json={**DECISION, "request_id": "http-1"})
        again = alice.post("/v1/decisions", json={**DECISION, "request_id": "http-1"})
    assert response.status_code == 200, response.text
    assert again.json()["decision_id"] == response.json()["decision_id"]
    after_counts, after_head = state(service)
    assert after_counts["decisions"] == counts["decisions"] + 1
    assert after_head["seq"] == head["seq"] + 1 == response.json()["seq"]


# ---------------------------------------------------------------------- the service's log


@pytest.fixture
def logged_service(loaded_workspace: Workspace, tmp_path: Path) -> Iterator[RunningService]:
    tokens = issue_tokens(loaded_workspace, loaded_workspace.settings())
    svc = start_service(loaded_workspace, log_path=tmp_path / "service.log")
    svc.tokens = tokens
    try:
        yield svc
    finally:
        svc.stop()


def test_the_service_log_holds_no_case_ids_or_personal_values(
    logged_service: RunningService, tmp_path: Path
) -> None:
    svc = logged_service
    new = pl.read_csv(CSV, infer_schema=False).slice(900, 3)
    new = new.with_columns(
        pl.Series("application_id", ["LOGCASE-1", "LOGCASE-2", "LOGCASE-3"]),
        pl.Series("applicant_id", ["LOGSUBJ-1", "LOGSUBJ-2", "LOGSUBJ-3"]),
    )
    rows = new.to_dicts()
    with http(svc, "dana") as dana, http(svc, "alice") as alice, http(svc) as anon:
        assert dana.post("/v1/cases", json={"rows": rows}).status_code == 200
        preds = [{"case_id": r["application_id"], "score": 0.9, "label": "1"} for r in rows]
        assert (
            dana.post(
                "/v1/predictions",
                json={
                    "model_version": TEST_MODEL.model,
                    "model_sha256": TEST_MODEL.sha256,
                    "rows": preds,
                },
            ).status_code
            == 200
        )
        # a mix of good and bad requests, each carrying ids or personal values
        assert dana.post("/v1/cases", json={"rows": rows}).status_code == 409
        bad_level = [{**rows[0], "application_id": "LOGCASE-9", "sex": "LOGSEX-unknown"}]
        refused = dana.post("/v1/cases", json={"rows": bad_level})
        assert refused.status_code == 422
        assert "LOGSEX" not in refused.text  # errors name columns, not the values found
        assert dana.get("/v1/cases/LOGCASE-1").status_code == 200
        assert dana.get("/v1/cases/APP-000007").status_code == 200
        assert alice.get("/v1/cases/LOGCASE-404").status_code == 404
        assert alice.post("/v1/queue/lease", json={"case_id": "LOGCASE-2"}).is_success
        d = alice.post("/v1/decisions", json={"case_id": "LOGCASE-2", "action": "accept"})
        assert d.status_code == 200
        assert (
            alice.post(
                "/v1/decisions", json={"case_id": "LOGCASE-404", "action": "accept"}
            ).status_code
            == 404
        )
        assert (
            alice.post(
                "/v1/decisions",
                json={
                    "case_id": "LOGCASE-3",
                    "action": "override",
                    "final_label": "0",
                    "reason_code": "whim",
                    "comment": "LOGCOMMENT applicant is LOGSUBJ-3",
                },
            ).status_code
            == 422
        )
        # a string that is valid JSON but not valid Unicode (see the test above)
        surrogate = json.dumps(
            {"rows": [{**bad_level[0], "sex": "female", "application_id": "LOGCASE-\ud800"}]}
        )
        assert dana.post("/v1/cases", content=surrogate, headers=JSON).status_code >= 400
        assert anon.get("/v1/cases/LOGCASE-1").status_code == 401
        assert dana.get("/v1/decisions", params={"after_seq": "LOGCASE-1"}).status_code == 422
        assert dana.get("/v1/audit/verify").json()["ok"]
    svc.stop()  # flush and close: the whole log, shutdown messages included

    log = (tmp_path / "service.log").read_text(encoding="utf-8", errors="replace")
    assert "LOGCASE" not in log and "LOGSUBJ" not in log and "LOGSEX" not in log
    assert "LOGCOMMENT" not in log
    assert re.search(r"APP-\d{6}|SYN-SUBJ-\d+", log) is None, log[:2000]
    assert re.search(r"\b(fe)?male\b", log) is None, log[:2000]
    assert svc.tokens["dana"] not in log and svc.tokens["alice"] not in log


def test_the_store_clients_of_a_process_share_one_tls_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store is opened over HTTP per page, per user, per command: each client loading the
    certificate authorities again cost ~25 ms of CPU. The clients share one TLS context."""
    loads: list[object] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(context)
        load(context, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    clients = [StoreClient("https://store.example:8765", f"token-{n}") for n in range(3)]
    for client in clients:
        client.close()
    assert len(loads) <= 1, loads  # (none where this process made its context before)
