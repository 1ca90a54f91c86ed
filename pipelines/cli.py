"""The `hilt` command.

Every command takes ``--workspace DIR`` (default: $HILT_WORKSPACE, else ./workspace).
Exit codes: 0 done; 1 the audit log does not verify; 2 a user error (bad input, bad config,
unknown user or role, store busy), with a one-line message and no stack trace; 3 an
internal error of the store (set HILT_DEBUG=1 to see its trace).

Commands run on the workspace folder act as the operating-system user, with the admin role:
whoever can write the workspace's files holds the store anyway, and the audit log records
which login did it (``os:<login>``).
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import polars as pl
import typer

from hilt.pipelines.errors import HiltError, InputError, StoreError
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.store.embedded import EmbeddedStore
    from hilt.pipelines.store.records import VerifyReport

T = TypeVar("T")

app = typer.Typer(
    name="hilt",
    help="hilt: human-in-the-loop review and retraining of ML decisions, with a "
    "tamper-evident audit log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
store_app = typer.Typer(help="The feedback store.", no_args_is_help=True)
users_app = typer.Typer(help="Users and API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(store_app, name="store")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder (default: $HILT_WORKSPACE, else ./workspace).",
        show_default=False,
    ),
]


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body; user errors become one line and exit 2, never a trace."""
    try:
        return fn()
    except StoreError as e:
        if os.environ.get("HILT_DEBUG"):
            raise
        code = 2 if e.kind == "busy" else 3
        _fail(str(e), code)
    except HiltError as e:
        _fail(str(e), 2)


def _operator(ws: Workspace) -> EmbeddedStore:
    """The workspace's store, acting as the operating-system user with the admin role."""
    from hilt.pipelines.store.embedded import EmbeddedStore
    from hilt.pipelines.store.records import User

    if not ws.exists():
        raise InputError(f"{ws.root} is not a hilt workspace (create one with `hilt init`)")
    return EmbeddedStore(ws, ws.settings(), User(name=f"os:{getpass.getuser()}", roles=["admin"]))


def read_table(path: Path) -> pl.DataFrame:
    """Read a CSV (every column as text, so validation names bad values) or Parquet file."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema=False)
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise InputError(f"{path}: cannot read the file ({type(e).__name__})") from None
    raise InputError(f"{path}: expected a .csv or .parquet file")


@app.command()
def init(
    config: Annotated[Path, typer.Option("--config", "-c", help="The use case's hilt.toml.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Create a workspace: store, signing key, pinned public key, users from the config."""
    from hilt.pipelines.store.create import create_workspace

    ws = Workspace.at(workspace)
    public = _guard(lambda: create_workspace(ws, config))
    typer.echo(f"created workspace {ws.root}")
    typer.echo(f"audit public key (pinned in {ws.config_path.name}; keep a copy): {public}")


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="Cases as .csv or .parquet.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Add cases; an optional target column seeds the training data (label source 'original')."""
    ws = Workspace.at(workspace)

    def run() -> str:
        frame = read_table(file)
        result = _operator(ws).ingest_cases(frame)
        return (
            f"ingested {result.rows} cases as audit seq {result.seq} "
            f"(batch digest sha256:{result.digest})"
        )

    typer.echo(_guard(run))


@store_app.command("serve")
def store_serve(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    host: Annotated[str, typer.Option(help="Interface; keep 127.0.0.1 behind a proxy.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Own the store and serve it over HTTP (OpenAPI at /openapi.json) until Ctrl-C."""
    from hilt.pipelines.store.service import serve

    ws = Workspace.at(workspace)

    def run() -> None:
        if not ws.exists():
            raise InputError(f"{ws.root} is not a hilt workspace (create one with `hilt init`)")
        typer.echo(f"hilt store service for {ws.root} at http://{host}:{port}", err=True)
        serve(ws, host=host, port=port)

    _guard(run)


@app.command()
def serve(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, typer.Option(help="Dashboard (Voila) port.")] = 8866,
    store_port: Annotated[int, typer.Option(help="Store service port.")] = 8765,
    host: Annotated[
        str, typer.Option(help="Interface; keep 127.0.0.1, put a sign-in proxy in front.")
    ] = "127.0.0.1",
) -> None:
    """Serve the dashboards: the store service plus Voila, until Ctrl-C."""
    from hilt.pipelines.dashboard_server import serve_until_stopped, start_dashboards

    ws = Workspace.at(workspace)
    server = _guard(lambda: start_dashboards(ws, host=host, port=port, store_port=store_port))
    typer.echo(f"store service:     http://{host}:{store_port}")
    typer.echo(f"review dashboard:  {server.dashboard_url('review')}")
    typer.echo("(Ctrl-C stops both)")
    serve_until_stopped(server)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="Role to grant.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Grant NAME a role and print a new API token for NAME (shown once)."""
    ws = Workspace.at(workspace)
    grant = _guard(lambda: _operator(ws).add_user(name, role))
    typer.echo(f"user {grant.user} (roles: {', '.join(grant.roles)})")
    typer.echo(f"token (shown once, only its hash is stored): {grant.token}")


@audit_app.command("verify")
def audit_verify(
    workspace: WorkspaceOpt = None,
    public_key: Annotated[
        str | None,
        typer.Option(help="Verify checkpoints with this key instead of the one in hilt.toml."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Verify a store that a service owns: fetch its log from this URL."),
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="API token for --url (default: $HILT_TOKEN).")
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(help="Checkpoint file (default: the workspace's audit/checkpoints.jsonl)."),
    ] = None,
) -> None:
    """Check the hash chain, every signed checkpoint, and the records against their events.

    On the workspace's file by default. With --url the log and the decisions are fetched
    through the API and checked here. Auditors keep their own copies of the public key and
    of the checkpoint file and pass them with --public-key and --checkpoints: whoever can
    rewrite the workspace can rewrite its copies too.
    """
    ws = Workspace.at(workspace)

    def run() -> VerifyReport:
        from hilt.pipelines.store import locking, open_store
        from hilt.pipelines.store.core import verify_store
        from hilt.pipelines.store.embedded import connect
        from hilt.pipelines.store.remote_verify import verify_remote

        if url is not None:
            key = public_key or (ws.settings().audit.public_key if ws.exists() else None)
            store = open_store(url, token=token)
            try:
                return verify_remote(store, key, checkpoints or ws.checkpoints_path)
            finally:
                store.close()
        if not ws.exists():
            raise InputError(f"{ws.root} is not a hilt workspace")
        settings = ws.settings()
        with locking.exclusive(ws.lock_path, ws.service_file):
            con = connect(ws)
            try:
                return verify_store(con, settings, ws, public_key, checkpoints)
            finally:
                con.close()

    report = _guard(run)
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(workspace: WorkspaceOpt = None) -> None:
    """Sign (seq, head hash, time) and append it to the checkpoint file outside the database."""
    ws = Workspace.at(workspace)
    cp = _guard(lambda: _operator(ws).checkpoint())
    typer.echo(f"checkpoint seq {cp.seq} head {cp.head_hash} at {cp.time}")


@app.command()
def demo(
    workspace: WorkspaceOpt = None,
    config: Annotated[Path, typer.Option(help="Use-case config.")] = Path("data/hilt.toml"),
    data: Annotated[Path, typer.Option(help="Cases to load.")] = Path("data/german_credit.csv"),
    port: Annotated[int, typer.Option(help="Dashboard (Voila) port.")] = 8866,
    store_port: Annotated[int, typer.Option(help="Store service port.")] = 8765,
    serve_dashboards: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """Set up the demo workspace once (cases, a first model, a scored review queue), then
    serve the dashboards."""
    from hilt.pipelines.store.create import create_workspace

    ws = Workspace.at(workspace or "workspace/demo")

    def run() -> str:
        if not ws.exists():
            create_workspace(ws, config)
            typer.echo(f"created demo workspace {ws.root}")
        store = _operator(ws)
        settings = ws.settings()
        if store.counts()["cases"] == 0:
            result = store.ingest_cases(read_table(data))
            typer.echo(f"loaded {result.rows} demo cases from {data}")
        if store.counts()["predictions"] == 0:
            from hilt.pipelines.scoring import demo_first_model

            version = demo_first_model(store, settings, ws.root / "models")
            typer.echo(f"trained a first model ({version}) and scored a review queue")
        status = store.queue_status()
        typer.echo(f"review queue: {status.waiting} cases waiting")
        grant = store.add_user("dana", "admin")
        return grant.token

    token = _guard(run)
    typer.echo(f"API token for dana (data-scientist, admin): {token}")
    if not serve_dashboards:
        return
    from hilt.pipelines.dashboard_server import serve_until_stopped, start_dashboards

    server = _guard(lambda: start_dashboards(ws, port=port, store_port=store_port))
    typer.echo("")
    typer.echo(f"store service:     http://127.0.0.1:{store_port}   (OpenAPI: /openapi.json)")
    typer.echo(f"review dashboard:  {server.dashboard_url('review')}")
    typer.echo("(the dashboard acts as the workspace's local user; Ctrl-C stops everything)")
    serve_until_stopped(server)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
