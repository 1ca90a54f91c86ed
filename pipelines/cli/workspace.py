"""`hilt init` and `hilt ingest`: create a workspace, add cases to it."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer

from hilt.pipelines.cli.common import WorkspaceOpt, guard, quiet_mlflow
from hilt.pipelines.workspace import Workspace


def init(
    config: Annotated[Path, typer.Option("--config", "-c", help="The use case's hilt.toml.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Create a workspace: store, signing key, pinned public key, users from the config, and
    its MLflow tracking store (created here once, not by the first run), or its experiment on
    the MLflow server ``[tracking] uri`` names (checked to answer before anything is made)."""
    from hilt.pipelines.config import load_settings
    from hilt.pipelines.loop.tracking.client import configure
    from hilt.pipelines.loop.tracking.environment import (
        require_reachable,
        shown_uri,
        tracking_choice,
    )
    from hilt.pipelines.store.create import create_workspace

    ws = Workspace.at(workspace)
    guard(lambda: require_reachable(tracking_choice(ws, settings=load_settings(config))))
    public = guard(lambda: create_workspace(ws, config))
    quiet_mlflow()
    guard(lambda: configure(ws))
    typer.echo(f"created workspace {ws.root}")
    typer.echo(f"MLflow tracking store: {shown_uri(tracking_choice(ws).uri)}")
    typer.echo(f"audit public key (pinned in {ws.config_path.name}; keep a copy): {public}")


def ingest(
    file: Annotated[Path, typer.Argument(help="Cases as .csv or .parquet.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Add cases; an optional target column seeds the training data (label source 'original')."""
    from hilt.pipelines.store import Identity, Need, open_store_as
    from hilt.pipelines.tables import read_table

    ws = Workspace.at(workspace)
    need = Need(frozenset({"admin", "system", "data-scientist"}), "ingest cases")

    def run() -> str:
        frame = read_table(file)
        with closing(open_store_as(ws, Identity(operator=True), need=need)) as store:
            result = store.ingest_cases(frame)
        return (
            f"ingested {result.rows} cases as audit seq {result.seq} "
            f"(batch digest sha256:{result.digest})"
        )

    typer.echo(guard(run))
