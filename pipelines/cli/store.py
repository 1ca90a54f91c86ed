"""`hilt store serve` and `hilt users add`: the store service, its users and their tokens."""

from __future__ import annotations

from contextlib import closing
from typing import TYPE_CHECKING, Annotated

import typer

from hilt.pipelines.cli.common import WorkspaceOpt, guard
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.store.records import TokenGrant

store_app = typer.Typer(help="The feedback store.", no_args_is_help=True)
users_app = typer.Typer(help="Users and API tokens.", no_args_is_help=True)


@store_app.command("serve")
def store_serve(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    host: Annotated[str, typer.Option(help="Interface; keep 127.0.0.1 behind a proxy.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Own the store and serve it over HTTP (OpenAPI at /openapi.json) until Ctrl-C."""
    from hilt.pipelines.store.modes.service import serve

    ws = Workspace.at(workspace)

    def run() -> None:
        ws.require()
        typer.echo(f"hilt store service for {ws.root} at http://{host}:{port}", err=True)
        serve(ws, host=host, port=port)

    guard(run)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="Role to grant.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Grant NAME a role and print a new API token for NAME (shown once)."""
    from hilt.pipelines.store import Identity, Need, open_store_as

    ws = Workspace.at(workspace)
    need = Need(frozenset({"admin"}), "add users")

    def run() -> TokenGrant:
        with closing(open_store_as(ws, Identity(operator=True), need=need)) as store:
            return store.add_user(name, role)

    grant = guard(run)
    typer.echo(f"user {grant.user} (roles: {', '.join(grant.roles)})")
    typer.echo(f"token (shown once, only its hash is stored): {grant.token}")
