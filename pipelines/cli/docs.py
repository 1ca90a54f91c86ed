"""`hilt docs model`: a model version's technical documentation (EU AI Act Art. 11, Annex IV);
`hilt docs compliance`: the compliance matrix (obligation → the tests that prove it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hilt.pipelines.cli.common import WorkspaceOpt, guard, quiet_mlflow
from hilt.pipelines.workspace import Workspace

docs_app = typer.Typer(
    help="Technical documentation (EU AI Act Art. 11, Annex IV) and the compliance matrix.",
    no_args_is_help=True,
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


@docs_app.command("compliance")
def docs_compliance(
    write: Annotated[
        Path | None,
        typer.Option(
            help="Write the matrix without results (stable, kept in the repo) here instead "
            "of printing it, e.g. docs/compliance.md."
        ),
    ] = None,
    results: Annotated[
        Path | None,
        typer.Option(help="The test run's results file (default: build/test-results.json)."),
    ] = None,
    tests: Annotated[
        Path | None, typer.Option(help="The tests folder to scan (default: the checkout's).")
    ] = None,
) -> None:
    """The compliance matrix: every obligation of the use case (EU AI Act, GDPR), the tests
    that prove it (their ``@pytest.mark.obligation`` markers, read without running them)
    with their last result ("not run" when the results file does not name them), and the
    obligations without a test."""
    from hilt.pipelines.compliance import matrix

    def run() -> str:
        folder = tests or matrix.TESTS_DIR
        if write is not None:
            return matrix.markdown(matrix.generate(folder), with_results=False)
        return matrix.markdown(
            matrix.generate(folder, results or matrix.RESULTS_PATH), with_results=True
        )

    text = guard(run)
    if write is None:
        typer.echo(text, nl=False)
        return
    write.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {write}")
