"""The operations table is the store's one list of operations: every mode serves each of
them, and the store grants each to exactly the roles of its row, in every mode.

Nothing here lists an operation or a role by hand: both come from the table
(``Store.operations()``) and the config (``ROLES``), so an operation added to the table is
checked without touching this file.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

from hilt.pipelines.config import ROLES
from hilt.pipelines.errors import HiltError, PermissionDeniedError
from hilt.pipelines.store import Identity, Store, holding, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.modes.client import StoreClient
from hilt.pipelines.store.modes.embedded import EmbeddedStore
from hilt.pipelines.store.modes.service import StoreService
from hilt.pipelines.store.modes.service_http import create_app
from hilt.pipelines.store.modes.wire import shape_of
from hilt.pipelines.store.operation_row import Operation
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, operator, start_service

OPERATIONS = Store.operations()


def role_user(role: str) -> str:
    return f"only-{role}"


def dummy(hint: Any, name: str = "") -> Any:
    """Some value of the type ``hint`` that the request models accept (what the operation
    makes of it does not matter: the permission is checked before anything else)."""
    if name.endswith("sha256"):
        return "0" * 64
    if typing.get_origin(hint) is typing.Annotated:
        return dummy(typing.get_args(hint)[0], name)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return None
    if hint is pl.DataFrame:
        return pl.DataFrame({"case_id": ["no-such-case"]})
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)[0]
    if inspect.isclass(hint) and issubclass(hint, BaseModel):
        return hint(
            **{n: dummy(f.annotation, n) for n, f in hint.model_fields.items() if f.is_required()}
        )
    origin = typing.get_origin(hint) or hint
    return {str: "no-such-thing", int: 1, float: 0.0, bool: False, dict: {}, list: []}[origin]


def call(store: Store, op: Operation[Any, Any]) -> None:
    arguments = {
        name: dummy(op.hints[name], name)
        for name, p in op.signature.parameters.items()
        if p.default is inspect.Parameter.empty
    }
    getattr(store, op.name)(**arguments)


def refused(store: Store, op: Operation[Any, Any]) -> bool:
    """Whether the store refused the caller the operation for their roles (a rule inside
    the operation, such as four eyes, refuses with another message)."""
    try:
        call(store, op)
    except PermissionDeniedError as e:
        return f"may not {op.permission.what}" in str(e)
    except HiltError:
        return False  # past the permission check: refused for another reason, or done
    return False


def workspace_with_one_user_per_role(
    root: Path, cases: pl.DataFrame
) -> tuple[Workspace, dict[str, str]]:
    """A workspace with a few cases and a user holding each role alone; their tokens."""
    ws = Workspace.at(root / "ws")
    create_workspace(ws, CONFIG)
    op = operator(ws)
    op.ingest_cases(cases.head(20))
    return ws, {role: op.add_user(role_user(role), role).token for role in ROLES}


@pytest.fixture(scope="module")
def modes(
    tmp_path_factory: pytest.TempPathFactory, cases_frame: pl.DataFrame
) -> Iterator[dict[str, dict[str, Store]]]:
    """The store opened as the user of each role, in each mode (two workspaces: a service
    owns the second, so its file is not open to the embedded mode)."""
    embedded_ws, _ = workspace_with_one_user_per_role(tmp_path_factory.mktemp("e"), cases_frame)
    served_ws, tokens = workspace_with_one_user_per_role(tmp_path_factory.mktemp("s"), cases_frame)
    svc = start_service(served_ws)
    opened = {
        "embedded": {r: open_store_as(embedded_ws, Identity(name=role_user(r))) for r in ROLES},
        "service": {r: open_store_as(svc.url, Identity(token=tokens[r])) for r in ROLES},
    }
    try:
        yield opened
    finally:
        for stores in opened.values():
            for store in stores.values():
                store.close()
        svc.stop()


def test_every_mode_serves_every_operation_of_the_table() -> None:
    for op in OPERATIONS:
        # Each row's function is imported on first use: a row naming a function its module
        # lacks must fail here, not at a reviewer's first request.
        fn = op.fn
        assert inspect.isfunction(fn) and fn.__name__ == op.name, op.name
        assert fn.__module__.startswith("hilt.pipelines.store.ops."), op.name
        assert inspect.getattr_static(EmbeddedStore, op.name) is op
        assert inspect.getattr_static(StoreClient, op.name) is op
        shape_of(op)  # its parameters fit its route (raises if a body field is missing)
    app = create_app(typing.cast(StoreService, types.SimpleNamespace(settings=None)))
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    table = {(op.route.method, op.route.path) for op in OPERATIONS}
    assert served - {("GET", "/health")} == table


@pytest.mark.parametrize("op", OPERATIONS, ids=[op.name for op in OPERATIONS])
def test_each_mode_grants_an_operation_to_exactly_the_roles_of_its_row(
    op: Operation[Any, Any], modes: dict[str, dict[str, Store]]
) -> None:
    for mode, stores in modes.items():
        # Embedded: every role's call on one connection (each still its own check).
        with holding(next(iter(stores.values()))):
            for role, store in stores.items():
                assert refused(store, op) == (role not in op.permission.roles), (mode, role)
