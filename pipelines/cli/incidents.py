"""`hilt incident open|update|close|list`: the incident register (EU AI Act Art. 73, GDPR
Art. 33).

The store computes each incident's deadline from its kind and the time it became known, and
decides who may close it (a serious one: a lead who did not open it). These commands ask;
they print what the store answered.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from hilt.pipelines.cli.common import WorkspaceOpt, guard
from hilt.pipelines.store.incidents import KINDS, OPEN_STATUSES
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.oversight import time_left

if TYPE_CHECKING:
    from hilt.pipelines.store import Store
    from hilt.pipelines.store.incidents import Incident

T = TypeVar("T")

incident_app = typer.Typer(
    help="The incident register: serious incidents (AI Act 73), personal-data breaches "
    "(GDPR 33), malfunctions; deadlines and who was told.",
    no_args_is_help=True,
)

AsOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="The store user acting (default: the token's owner when a store service owns "
        "the workspace, else the operating-system user with the admin role).",
        show_default=False,
    ),
]
IdArg = Annotated[str, typer.Argument(help="The incident's id (INC- and a number, e.g. INC-12).")]


def _as(ws: Workspace, as_user: str | None, act: Callable[[Store], T]) -> T:
    from hilt.pipelines.store import Identity, Need, open_store_as

    need = Need(frozenset({"lead", "admin", "dpo"}), "handle incidents")

    def run() -> T:
        who = Identity(name=as_user, operator=as_user is None)
        with closing(open_store_as(ws, who, need=need)) as store:
            return act(store)

    return guard(run)


def describe(i: Incident) -> str:
    """One line per incident: id, kind, status, deadline and time left, who was told."""
    if i.closed:
        state = f"closed by {i.closed_by} at {i.closed_at}"
    elif i.deadline is None:
        state = "no reporting deadline"
    else:
        state = f"deadline {i.deadline} ({time_left(i.seconds_left)})"
    told = ", ".join(f"{n.recipient} at {n.told_at}" for n in i.notifications) or "nobody"
    flag = "OVERDUE " if i.overdue else ""
    late = " (reported late)" if i.reported_late else ""
    return (
        f"{flag}{i.incident_id} {i.kind} [{i.provision}] {i.status}, source {i.source}, "
        f"known {i.known_at}, {state}; told: {told}{late}"
    )


@incident_app.command("open")
def incident_open(
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(KINDS)}.")],
    summary: Annotated[str, typer.Option(help="What happened (kept in the store only).")],
    known_at: Annotated[
        str | None,
        typer.Option(help="When it became known (ISO-8601; not in the future; default now)."),
    ] = None,
    workspace: WorkspaceOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Open an incident; the store sets its deadline from the kind and --known-at."""
    ws = Workspace.at(workspace)
    i = _as(ws, as_user, lambda s: s.open_incident(kind, summary, known_at))
    typer.echo(f"opened {describe(i)}")


@incident_app.command("update")
def incident_update(
    incident_id: IdArg,
    note: Annotated[str | None, typer.Option(help="A note (kept in the store only).")] = None,
    status: Annotated[str | None, typer.Option(help=f"One of: {', '.join(OPEN_STATUSES)}.")] = None,
    told: Annotated[
        str | None, typer.Option(help="Who was told (e.g. the supervisory authority).")
    ] = None,
    told_at: Annotated[
        str | None, typer.Option(help="When they were told (ISO-8601; default now).")
    ] = None,
    workspace: WorkspaceOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Add a note, change the status, or record who was told when."""
    ws = Workspace.at(workspace)
    i = _as(ws, as_user, lambda s: s.update_incident(incident_id, note, status, told, told_at))
    typer.echo(f"updated {describe(i)}")


@incident_app.command("close")
def incident_close(
    incident_id: IdArg,
    reason: Annotated[str, typer.Option(help="Why it is over (kept in the store only).")],
    workspace: WorkspaceOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Close an incident; a serious one needs a lead who did not open it."""
    ws = Workspace.at(workspace)
    i = _as(ws, as_user, lambda s: s.close_incident(incident_id, reason))
    typer.echo(f"closed {describe(i)}")


@incident_app.command("list")
def incident_list(
    all_: Annotated[bool, typer.Option("--all", help="Closed incidents too.")] = False,
    workspace: WorkspaceOpt = None,
    as_user: AsOpt = None,
) -> None:
    """The register (open incidents by default), with deadlines; overdue ones first."""
    ws = Workspace.at(workspace)
    found = _as(ws, as_user, lambda s: s.incidents(open_only=not all_))
    found.sort(key=lambda i: (not i.overdue, i.closed, i.deadline or "~"))
    for i in found:
        typer.echo(describe(i))
    overdue = sum(i.overdue for i in found)
    typer.echo(f"{len(found)} incidents, {overdue} overdue")
