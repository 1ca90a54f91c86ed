"""`hilt check go-live`: whether the deployment may go (or stay) live.

The store decides (``go_live_check``, from its model registry, hilt.toml's ``[governance]``,
the signed checkpoints and the audit log); this command prints its answer: one line per
requirement, and exit 6 when anything is missing.
"""

from __future__ import annotations

from contextlib import closing
from typing import TYPE_CHECKING

import typer

from hilt.pipelines.cli.common import EXIT_NOT_READY, WorkspaceOpt, guard
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.store.governance_records import GoLiveReport

check_app = typer.Typer(help="Checks before and after going live.", no_args_is_help=True)


@check_app.command("go-live")
def go_live(workspace: WorkspaceOpt = None) -> None:
    """List what going live needs: a champion approved by a lead, the intended purpose and
    the risk owner, a DPIA (GDPR Art. 35) and a FRIA (EU AI Act Art. 27) within their review
    period, a recent signed audit checkpoint, a recent monitoring run, and no serious
    incident open. Exit 6 when anything is missing."""
    from hilt.pipelines.store import Identity, Need, open_store_as

    ws = Workspace.at(workspace)
    need = Need(frozenset({"auditor", "admin", "lead", "dpo", "data-scientist"}), "check go-live")

    def run() -> GoLiveReport:
        with closing(open_store_as(ws, Identity(operator=True), need=need)) as store:
            return store.go_live_check()

    report = guard(run)
    for item in report.items:
        typer.echo(f"{'ok' if item.ok else 'MISSING':<8} {item.check:<17} {item.detail}")
    if not report.ready:
        typer.echo(
            f"not ready to go live: {len(report.missing)} of {len(report.items)} "
            f"requirements missing ({', '.join(i.check for i in report.missing)})"
        )
        raise typer.Exit(EXIT_NOT_READY)
    typer.echo(f"ready to go live (checked at {report.checked_at})")
