"""The data scientist's doors: `hilt lab` (JupyterLab on the workspace, with the project's
kernel and the runs' environment) and `hilt tracking ui` (the MLflow UI on the workspace's
tracking store). Both listen on 127.0.0.1 only and run until Ctrl-C."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Annotated

import typer

from hilt.pipelines.cli.common import WorkspaceOpt, guard, port_option
from hilt.pipelines.workspace import Workspace

tracking_app = typer.Typer(help="The MLflow tracking store of a workspace.", no_args_is_help=True)


def _run_until_stopped(alive: Callable[[], bool], stop: Callable[[], None]) -> None:
    """Block until Ctrl-C or SIGTERM, or until the server exits; then stop it."""

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        while alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def lab(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, port_option("JupyterLab's port (on 127.0.0.1).")] = 8888,
    browser: Annotated[bool, typer.Option(help="Open the URL in a browser.")] = False,
) -> None:
    """Open JupyterLab on the workspace with the project's kernel and the environment the
    runs use; prints the URL of notebooks/explore.ipynb with its token. Ctrl-C stops it."""
    from hilt.pipelines.dashboards.lab import start_lab

    ws = Workspace.at(workspace)
    server = guard(lambda: start_lab(ws, port=port))
    typer.echo(f"JupyterLab: {server.url}")
    typer.echo(f"workspace:  {ws.root}")
    typer.echo("(Ctrl-C stops it)")
    if browser:
        import webbrowser

        webbrowser.open(server.url)
    _run_until_stopped(lambda: server.process.poll() is None, server.stop)


@tracking_app.command("ui")
def tracking_ui(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, port_option("The UI's port (on 127.0.0.1).")] = 5000,
) -> None:
    """Run the MLflow UI on the workspace's tracking store (loopback only) until Ctrl-C; when
    the runs go to a tracking server, print its URL instead."""
    from hilt.pipelines.loop.tracking.ui import server_url, start_ui

    ws = Workspace.at(workspace)
    remote = guard(lambda: server_url(ws.require(), ws.require().settings()))
    if remote is not None:
        typer.echo(f"MLflow UI: {remote} (the workspace's tracking server)")
        return
    ui = guard(lambda: start_ui(ws, port=port))
    typer.echo(f"MLflow UI: {ui.url}")
    typer.echo("(Ctrl-C stops it)")
    _run_until_stopped(lambda: ui.process.poll() is None, ui.stop)
