"""`hilt docs model`: a model version's technical documentation (EU AI Act Art. 11, Annex IV)."""

from __future__ import annotations

from typing import Annotated

import typer

from hilt.pipelines.cli.common import WorkspaceOpt, guard, quiet_mlflow
from hilt.pipelines.workspace import Workspace

docs_app = typer.Typer(
    help="Technical documentation (EU AI Act Art. 11, Annex IV).", no_args_is_help=True
)


@docs_app.command("model")
def docs_model(
    version: Annotated[str, typer.Argument(help="Registered version: 3, v3 or NAME/v3.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Write the version's technical documentation and model card (Markdown and offline
    HTML) into the workspace's docs/, from MLflow and the audit log."""
    from hilt.pipelines.compliance.model_docs import write_model_docs

    ws = Workspace.at(workspace)
    quiet_mlflow()
    written = guard(lambda: write_model_docs(ws, version))
    typer.echo(f"wrote {written.markdown}")
    typer.echo(f"wrote {written.html}")
    for image in written.images:
        typer.echo(f"wrote {image}")
    for line in written.disagreements:
        typer.echo(line)
