"""The review path's routes (a lease, a decision) are served by a lean twin
(``service_http.ServedRoute``): its caller reads the request's headers itself instead of
through FastAPI's declared ``Header`` parameters and ``HTTPBearer``. What must hold: the
document still declares the bearer scheme and the gateway's headers with their limits; the
twin answers every request as the documented route does (the token, the gateway's proof,
the role, the header limits, the body, and their order); a request with a gateway header
over its limit is answered by the documented route itself.

In process, on a real DuckDB file and the service's own group committer: the app is called
through ASGI, once as served and once with every request sent to the documented route.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from hilt.pipelines.store.authentication import PROXY_SECRET_HEADER, SESSION_HEADER
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.modes import service_http
from hilt.pipelines.store.modes.contract import ON_BEHALF_HEADER
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.modes.service import StoreService
from hilt.pipelines.store.modes.service_http import GATEWAY_HEADER_LIMITS, ServedRoute
from hilt.pipelines.store.operations import Store
from hilt.pipelines.workspace import Workspace
from tests.conftest import (
    CSV,
    PROXY_SECRET,
    TEST_MODEL,
    issue_tokens,
    operator,
    predictions_for,
    proxied_config,
    stand_in,
)

Answer = tuple[int, Any]


class Served:
    """The app of a served workspace (behind the tests' sign-in proxy), called in process."""

    def __init__(self, root: Path) -> None:
        ws = Workspace.at(root / "ws")
        create_workspace(ws, proxied_config(root))
        cases = pl.read_csv(CSV, infer_schema=False).head(40)
        operator(ws).ingest_cases(cases)
        stand_in(ws)
        operator(ws).add_predictions(TEST_MODEL.model, predictions_for(cases), TEST_MODEL.sha256)
        self.tokens = issue_tokens(ws, ws.settings())
        self.tokens["gateway"] = operator(ws).add_user("voila-gateway", "gateway").token
        self.con = connect(ws)
        watch = ConfigWatch(ws, owner=True)
        self.service = StoreService(ws, watch.admit(self.con, despite_drift=False), self.con)
        self.app = service_http.create_app(self.service)

    def call(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Answer:
        return asyncio.run(self._call(method, path, headers, body))

    async def _call(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        raw = (
            b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        )
        sent = [(b"host", b"test"), (b"content-length", str(len(raw)).encode())]
        if body is not None:
            sent.append((b"content-type", b"application/json"))
        sent += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": sent,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
        }
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return {"type": "http.disconnect"}

        status = 0
        chunks: list[bytes] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, json.loads(b"".join(chunks) or b"null")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("review-route"))
    try:
        yield s
    finally:
        s.con.close()


def _review_routes(served: Served) -> dict[str, ServedRoute]:
    paths = {Store.record_decision.route.path, Store.next_case.route.path}
    return {
        r.path: r
        for r in served.app.router.routes
        if isinstance(r, ServedRoute) and r.path in paths and r.twin is not None
    }


def test_the_review_path_has_a_lean_twin_and_the_document_is_unchanged(served: Served) -> None:
    routes = _review_routes(served)
    assert set(routes) == {"/v1/decisions", "/v1/queue/next"}
    for route in routes.values():
        assert route.twin is not None
        # The twin resolves no declared header and no security scheme; the route does.
        twin_caller = next(d for d in route.twin.dependant.dependencies if d.name == "user")
        assert twin_caller.header_params == [] and twin_caller.dependencies == []
        caller = next(d for d in route.dependant.dependencies if d.name == "user")
        assert {p.alias for p in caller.header_params} == set(GATEWAY_HEADER_LIMITS)
    doc = served.app.openapi()
    operation = doc["paths"]["/v1/decisions"]["post"]
    assert operation["security"] == [{"HTTPBearer": []}]
    declared = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    assert set(declared) == set(GATEWAY_HEADER_LIMITS)
    for name, limit in GATEWAY_HEADER_LIMITS.items():
        schema = declared[name]["schema"]
        assert next(b for b in schema["anyOf"] if b["type"] == "string")["maxLength"] == limit
    # Only the review path has a twin: any other route is served as documented.
    others = [r for r in served.app.router.routes if isinstance(r, ServedRoute)]
    assert sum(r.twin is not None for r in others) == len(
        [o for o in Store.operations() if o.group_commit]
    )


def _refusals(served: Served) -> dict[str, tuple[str, str, dict[str, str], Any]]:
    """Requests the store refuses (nothing written), each as (method, path, headers, body)."""
    t = served.tokens
    alice = {"authorization": f"Bearer {t['alice']}"}
    gateway = {"authorization": f"Bearer {t['gateway']}"}
    as_alice = {**gateway, ON_BEHALF_HEADER: "alice", PROXY_SECRET_HEADER: PROXY_SECRET}
    as_otto = {**as_alice, ON_BEHALF_HEADER: "otto"}
    long_name = {**as_alice, ON_BEHALF_HEADER: "a" * 129}
    long_secret = {**as_alice, PROXY_SECRET_HEADER: "s" * 513}
    long_session = {**as_alice, SESSION_HEADER: "x" * 257}
    decision = {"case_id": "APP-000001", "action": "accept"}
    cases: dict[str, tuple[str, str, dict[str, str], Any]] = {}
    for path in ("/v1/decisions", "/v1/queue/next"):
        body = decision if path == "/v1/decisions" else None
        cases |= {
            f"{path} no token": ("POST", path, {}, body),
            f"{path} not bearer": ("POST", path, {"authorization": f"Basic {t['alice']}"}, body),
            f"{path} wrong token": (
                "POST",
                path,
                {"authorization": "Bearer hilt_" + "x" * 43},
                body,
            ),
            f"{path} auditor": ("POST", path, {"authorization": f"Bearer {t['otto']}"}, body),
            f"{path} header from a non-gateway": (
                "POST",
                path,
                {**alice, ON_BEHALF_HEADER: "bob"},
                body,
            ),
            f"{path} gateway without proof": (
                "POST",
                path,
                {**gateway, ON_BEHALF_HEADER: "alice"},
                body,
            ),
            f"{path} gateway wrong proof": (
                "POST",
                path,
                {**as_alice, PROXY_SECRET_HEADER: PROXY_SECRET + "x"},
                body,
            ),
            f"{path} gateway for an auditor": ("POST", path, as_otto, body),
            f"{path} gateway for nobody": (
                "POST",
                path,
                {**as_alice, ON_BEHALF_HEADER: "nobody"},
                body,
            ),
            f"{path} name too long": ("POST", path, long_name, body),
            f"{path} secret too long": ("POST", path, long_secret, body),
            f"{path} session too long": ("POST", path, long_session, body),
            f"{path} name too long, no token": (
                "POST",
                path,
                {k: v for k, v in long_name.items() if k != "authorization"},
                body,
            ),
        }
    for who, headers in (("alice", alice), ("gateway for alice", as_alice)):
        cases |= {
            f"decision by {who}, no body": ("POST", "/v1/decisions", headers, None),
            f"decision by {who}, bad JSON": ("POST", "/v1/decisions", headers, b'{"case_id": '),
            f"decision by {who}, no action": (
                "POST",
                "/v1/decisions",
                headers,
                {"case_id": "APP-000001"},
            ),
            f"decision by {who}, unknown action": (
                "POST",
                "/v1/decisions",
                headers,
                {**decision, "action": "approve"},
            ),
            f"decision by {who}, no lease": ("POST", "/v1/decisions", headers, decision),
            f"decision by {who}, too long and no action": (
                "POST",
                "/v1/decisions",
                {**headers, ON_BEHALF_HEADER: "a" * 129},
                {"case_id": "APP-000001"},
            ),
        }
    return cases


def test_the_twin_answers_every_refusal_as_the_documented_route(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = _refusals(served)
    served.service.warm()
    head = served.service.head.committed
    twin = {name: served.call(*request) for name, request in cases.items()}
    with monkeypatch.context() as m:  # every request to the documented route
        m.setattr(service_http, "gateway_headers_fit", lambda scope: False)
        documented = {name: served.call(*request) for name, request in cases.items()}
    for name in cases:
        assert twin[name] == documented[name], name
        assert twin[name][0] in (401, 403, 404, 409, 422), (name, twin[name])
    assert served.service.head.committed == head  # nothing written
    # The refusals are the ones expected (so that the comparison compares something).
    assert twin["/v1/decisions no token"][0] == 401
    assert twin["/v1/queue/next gateway for an auditor"][0] == 403
    assert twin["decision by alice, no action"][1]["fields"][0]["loc"] == ["body", "action"]
    assert twin["decision by gateway for alice, unknown action"][0] == 422


def test_the_gateway_acts_for_its_user_on_the_review_path(served: Served) -> None:
    """Through the twin: the gateway, with the proxy's proof, leases and decides as alice;
    the decision is alice's."""
    as_alice = {
        "authorization": f"Bearer {served.tokens['gateway']}",
        ON_BEHALF_HEADER: "alice",
        PROXY_SECRET_HEADER: PROXY_SECRET,
    }
    status, leased = served.call("POST", "/v1/queue/next", as_alice)
    assert status == 200, leased
    case_id = leased["case"]["case_id"]
    decision = {"case_id": case_id, "action": "accept", "request_id": "twin-1"}
    status, decided = served.call("POST", "/v1/decisions", as_alice, decision)
    assert status == 200, decided
    assert decided["reviewer"] == "alice" and decided["case_id"] == case_id
