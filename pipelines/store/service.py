"""The service mode: one process owns the DuckDB file and serves the store over HTTP.

Every Voila page is its own kernel process and DuckDB allows one writing process per file,
so many reviewers share one store through this service. It authenticates callers by API
token (only hashes are stored), and enforces roles server-side by running the very same
``StoreCore`` operations as the embedded mode. OpenAPI at /openapi.json.

Nothing personal is logged: uvicorn's access log (which would print case ids in paths) is off.

(No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at
run time, including the local ``Caller`` dependency alias.)
"""

import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import duckdb
import polars as pl
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import AuthenticationError, HiltError, InputError
from hilt.pipelines.store import locking
from hilt.pipelines.store.core import Clock, StoreCore, system_clock
from hilt.pipelines.store.embedded import connect
from hilt.pipelines.store.records import (
    AuditEvent,
    AuditHead,
    CaseRecord,
    CheckpointRecord,
    Decision,
    DecisionRequest,
    IngestResult,
    TokenGrant,
    User,
    VerifyReport,
)
from hilt.pipelines.workspace import Workspace

log = logging.getLogger("hilt.store.service")
T = TypeVar("T")

#: Largest request body accepted (bytes); bulk loads beyond it belong in `hilt ingest`.
MAX_BODY_BYTES = 64 * 1024 * 1024


class RowsIn(BaseModel):
    rows: list[dict[str, Any]] = Field(min_length=1)


class PredictionsIn(RowsIn):
    model_version: str = Field(min_length=1, max_length=128)


class UserIn(BaseModel):
    name: str
    role: str


def rows_to_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """JSON rows → a frame of text columns; the store's validation parses and types them.

    Going through text keeps one parser for CSV files and JSON requests, so the same bad
    value gets the same clear error whichever way it arrives.
    """
    columns = list(rows[0].keys())
    expected = set(columns)
    for i, row in enumerate(rows, start=1):
        if set(row.keys()) != expected:
            raise InputError(f"row {i} has different fields than row 1")

    def text(v: Any) -> str | None:
        if v is None:
            return None
        if isinstance(v, dict | list):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    return pl.DataFrame(
        {c: pl.Series(c, [text(r[c]) for r in rows], dtype=pl.String) for c in columns}
    )


class StoreService:
    """The owning process's state: one connection, one lock around it."""

    def __init__(
        self,
        workspace: Workspace,
        settings: Settings,
        con: duckdb.DuckDBPyConnection,
        clock: Clock = system_clock,
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        self.con = con
        self.clock = clock
        self.mutex = threading.Lock()

    def run(self, actor: User, op: Callable[[StoreCore], T]) -> T:
        with self.mutex:
            return op(StoreCore(self.con, self.settings, self.workspace, actor, self.clock))

    def authenticate(self, token: str) -> User:
        with self.mutex:
            return StoreCore.authenticate(self.con, token)


def create_app(service: StoreService) -> FastAPI:
    app = FastAPI(
        title="hilt store",
        version="1",
        description="Cases, predictions, human decisions and a hash-chained audit log.",
        # The interactive docs pages load their scripts from a CDN; nothing may be fetched
        # at run time, so only the OpenAPI document itself is served.
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(HiltError)
    async def _hilt_error(request: Request, exc: HiltError) -> JSONResponse:
        return JSONResponse({"error": exc.kind, "detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:10]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc or 'body'}: {err.get('msg')}")
        return JSONResponse(
            {"error": "input", "detail": "invalid request: " + "; ".join(parts)}, status_code=422
        )

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Callable[[Request], Any]) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse(
                {"error": "input", "detail": f"request body larger than {MAX_BODY_BYTES} bytes"},
                status_code=413,
            )
        return await call_next(request)

    def caller(authorization: Annotated[str | None, Header()] = None) -> User:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthenticationError("missing bearer token (Authorization: Bearer …)")
        return service.authenticate(authorization.removeprefix("Bearer ").strip())

    Caller = Annotated[User, Depends(caller)]

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "use_case": service.settings.use_case.name,
            "max_rows_per_request": service.settings.limits.max_rows_per_request,
        }

    @app.get("/v1/me")
    def me(user: Caller) -> User:
        return user

    def _check_rows(n: int) -> None:
        limit = service.settings.limits.max_rows_per_request
        if n > limit:
            raise InputError(f"{n} rows exceed limits.max_rows_per_request ({limit})")

    @app.post("/v1/cases")
    def ingest_cases(body: RowsIn, user: Caller) -> IngestResult:
        _check_rows(len(body.rows))
        frame = rows_to_frame(body.rows)
        return service.run(user, lambda c: c.ingest_cases(frame))

    @app.post("/v1/predictions")
    def add_predictions(body: PredictionsIn, user: Caller) -> IngestResult:
        _check_rows(len(body.rows))
        frame = rows_to_frame(body.rows)
        return service.run(user, lambda c: c.add_predictions(body.model_version, frame))

    @app.post("/v1/decisions")
    def record_decision(body: DecisionRequest, user: Caller) -> Decision:
        return service.run(user, lambda c: c.record_decision(body))

    @app.get("/v1/decisions")
    def decisions(user: Caller, after_seq: int = 0, limit: int = 1000) -> list[Decision]:
        return service.run(user, lambda c: c.decisions(after_seq, limit))

    @app.get("/v1/cases/{case_id:path}")
    def get_case(case_id: str, user: Caller) -> CaseRecord:
        return service.run(user, lambda c: c.get_case(case_id))

    @app.get("/v1/counts")
    def counts(user: Caller) -> dict[str, int]:
        return service.run(user, lambda c: c.counts())

    @app.get("/v1/audit/head")
    def audit_head(user: Caller) -> AuditHead:
        return service.run(user, lambda c: c.audit_head())

    @app.get("/v1/audit/events")
    def audit_events(user: Caller, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]:
        return service.run(user, lambda c: c.audit_events(after_seq, limit))

    @app.get("/v1/audit/verify")
    def verify(user: Caller, public_key: str | None = None) -> VerifyReport:
        return service.run(user, lambda c: c.verify(public_key))

    @app.post("/v1/audit/checkpoint")
    def checkpoint(user: Caller) -> CheckpointRecord:
        return service.run(user, lambda c: c.checkpoint())

    @app.post("/v1/users")
    def add_user(body: UserIn, user: Caller) -> TokenGrant:
        return service.run(user, lambda c: c.add_user(body.name, body.role))

    return app


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise InputError(f"cannot listen on {host}:{port}: the port is in use") from None


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(workspace: Workspace, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Own the store and serve it until interrupted. Holds the store's lock meanwhile."""
    import uvicorn

    settings = workspace.settings()
    url = f"http://{host}:{port}"
    _check_port_free(host, port)
    with locking.exclusive(workspace.lock_path, workspace.service_file, timeout_s=0):
        con = connect(workspace)
        try:
            service = StoreService(workspace, settings, con)
            workspace.service_file.write_text(
                json.dumps(
                    {
                        "url": url,
                        "pid": os.getpid(),
                        "started": datetime.now(UTC).isoformat(),
                    }
                )
            )
            config = uvicorn.Config(
                create_app(service),
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=5,
            )
            # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit
            # so that the service file is removed and the database closed cleanly.
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
            uvicorn.Server(config).run()
        finally:
            workspace.service_file.unlink(missing_ok=True)
            con.close()
