"""`hilt init` and `hilt ingest`: create a workspace, add cases to it (all or nothing, or with
``--rejects``: the valid rows, the invalid ones written to a file with their reasons)."""

from __future__ import annotations

import hashlib
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hilt.pipelines.cli.common import EXIT_USER_ERROR, WorkspaceOpt, fail, guard, quiet_mlflow
from hilt.pipelines.cli.progress import progress
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    import polars as pl

    from hilt.pipelines.store.case_records import IngestResult


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
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            help="Land the valid rows and write the invalid ones here (CSV: row, the row's "
            "columns, reason). Without it, one invalid row rejects the whole file.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Add cases; an optional target column seeds the training data (label source 'original')."""
    from hilt.pipelines.store import Identity, Need, open_store_as
    from hilt.pipelines.tables import read_table

    ws = Workspace.at(workspace)
    need = Need(frozenset({"admin", "system", "data-scientist"}), "ingest cases")
    if rejects is not None and rejects.resolve() == file.resolve():
        fail("--rejects names the input file; choose another path", EXIT_USER_ERROR)

    def run() -> list[str]:
        frame = read_table(file)
        with (
            progress("ingesting", total=frame.height, unit="rows") as advance,
            closing(open_store_as(ws, Identity(operator=True), need=need)) as store,
        ):
            result = store.ingest_cases(frame, partial=rejects is not None)
            advance(frame.height)
        lines = [
            f"ingested {result.rows} cases as audit seq {result.seq} "
            f"(batch digest sha256:{result.digest})"
        ]
        if rejects is not None:
            lines.append(_write_rejects(rejects, frame, result))
        return lines

    typer.echo("\n".join(guard(run)))


def _write_rejects(path: Path, frame: pl.DataFrame, result: IngestResult) -> str:
    """Write the rejects file the store audited (its sha256 is in the batch's event)."""
    from hilt.pipelines.errors import InputError
    from hilt.pipelines.tables import rejects_csv

    data = rejects_csv(frame, result.rejected_rows, result.reasons)
    try:
        path.write_bytes(data)
    except OSError as e:
        raise InputError(f"{path}: cannot write the rejects file ({type(e).__name__})") from None
    if not result.rejected:
        return f"rejected 0 rows; {path} lists none"
    written = hashlib.sha256(data).hexdigest()
    same = "" if written == result.rejects_sha256 else " (differs from the audited sha256!)"
    return (
        f"rejected {result.rejected} rows, written to {path} with the reason of each "
        f"(sha256:{written}{same}, audited in seq {result.seq})"
    )
