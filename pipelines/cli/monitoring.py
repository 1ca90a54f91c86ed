"""`hilt monitor` and `hilt outcomes`: post-market monitoring (EU AI Act Arts. 72, 26(5)).

`hilt monitor` runs notebooks/monitor.ipynb through the runner (the executed notebook in
runs/ is the record); the store gives the verdict and audits it. Exit 0: no threshold was
breached (warnings may be listed); 5 (``EXIT_BREACHED``): at least one breach, each an
audit event; otherwise the usual codes (1 the run failed, 2 refused, 3 store error).
Monitoring runs while a lead's halt holds: it is how one watches a halted system.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hilt.pipelines.cli.common import (
    EXIT_FAILED,
    EXIT_USER_ERROR,
    AsUserOpt,
    WorkspaceOpt,
    fail,
    guard,
    quiet_mlflow,
    run_guard,
)
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.store.monitoring_records import MonitoringVerdict

#: A monitoring run found at least one threshold breached (its verdict audited).
EXIT_BREACHED = 5


def monitor(
    workspace: WorkspaceOpt = None,
    as_user: AsUserOpt = None,
    window: Annotated[
        int,
        typer.Option(
            "--window", help="Days of scored cases to check (default: [monitoring] window_days)."
        ),
    ] = 0,
) -> None:
    """Monitor the champion: drift of the window's cases and scores against its training
    snapshot, override rates, realised and estimated performance; the store's verdict.

    Exit 0 when no threshold was breached, 5 when one was (each breach is an audit event
    and shows on the oversight dashboard), 1 when the run failed, 2 when refused."""
    from hilt.pipelines.loop import runner
    from hilt.pipelines.store import Identity, open_store_as

    ws = Workspace.at(workspace)
    quiet_mlflow()
    if window < 0:
        fail("--window must be >= 0 (0: the config's window)", EXIT_USER_ERROR)
    params = {"window_days": window}
    result = run_guard(
        lambda: runner.execute(ws, runner.RunRequest("monitor", params, author=as_user))
    )

    def verdict_of_run() -> MonitoringVerdict:
        with closing(open_store_as(ws, Identity(name=as_user, operator=True))) as store:
            found = [v for v in store.monitoring_runs(20) if v.run_id == result.run_id]
        if not found:
            fail(f"run {result.run_id} recorded no monitoring verdict in the store", EXIT_FAILED)
        return found[0]

    verdict = guard(verdict_of_run)
    typer.echo(f"run {result.run_id} (monitor, as {result.author}, {result.seconds:.1f} s)")
    typer.echo(
        f"{verdict.model_version}: {verdict.cases} cases in the last {verdict.window_days} "
        f"days; worst: {verdict.worst} (audit seq {verdict.seq})"
    )
    for b in verdict.breaches:
        on = f" {b.feature}" if b.feature else ""
        typer.echo(
            f"  {b.severity}: {b.check}{on}: {b.statistic} {b.value:g} (threshold {b.threshold:g})"
        )
    typer.echo(f"notebook {result.notebook}")
    if verdict.breached:
        raise typer.Exit(EXIT_BREACHED)


def outcomes(
    file: Annotated[
        Path,
        typer.Argument(
            help="Outcomes as .csv or .parquet: the id column, outcome, observed_at (ISO 8601)."
        ),
    ],
    workspace: WorkspaceOpt = None,
) -> None:
    """Record outcomes, the later truth about scored cases (e.g. default within 12 months),
    for realised-performance monitoring. Audited as one batch; never a training or holdout
    label. Unknown ids or classes, duplicates, cases with an outcome already: exit 2, nothing
    written."""
    from hilt.pipelines.store import Identity, Need, open_store_as
    from hilt.pipelines.tables import read_table

    ws = Workspace.at(workspace)
    need = Need(frozenset({"admin", "system", "data-scientist"}), "record outcomes")

    def run() -> str:
        frame = read_table(file)
        with closing(open_store_as(ws, Identity(operator=True), need=need)) as store:
            result = store.record_outcomes(frame)
        counts = ", ".join(f"{k}: {v}" for k, v in result.by_class.items())
        return (
            f"recorded {result.rows} outcomes ({counts}) as audit seq {result.seq} "
            f"(batch digest sha256:{result.digest})"
        )

    typer.echo(guard(run))
