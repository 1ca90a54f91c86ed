"""The service mode: one process owns the DuckDB file and serves the store over HTTP.

Every Voila page is its own kernel process and DuckDB allows one writing process per file,
so many reviewers share one store through this service. It authenticates callers by API
token (only hashes are stored), and enforces roles server-side by running the very same
``StoreCore`` operations as the embedded mode. OpenAPI at /openapi.json.

Nothing personal is logged: uvicorn's access log (which would print case ids in paths) is off.

(No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at
run time, including the local ``Caller`` dependency alias.)
"""

import asyncio
import json
import logging
import os
import queue
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import duckdb
import polars as pl
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import (
    AuthenticationError,
    HiltError,
    InputError,
    PermissionDeniedError,
)
from hilt.pipelines.store.core import Clock, HeadCache, StoreCore, system_clock, token_hash
from hilt.pipelines.store.modes import locking
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.ops import subject_rights
from hilt.pipelines.store.records import (
    AuditEvent,
    AuditHead,
    AuditPage,
    AuditQuery,
    CaseRecord,
    CheckpointRecord,
    ConflictRecord,
    Decision,
    DecisionRequest,
    ErasureReport,
    FeatureRange,
    GoldResult,
    IngestResult,
    LeasedCase,
    OversightReport,
    Prediction,
    QueueStatus,
    RetentionReport,
    SnapshotRecord,
    SubjectAction,
    SubjectExport,
    SystemState,
    TokenGrant,
    User,
    VerifyReport,
)
from hilt.pipelines.workspace import Workspace

log = logging.getLogger("hilt.store.service")
T = TypeVar("T")

#: DuckDB threads for bulk operations in the owning process (see StoreService.run_bulk).
BULK_THREADS = max(1, os.cpu_count() or 1)
#: Largest request body accepted (bytes); bulk loads beyond it belong in `hilt ingest`.
MAX_BODY_BYTES = 64 * 1024 * 1024


class RowsIn(BaseModel):
    rows: list[dict[str, Any]] = Field(min_length=1)


class PredictionsIn(RowsIn):
    model_version: str = Field(min_length=1, max_length=128)


class HaltIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class CaseIdsIn(BaseModel):
    case_ids: list[str] | None = None


class EventIn(BaseModel):
    action: str = Field(min_length=1, max_length=64)
    object_type: str = Field(min_length=1, max_length=128)
    object_id: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any] = Field(default_factory=dict)


class UserIn(BaseModel):
    name: str
    role: str


class SubjectIn(BaseModel):
    #: The external subject id (in the body, never in the URL).
    subject_id: str = Field(min_length=1, max_length=128)


class RectifyIn(SubjectIn):
    column: str = Field(min_length=1, max_length=64)
    value: str | None = Field(default=None, max_length=100_000)
    case_id: str | None = Field(default=None, min_length=1, max_length=128)


class RestrictIn(SubjectIn):
    kind: str
    lift: bool = False


class AdjudicationIn(BaseModel):
    case_id: str = Field(min_length=1, max_length=128)
    final_label: str = Field(min_length=1, max_length=128)
    comment: str | None = None
    request_id: str | None = Field(default=None, min_length=1, max_length=128)


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

    values = {c: [text(r[c]) for r in rows] for c in columns}
    try:
        return pl.DataFrame({c: pl.Series(c, v, dtype=pl.String) for c, v in values.items()})
    except UnicodeEncodeError:
        for c, column in values.items():
            for i, v in enumerate(column, start=1):
                if v is not None and not v.isascii():
                    try:
                        v.encode("utf-8")
                    except UnicodeEncodeError:
                        raise InputError(f"row {i}, field {c!r}: not valid Unicode text") from None
        raise


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, whether the
    size is declared (Content-Length) or not (chunked), before the app parses anything."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(
            {"error": "input", "detail": f"request body larger than {self.limit} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class StoreService:
    """The owning process's state: one connection, one lock around it, the audit head, and
    a group committer for decisions.

    Group commit: decisions that arrive while one is being written wait in a queue; the
    writer takes them all and records them in one transaction, each with its own chained
    audit row, and acknowledges none before the COMMIT. One commit's cost is shared, which
    is what lets one process take a burst of reviewers. A decision refused before it wrote
    anything is simply left out of its group; should anything fail after writing, the whole
    group is rolled back and each decision is retried on its own.
    """

    MAX_GROUP = 64

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
        self.head = HeadCache()
        self._queue: queue.SimpleQueue[tuple[User, DecisionRequest, Future[Decision]]] = (
            queue.SimpleQueue()
        )
        self._writer: threading.Thread | None = None
        self._writer_started = threading.Lock()
        self._tokens: dict[str, User] = {}
        self._users: dict[str, User] = {}
        #: The master key and subject keys, opened once for the life of the service.
        self.keys = workspace.key_ring()

    def core(self, actor: User, *, in_group: bool = False) -> StoreCore:
        return StoreCore(
            self.con,
            self.settings,
            self.workspace,
            actor,
            self.clock,
            head=self.head,
            in_group=in_group,
            keys=self.keys,
        )

    def run(self, actor: User, op: Callable[[StoreCore], T]) -> T:
        with self.mutex:
            return op(self.core(actor))

    def run_bulk(self, actor: User, op: Callable[[StoreCore], T]) -> T:
        """Like ``run``, with DuckDB on every core. The owning process otherwise keeps DuckDB
        to one thread: the interactive operations (lease, decide, queue status) are small
        queries that two threads make slower, not faster (measured: the review round trip
        22 % faster in process), while the bulk ones (ingest, snapshots, verify, erasure,
        retention, reports) scan whole tables."""
        with self.mutex:
            self.con.execute(f"SET threads = {BULK_THREADS}")
            try:
                return op(self.core(actor))
            finally:
                self.con.execute("SET threads = 1")

    def submit_decision(self, actor: User, request: DecisionRequest) -> Future[Decision]:
        """Queue a decision for the group committer; the future resolves after its COMMIT."""
        with self._writer_started:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_groups, name="hilt-group-commit", daemon=True
                )
                self._writer.start()
        done: Future[Decision] = Future()
        self._queue.put((actor, request, done))
        return done

    def record_decision(self, actor: User, request: DecisionRequest) -> Decision:
        return self.submit_decision(actor, request).result()

    def _write_groups(self) -> None:
        while True:
            group = [self._queue.get()]
            while len(group) < self.MAX_GROUP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self.mutex:
                self._commit_group(group)

    def _commit_group(self, group: list[tuple[User, DecisionRequest, Future[Decision]]]) -> None:
        outcomes: list[tuple[Future[Decision], Decision | None, BaseException | None]] = []
        try:
            self.con.execute("BEGIN TRANSACTION")
            for actor, request, done in group:
                core = self.core(actor, in_group=True)
                try:
                    outcomes.append((done, core.record_decision(request), None))
                except HiltError as e:
                    if core.wrote:
                        raise
                    outcomes.append((done, None, e))
            self.con.execute("COMMIT")
            self.head.commit()
        except BaseException:
            self.head.forget()
            try:
                self.con.execute("ROLLBACK")
            except duckdb.Error:
                log.warning("rollback of a decision group failed")
            for actor, request, done in group:  # one by one, each in its own transaction
                try:
                    # Under the mutex already: run directly, in its own transaction.
                    done.set_result(self.core(actor).record_decision(request))
                except BaseException as e:
                    done.set_exception(e)
            return
        for done, decision, error in outcomes:
            if error is not None:
                done.set_exception(error)
            else:
                assert decision is not None
                done.set_result(decision)

    def authenticate(self, token: str) -> User:
        """The token's owner. Cached: only this process changes users and tokens, and it
        forgets the cache whenever it does (see ``forget_identities``)."""
        hashed = token_hash(token)
        known = self._tokens.get(hashed)
        if known is not None:
            return known
        with self.mutex:
            user = StoreCore.authenticate(self.con, token)
        self._tokens[hashed] = user
        return user

    def known_token(self, token: str) -> User | None:
        return self._tokens.get(token_hash(token))

    def known_user(self, name: str) -> User | None:
        return self._users.get(name)

    def lookup(self, name: str) -> User:
        known = self._users.get(name)
        if known is not None:
            return known
        with self.mutex:
            user = StoreCore.lookup_user(self.con, name)
        self._users[name] = user
        return user

    def forget_identities(self) -> None:
        self._tokens.clear()
        self._users.clear()


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

    # Async, so that the common case (a cached token) costs no thread hop; a cache miss
    # reads the store in the thread pool.
    async def caller(
        authorization: Annotated[str | None, Header()] = None,
        x_hilt_on_behalf_of: Annotated[str | None, Header()] = None,
    ) -> User:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthenticationError("missing bearer token (Authorization: Bearer …)")
        token = authorization.removeprefix("Bearer ").strip()
        owner = service.known_token(token)
        if owner is None:
            owner = await run_in_threadpool(service.authenticate, token)
        if x_hilt_on_behalf_of is None:
            return owner
        if "gateway" not in owner.roles:
            raise PermissionDeniedError("only a gateway token may act on behalf of a user")
        acting = service.known_user(x_hilt_on_behalf_of)
        if acting is None:
            acting = await run_in_threadpool(service.lookup, x_hilt_on_behalf_of)
        return acting

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
        return service.run_bulk(user, lambda c: c.ingest_cases(frame))

    @app.post("/v1/predictions")
    def add_predictions(body: PredictionsIn, user: Caller) -> IngestResult:
        _check_rows(len(body.rows))
        frame = rows_to_frame(body.rows)
        return service.run_bulk(user, lambda c: c.add_predictions(body.model_version, frame))

    @app.post("/v1/decisions")
    async def record_decision(body: DecisionRequest, user: Caller) -> Decision:
        # Waits on the group committer without holding a worker thread.
        return await asyncio.wrap_future(service.submit_decision(user, body))

    @app.get("/v1/decisions")
    def decisions(
        user: Caller, after_seq: int = 0, limit: int = 1000, final_only: bool = False
    ) -> list[Decision]:
        return service.run(user, lambda c: c.decisions(after_seq, limit, final_only))

    @app.post("/v1/queue/next")
    def next_case(user: Caller, strategy: str | None = None) -> LeasedCase | None:
        return service.run(user, lambda c: c.next_case(strategy))

    @app.get("/v1/queue/status")
    def queue_status(user: Caller) -> QueueStatus:
        return service.run(user, lambda c: c.queue_status())

    @app.post("/v1/cases/{case_id:path}/contest")
    def contest(case_id: str, user: Caller) -> int:
        return service.run(user, lambda c: c.contest(case_id))

    @app.post("/v1/events")
    def record_event(body: EventIn, user: Caller) -> int:
        return service.run(
            user,
            lambda c: c.record_event(body.action, body.object_type, body.object_id, body.payload),
        )

    @app.post("/v1/snapshots")
    def snapshot(user: Caller, as_of_seq: int | None = None) -> SnapshotRecord:
        return service.run_bulk(user, lambda c: c.snapshot(as_of_seq))

    @app.get("/v1/system")
    def system_state(user: Caller) -> SystemState:
        return service.run(user, lambda c: c.system_state())

    @app.post("/v1/system/halt")
    def halt(body: HaltIn, user: Caller) -> SystemState:
        return service.run(user, lambda c: c.halt(body.reason))

    @app.post("/v1/system/resume")
    def resume(user: Caller) -> SystemState:
        return service.run(user, lambda c: c.resume())

    @app.get("/v1/feature-profile")
    def feature_profile(user: Caller) -> dict[str, FeatureRange]:
        return service.run(user, lambda c: c.feature_profile())

    @app.post("/v1/case-frame")
    def case_frame(body: CaseIdsIn, user: Caller) -> dict[str, Any]:
        frame = service.run_bulk(user, lambda c: c.case_frame(body.case_ids))
        return {"columns": frame.columns, "rows": frame.rows()}

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
        return service.run_bulk(user, lambda c: c.verify(public_key))

    @app.post("/v1/audit/checkpoint")
    def checkpoint(user: Caller) -> CheckpointRecord:
        return service.run(user, lambda c: c.checkpoint())

    @app.post("/v1/subjects/export")
    def subject_export(body: SubjectIn, user: Caller) -> SubjectExport:
        return service.run_bulk(user, lambda c: c.subject_export(body.subject_id))

    @app.post("/v1/subjects/rectify")
    def subject_rectify(body: RectifyIn, user: Caller) -> SubjectAction:
        return service.run(
            user,
            lambda c: c.subject_rectify(body.subject_id, body.column, body.value, body.case_id),
        )

    @app.post("/v1/subjects/restrict")
    def subject_restrict(body: RestrictIn, user: Caller) -> SubjectAction:
        return service.run(
            user, lambda c: c.subject_restrict(body.subject_id, body.kind, body.lift)
        )

    @app.post("/v1/subjects/contest")
    def subject_contest(body: SubjectIn, user: Caller) -> SubjectAction:
        return service.run(user, lambda c: c.subject_contest(body.subject_id))

    @app.post("/v1/subjects/erase")
    def subject_erase(body: SubjectIn, user: Caller) -> ErasureReport:
        return service.run_bulk(user, lambda c: c.subject_erase(body.subject_id))

    @app.post("/v1/retention/apply")
    def retention_apply(user: Caller) -> RetentionReport:
        return service.run_bulk(user, lambda c: c.retention_apply())

    @app.post("/v1/users")
    def add_user(body: UserIn, user: Caller) -> TokenGrant:
        try:
            return service.run(user, lambda c: c.add_user(body.name, body.role))
        finally:
            service.forget_identities()

    @app.post("/v1/users/{name}/revoke-tokens")
    def revoke_tokens(name: str, user: Caller) -> int:
        try:
            return service.run(user, lambda c: c.revoke_tokens(name))
        finally:
            service.forget_identities()

    @app.get("/v1/audit/search")
    def audit_search(user: Caller, query: Annotated[AuditQuery, Query()]) -> AuditPage:
        return service.run_bulk(user, lambda c: c.audit_search(query))

    @app.get("/v1/decisions/{decision_id}")
    def get_decision(decision_id: str, user: Caller) -> Decision:
        return service.run(user, lambda c: c.get_decision(decision_id))

    @app.get("/v1/predictions/{prediction_id}")
    def get_prediction(prediction_id: int, user: Caller) -> Prediction:
        return service.run(user, lambda c: c.get_prediction(prediction_id))

    @app.get("/v1/gold/candidates")
    def gold_candidates(user: Caller, limit: int = 1000) -> list[str]:
        return service.run_bulk(user, lambda c: c.gold_candidates(limit))

    @app.post("/v1/gold")
    def add_gold(body: PredictionsIn, user: Caller) -> GoldResult:
        _check_rows(len(body.rows))
        frame = rows_to_frame(body.rows)
        return service.run_bulk(user, lambda c: c.add_gold(body.model_version, frame))

    @app.get("/v1/oversight/report")
    def oversight_report(user: Caller) -> OversightReport:
        return service.run_bulk(user, lambda c: c.oversight_report())

    @app.get("/v1/oversight/conflicts")
    def conflicts(user: Caller) -> list[ConflictRecord]:
        return service.run(user, lambda c: c.conflicts())

    @app.post("/v1/oversight/adjudications")
    def adjudicate(body: AdjudicationIn, user: Caller) -> Decision:
        return service.run(
            user,
            lambda c: c.adjudicate(body.case_id, body.final_label, body.comment, body.request_id),
        )

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
        con.execute("SET threads = 1")  # see StoreService.run_bulk
        service = StoreService(workspace, settings, con)
        try:
            service.run(User(name="hilt-store", roles=["system"]), StoreCore.check_schema_version)
            # Complete a removal that crashed between its commit and destroying the keys.
            service.run(User(name="hilt-store", roles=["system"]), subject_rights.finish_removals)
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
                BodyLimit(create_app(service)),
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
            service.keys.close()
            con.close()
