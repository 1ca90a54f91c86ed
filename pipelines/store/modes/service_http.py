"""The store service over HTTP: one process owns the DuckDB file (``service.StoreService``)
and serves the store to the dashboards' kernels, the CLI and other clients.

Every Voila page is its own kernel process and DuckDB allows one writing process per file,
so many reviewers share one store through this service. It authenticates callers by API
token (only hashes are stored), and enforces roles server-side by running the very same
``StoreCore`` operations as the embedded mode. Its routes are derived from the operations
table (``store.operations``): one route per row, with the row's path, body and result
(``_add_route``). OpenAPI at /openapi.json.

Nothing personal is logged: uvicorn's access log (which would print case ids in paths) is off.

The service acts on the config in force (the store's record, not the file): it refuses to
start while the workspace's hilt.toml differs from it, and, running, refuses every request
but the config operations from the moment the file changes until an admin applies it
(``config_watch.py``; the service logs it once).

(No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at
run time, including the local ``Caller`` dependency alias.)
"""

import asyncio
import inspect
import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from hilt.pipelines.errors import (
    AuthenticationError,
    HiltError,
    PermissionDeniedError,
)
from hilt.pipelines.ports import require_free_port
from hilt.pipelines.store.authentication import (
    DASHBOARD_ROLES,
    PROXY_SECRET_HEADER,
    SESSION_HEADER,
    dashboard_actor,
    prove_gateway_request,
    require_single_person,
)
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.core import role_for
from hilt.pipelines.store.modes import contract, locking, row_contract, wire
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.modes.service import StoreService
from hilt.pipelines.store.operation_row import Operation
from hilt.pipelines.store.operations import Store
from hilt.pipelines.store.ops.removal import finish_removals
from hilt.pipelines.store.schema import check_schema_version
from hilt.pipelines.store.user_records import User
from hilt.pipelines.workspace import Workspace

log = logging.getLogger("hilt.store.service")
#: Largest request body accepted (bytes); bulk loads beyond it belong in `hilt ingest`.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: The gateway's headers and the longest value each may have (declared in the document).
GATEWAY_HEADER_LIMITS = {
    contract.ON_BEHALF_HEADER: 128,
    PROXY_SECRET_HEADER.lower(): 512,
    SESSION_HEADER.lower(): 256,
}
_GATEWAY_HEADER_BYTES = {k.encode(): v for k, v in GATEWAY_HEADER_LIMITS.items()}


def gateway_headers_fit(scope: Scope) -> bool:
    """Whether every gateway header of the request is within its limit (the values are
    latin-1: a byte is a character)."""
    for name, value in scope.get("headers", ()):
        limit = _GATEWAY_HEADER_BYTES.get(name)
        if limit is not None and len(value) > limit:
            return False
    return True


class ServedRoute(contract.GuardedRoute):
    """A route documented by its endpoint's signature and, for the review path, served by a
    lean twin (``twin``): the same endpoint, whose caller reads the request's headers itself
    instead of through FastAPI's declared ``Header`` parameters and ``HTTPBearer`` (their
    resolution: 16-18 % of the event loop's CPU a lease and decision). The document is this
    route's own, unchanged. A request the twin could answer differently goes to this route
    itself: one whose gateway headers are not all within their declared limits, so that its
    422 lists every problem, headers and body, as before; every other check (the token, the
    gateway's proof, the role, the body) is the same code on both."""

    twin: APIRoute | None = None

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        twin = self.twin
        if twin is not None and gateway_headers_fit(scope):
            await twin.handle(scope, receive, send)
        else:
            await super().handle(scope, receive, send)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, whether the
    size is declared (Content-Length) or not (chunked), before the app parses anything."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(
            {
                "error": "input",
                "detail": f"request body larger than {self.limit} bytes",
                "fields": [],
            }
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

    # One error model for every answer that is not a 2xx (contract.ErrorBody).
    @app.exception_handler(HiltError)
    async def _hilt_error(request: Request, exc: HiltError) -> JSONResponse:
        return contract.error_response(exc.status_code, exc.kind, str(exc))

    #: The route's name → its operation (for the refusals before validation).
    served: dict[str, Operation[Any, Any]] = {}

    async def refused_before_validation(request: Request) -> JSONResponse | None:
        """Authentication, then the role, before the request's shape: an unknown caller
        learns nothing of the request shapes, a known one is told 403 whatever they send;
        a gateway's request is judged as the user it acts for (the same ``acting`` as the
        route's own caller). The store checks the role again when it runs the operation."""
        try:
            headers = request.headers
            owner = await token_owner(headers.get("authorization"))
            operation = served.get(getattr(request.scope.get("route"), "name", ""))
            if operation is not None:
                user = await acting(
                    owner,
                    headers.get(contract.ON_BEHALF_HEADER),
                    headers.get(PROXY_SECRET_HEADER),
                    headers.get(SESSION_HEADER),
                )
                role_for(user, operation.permission)
        except (AuthenticationError, PermissionDeniedError) as e:
            return contract.error_response(e.status_code, e.kind, str(e))
        return None

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return await refused_before_validation(request) or contract.validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            return contract.method_not_allowed(request)
        if exc.status_code == 404:
            return contract.error_response(404, "not-found", str(exc.detail))
        # A body that cannot be parsed (400 in Starlette) is invalid input: 401 first, 422.
        refused = await refused_before_validation(request)
        if refused is not None:
            return refused
        status = 422 if exc.status_code == 400 else exc.status_code
        return contract.error_response(status, "input", str(exc.detail))

    async def token_owner(authorization: str | None) -> User:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("missing bearer token (Authorization: Bearer …)")
        token = token.strip()
        owner = service.known_token(token)
        if owner is None:
            owner = await run_in_threadpool(service.authenticate, token)
        return owner

    bearer = HTTPBearer(auto_error=False, description="An API token (`hilt token`).")
    Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

    # Async, so that the common case (a cached token) costs no thread hop; a cache miss
    # reads the store in the thread pool.
    # A gateway token acts for the user it names only as store/authentication.py allows
    # (the sign-in proxy's proof, or single-person mode; dashboard roles only), decided
    # here, from this request, never by the kernel.
    async def acting(
        owner: User, on_behalf_of: str | None, proxy_secret: str | None, session: str | None
    ) -> User:
        if on_behalf_of is None and session is None:
            return owner
        if "gateway" not in owner.roles:
            raise PermissionDeniedError("only a gateway token may act on behalf of a user")
        checking = "the demo session"
        try:
            chosen = None
            if session is not None:
                # Single-person mode only: refused behind a proxy before anything is read.
                require_single_person(service.settings.access)
                chosen = service.known_session(session)
                if chosen is None:
                    chosen = await run_in_threadpool(service.demo_session, session)
            if on_behalf_of is None:
                raise PermissionDeniedError(
                    "a demo session needs the user it was issued for (X-Hilt-On-Behalf-Of)"
                )
            checking = "the sign-in proxy's proof"
            unproven = prove_gateway_request(
                service.settings.access, on_behalf_of, proxy_secret, chosen
            )
            checking = "the user it names"
            user = service.known_user(on_behalf_of)
            if user is None:
                user = await run_in_threadpool(service.lookup, on_behalf_of)
            checking = "the user's roles"
            return dashboard_actor(user, unproven)
        except HiltError as e:
            # Not the name the request gave (anyone reaching the gateway writes it): why.
            log.warning("refused the dashboards' gateway at %s (%s)", checking, e.kind)
            raise

    async def caller(request: Request, credentials: Bearer) -> User:
        """The token's owner. The gateway's header is not declared on an operation no
        dashboard uses; sent anyway, it is still checked (never ignored), and the store
        then refuses the user it names by role."""
        owner = await token_owner(request.headers.get("authorization"))
        headers = request.headers
        return await acting(
            owner,
            headers.get(contract.ON_BEHALF_HEADER),
            headers.get(PROXY_SECRET_HEADER),
            headers.get(SESSION_HEADER),
        )

    limits = GATEWAY_HEADER_LIMITS

    async def gateway_caller(
        request: Request,
        credentials: Bearer,
        x_hilt_on_behalf_of: Annotated[
            str | None, Header(max_length=limits[contract.ON_BEHALF_HEADER])
        ] = None,
        x_hilt_proxy_secret: Annotated[
            str | None, Header(max_length=limits[PROXY_SECRET_HEADER.lower()])
        ] = None,
        x_hilt_session: Annotated[
            str | None, Header(max_length=limits[SESSION_HEADER.lower()])
        ] = None,
    ) -> User:
        owner = await token_owner(request.headers.get("authorization"))
        return await acting(owner, x_hilt_on_behalf_of, x_hilt_proxy_secret, x_hilt_session)

    async def headers_caller(request: Request) -> User:
        """``caller`` and ``gateway_caller`` at run time (``ServedRoute``): the same headers
        read by the same code, without FastAPI resolving declared parameters."""
        return await caller(request, None)

    Caller = Annotated[User, Depends(caller)]
    GatewayCaller = Annotated[User, Depends(gateway_caller)]
    HeadersCaller = Annotated[User, Depends(headers_caller)]

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "use_case": service.settings.use_case.name,
            "max_rows_per_request": service.settings.limits.max_rows_per_request,
            # How many decision requests shared a transaction (counts only).
            "group_commit": dict(service.group_stats),
        }

    generic = app.openapi
    documented: dict[int, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        """The document of this workspace: its use case's limits declared (per config in
        force; built again after a change of it)."""
        settings = service.settings
        if id(settings) not in documented:
            app.openapi_schema = None
            documented.clear()
            documented[id(settings)] = contract.declare_workspace_limits(generic(), settings)
        return documented[id(settings)]

    app.openapi = openapi  # type: ignore[method-assign]

    for operation in Store.operations():
        # The gateway acts for dashboard users: only their operations take its header.
        gateway = bool(operation.permission.roles & set(DASHBOARD_ROLES))
        name = _add_route(
            app, service, operation, GatewayCaller if gateway else Caller, HeadersCaller
        )
        served[name] = operation
    return app


def _add_route(
    app: FastAPI,
    service: StoreService,
    operation: Operation[Any, Any],
    caller: Any,
    headers_caller: Any,
) -> str:
    """Serve ``operation`` on its route: the endpoint's signature (path parameters, the
    body, the caller, the query parameters) and its response type are the operation's.
    The review path (the operations marked ``group_commit``, a reviewer's every click) is
    served by a twin whose caller is ``headers_caller`` (``ServedRoute``)."""
    shape = wire.shape_of(operation)
    hints = operation.hints
    returns = dict[str, Any] if shape.frame_result else hints["return"]

    def signature(caller: Any) -> inspect.Signature:
        params = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=hints[n])
            for n in shape.path
        ]
        if shape.body_model is not None:
            params.append(
                inspect.Parameter(
                    "body", inspect.Parameter.KEYWORD_ONLY, annotation=shape.body_model
                )
            )
        params.append(inspect.Parameter("user", inspect.Parameter.KEYWORD_ONLY, annotation=caller))
        for name in shape.query:
            default = operation.signature.parameters[name].default
            params.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[name], default=default
                )
            )
        if shape.query_model_param is not None:
            name = shape.query_model_param
            params.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=Annotated[operation.route.query or hints[name], Query()],
                )
            )
        return inspect.Signature(params, return_annotation=returns)

    def arguments(values: dict[str, Any]) -> tuple[User, dict[str, Any]]:
        user = values.pop("user")
        body = values.get("body")
        if shape.frame_param is not None and body is not None:
            # Each value of a JSON type its column takes, as the document declares.
            row_contract.check_row_types(body.rows, service.settings, type(body).__name__)
        max_rows = service.settings.limits.max_rows_per_request
        return user, wire.arguments_from_request(operation, values, max_rows)

    def make_endpoint(caller: Any) -> Callable[..., Any]:
        endpoint: Callable[..., Any]
        if operation.group_commit:
            # Waits on the group committer without holding a worker thread.
            async def endpoint(**values: Any) -> Any:
                user, args = arguments(values)
                result = await asyncio.wrap_future(service.submit(user, operation, args))
                return wire.result_body(operation, result)
        else:

            def endpoint(**values: Any) -> Any:
                user, args = arguments(values)
                run = (
                    service.read
                    if operation.read_only
                    else service.run_bulk
                    if operation.bulk
                    else service.run
                )
                return wire.result_body(operation, run(user, operation, args))

        endpoint.__signature__ = signature(caller)  # type: ignore[union-attr]
        endpoint.__name__ = operation.route.endpoint or operation.name
        return endpoint

    documented = make_endpoint(caller)
    route_options: dict[str, Any] = {
        "methods": [operation.route.method],
        "response_model": returns,
        "name": documented.__name__,
        "responses": contract.responses_of(operation),
    }
    app.router.add_api_route(
        operation.route.path, documented, route_class_override=ServedRoute, **route_options
    )
    if operation.group_commit:
        route = app.router.routes[-1]
        assert isinstance(route, ServedRoute) and route.endpoint is documented
        route.twin = APIRoute(operation.route.path, make_endpoint(headers_caller), **route_options)
    return documented.__name__


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(workspace: Workspace, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Own the store and serve it until interrupted. Holds the store's lock meanwhile."""
    import uvicorn

    url = f"http://{host}:{port}"
    require_free_port(host, port)
    with locking.exclusive(workspace.lock_path, workspace.service_file, timeout_s=0):
        con = connect(workspace)
        con.execute("SET threads = 1")  # see StoreService.run_bulk
        watch = ConfigWatch(workspace, owner=True)
        try:
            check_schema_version(con, workspace.db_path)
            # Never serve an edit of hilt.toml that nobody applied.
            settings = watch.admit(con, despite_drift=False)
        except BaseException:
            con.close()
            raise
        service = StoreService(workspace, settings, con, config=watch)
        try:
            # Complete a removal that crashed between its commit and destroying the keys.
            service.run_system(finish_removals)
            # The live queue and the oversight figures, built while the first requests come.
            threading.Thread(target=service.warm, name="hilt-warm", daemon=True).start()
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
