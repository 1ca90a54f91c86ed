"""`hilt serve` and `hilt demo`: the dashboards (the store service plus Voila), and the demo
workspace that `hilt demo` sets up before serving them (pipelines/loop/demo.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hilt.pipelines.cli.common import (
    EXIT_USER_ERROR,
    WorkspaceOpt,
    fail,
    guard,
    port_option,
    quiet_mlflow,
    run_guard,
)
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.dashboards.server import DashboardServer
    from hilt.pipelines.loop.demo import DemoStep


def _echo_dashboards(server: DashboardServer) -> None:
    from hilt.pipelines.dashboards.access import identity_mode

    access = server.workspace.settings().access
    if access.proxy_secret_sha256 is None and access.local_user is not None:
        # Single-person mode: the sign-in page first (pick a role; no password, demo mode).
        typer.echo(f"sign in (demo):    {server.dashboard_url('signin')}")
    typer.echo(f"review dashboard:  {server.dashboard_url('review')}")
    typer.echo(f"audit dashboard:   {server.dashboard_url('audit')}")
    typer.echo(f"oversight (leads): {server.dashboard_url('oversight')}")
    if server.store_log is not None:
        typer.echo(f"store service log: {server.store_log}")
    typer.echo(f"identity:          {identity_mode(access)}")


def serve(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, port_option("Dashboard (Voila) port.")] = 8866,
    store_port: Annotated[int, port_option("Store service port.")] = 8765,
    host: Annotated[
        str, typer.Option(help="Interface; keep 127.0.0.1, put a sign-in proxy in front.")
    ] = "127.0.0.1",
    store_url: Annotated[
        str | None,
        typer.Option(
            help="Serve only the dashboards, against the store service at this URL (on "
            "another host); the gateway token comes from $HILT_GATEWAY_TOKEN or --token-file.",
            show_default=False,
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="With --store-url: a file holding the gateway token.", show_default=False
        ),
    ] = None,
) -> None:
    """Serve the dashboards: the store service plus Voila, until Ctrl-C; with --store-url,
    only Voila, against a store service elsewhere."""
    from hilt.pipelines.dashboards.server import (
        serve_until_stopped,
        start_dashboards,
        stop_on_sigterm,
    )

    stop_on_sigterm()  # also while starting: what started is stopped, nothing left behind
    if store_url is not None:
        if workspace is not None:
            fail("--store-url serves no workspace: give --store-url or --workspace, not both", 2)
        _serve_remote(store_url, token_file, host, port)
        return
    if token_file is not None:
        fail("--token-file goes with --store-url", 2)
    ws = Workspace.at(workspace)
    guard(ws.require)
    _require_free_ports(port, store_port, host)
    server = guard(lambda: start_dashboards(ws, host=host, port=port, store_port=store_port))
    typer.echo(f"store service:     http://{host}:{store_port}")
    _echo_dashboards(server)
    typer.echo("(Ctrl-C stops both)")
    serve_until_stopped(server)


def _serve_remote(store_url: str, token_file: Path | None, host: str, port: int) -> None:
    import os

    from hilt.pipelines.dashboards.access import identity_mode
    from hilt.pipelines.dashboards.remote import gateway_token, start_remote_dashboards
    from hilt.pipelines.dashboards.server import serve_until_stopped

    server = guard(
        lambda: start_remote_dashboards(
            store_url, gateway_token(token_file, os.environ), host=host, port=port
        )
    )
    typer.echo(f"store service:     {server.store_url} (elsewhere; config in force from it)")
    typer.echo(f"review dashboard:  {server.dashboard_url('review')}")
    typer.echo(f"identity:          {identity_mode(server.settings.access)}")
    typer.echo(
        "(the audit and oversight dashboards need the workspace: serve them on the store's host)"
    )
    typer.echo("(Ctrl-C stops the dashboards)")
    serve_until_stopped(server)


def _require_free_ports(port: int, store_port: int, host: str = "127.0.0.1") -> None:
    """Exit 2 at once, naming the option, when the dashboards' or the store service's port is
    taken: most often by a `hilt demo` or `hilt serve` still running."""
    from hilt.pipelines.errors import InputError
    from hilt.pipelines.ports import require_free_port

    for option, p in (("--port", port), ("--store-port", store_port)):
        try:
            require_free_port(host, p)
        except InputError as e:
            fail(
                f"{e} (is a `hilt demo` or `hilt serve` still running? stop it with Ctrl-C, "
                f"or give {option} another port)",
                EXIT_USER_ERROR,
            )


def _demo_step(step: DemoStep, root: Path) -> str:
    """The line(s) `hilt demo` prints for one step of the set-up."""
    from hilt.pipelines.loop.demo import (
        Checkpointed,
        GoldAdded,
        HistoryLoaded,
        Monitored,
        Promoted,
        Retrained,
        Scored,
        WorkspaceCreated,
    )

    match step:
        case WorkspaceCreated():
            return f"created demo workspace {step.root}"
        case HistoryLoaded():
            return (
                f"loaded {step.rows} past applications with known outcomes; "
                f"{step.new_applications} new ones wait in {step.incoming.relative_to(root)}"
            )
        case Retrained():
            run = step.run
            line = f"retrained as {run.author}: run {run.run_id}, gate {run.gate}"
            if run.gate == "passed":
                return line
            return f"{line}\nthe gate rejected the first model; the demo scores with it anyway"
        case Promoted():
            return f"promoted to champion by {step.promotion.approver} (four eyes)"
        case Scored():
            return f"scored the new applications: run {step.run.run_id}"
        case GoldAdded():
            return (
                f"{step.gold.added} gold cases (known answers, the champion wrong on "
                f"{step.gold.model_wrong}) are mixed into the reviewers' queues"
            )
        case Monitored():
            run = step.run
            return f"monitored the champion (post-market monitoring): run {run.run_id}"
        case Checkpointed():
            return f"signed an audit checkpoint at seq {step.checkpoint.seq}"


def demo(
    workspace: WorkspaceOpt = None,
    config: Annotated[Path, typer.Option(help="Use-case config.")] = Path("data/hilt.toml"),
    data: Annotated[Path, typer.Option(help="Cases to load.")] = Path("data/german_credit.csv"),
    port: Annotated[int, port_option("Dashboard (Voila) port.")] = 8866,
    store_port: Annotated[int, port_option("Store service port.")] = 8765,
    serve_dashboards: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve", help="Serve the dashboards after the set-up (or set up only)."
        ),
    ] = True,
) -> None:
    """Set up the demo workspace once, through the real loop, then serve the dashboards.

    The data set is split into history (the first 70 %, outcomes known) and new applications
    (the rest, outcomes withheld). A data scientist of the config retrains on the history
    (the retraining notebook, MLflow), a lead who did not train it promotes the model if it
    passed the gate, and the scoring notebook scores the new applications into the queue."""
    from hilt.pipelines.loop.demo import set_up_demo

    ws = Workspace.at(workspace or "workspace/demo")
    if serve_dashboards:  # before the set-up writes anything (tokens among it)
        _require_free_ports(port, store_port)
    quiet_mlflow()
    setup = run_guard(
        lambda: set_up_demo(
            ws, config, data, on_step=lambda step: typer.echo(_demo_step(step, ws.root))
        )
    )
    typer.echo(f"review queue: {setup.waiting} cases waiting")
    missing = setup.go_live.missing
    typer.echo(
        "go-live check: ready"
        if not missing
        else "go-live check: missing " + "; ".join(f"{m.check}: {m.detail}" for m in missing)
    )
    for t in setup.tokens:
        typer.echo(f"API token for {t.user} ({t.role}): {t.token}")

    if not serve_dashboards:
        return
    from hilt.pipelines.dashboards.server import serve_until_stopped, start_dashboards

    server = guard(lambda: start_dashboards(ws, port=port, store_port=store_port))
    typer.echo("")
    _echo_dashboards(server)  # the sign-in page first, in single-person mode
    typer.echo(f"store service:     http://127.0.0.1:{store_port}   (OpenAPI: /openapi.json)")
    typer.echo("(Ctrl-C stops everything)")
    serve_until_stopped(server)
