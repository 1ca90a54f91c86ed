"""`hilt halt`, `hilt resume` and `hilt gold add`: human oversight outside the dashboard.

Halt and resume act as a named lead; the store enforces the lead role and the four eyes of
a resume (not the person who halted). While halted, runs are refused (exit 4, audited
``run.refused``), the store refuses predictions from anyone, and new cases wait in the
review queue without one.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING, Annotated

import typer

from hilt.pipelines.cli.common import AsUserOpt, WorkspaceOpt, guard, quiet_mlflow
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.store import Store
    from hilt.pipelines.store.oversight_records import SystemState

gold_app = typer.Typer(help="Gold cases: known answers mixed into the review queues.")

LeadOpt = Annotated[
    str, typer.Option("--as", help="The lead acting (a store user with the lead role).")
]


def _as_lead(ws: Workspace, user: str, act: Callable[[Store], SystemState]) -> SystemState:
    """``act`` on the store as the lead ``user``: through the service if one owns the
    workspace ($HILT_TOKEN must then be that user's), else embedded as that user."""
    from hilt.pipelines.store import Identity, Need, open_store_as

    need = Need(frozenset({"lead"}), "halt or resume scoring and retraining")
    with closing(open_store_as(ws, Identity(name=user), need=need)) as store:
        return act(store)


def halt(
    as_user: LeadOpt,
    reason: Annotated[str, typer.Option(help="Why (kept in the store; audited as its sha256).")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Stop scoring and retraining at once (a lead); new cases wait for manual review."""
    ws = Workspace.at(workspace)
    state = guard(lambda: _as_lead(ws, as_user, lambda store: store.halt(reason)))
    typer.echo(
        f"halted by {state.changed_by} (audit seq {state.seq}): scoring and retraining are "
        "refused, new cases wait for manual review; a second lead resumes with "
        "`hilt resume --as LEAD`"
    )


def resume(as_user: LeadOpt, workspace: WorkspaceOpt = None) -> None:
    """Resume after a halt: a second lead, not the one who halted."""
    ws = Workspace.at(workspace)
    state = guard(lambda: _as_lead(ws, as_user, lambda store: store.resume()))
    typer.echo(f"resumed by {state.changed_by} (audit seq {state.seq})")


@gold_app.command("add")
def gold_add(
    count: Annotated[int, typer.Option(help="How many gold cases to add.")],
    workspace: WorkspaceOpt = None,
    as_user: AsUserOpt = None,
) -> None:
    """Score holdout cases with the champion and make COUNT of them gold cases."""
    from hilt.pipelines.loop.oversight import add_gold_with_champion

    ws = Workspace.at(workspace)
    quiet_mlflow()
    result = guard(lambda: add_gold_with_champion(ws, count, as_user))
    typer.echo(
        f"{result.added} gold cases added, scored by {result.model_version} (wrong on "
        f"{result.model_wrong} of them); audit seq {result.seq}"
    )
