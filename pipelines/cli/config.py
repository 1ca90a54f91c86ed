"""`hilt config draft|status|apply|approve|reject`: a first hilt.toml drafted from a case file,
and changes to the workspace's hilt.toml.

The store acts on the config in force, the version of hilt.toml it recorded last; while the
workspace's file differs from it, every other command is refused. An admin records an edit
with `config apply`: in force at once, unless it loosens a rule that protects people (the
retention periods, the display of personal columns, the gate, the review and oversight
safeguards, the pinned audit key, how people are identified): then it waits for a lead who
is not that admin (`config approve` / `config reject`), and the file goes back to the
config in force meanwhile. Every step is one audited transaction of the store.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from hilt.pipelines.cli.common import WorkspaceOpt, guard
from hilt.pipelines.cli.oversight import LeadOpt
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from hilt.pipelines.store import Store
    from hilt.pipelines.store.config_records import ConfigApplied, ConfigStatus, ConfigVersion

T = TypeVar("T")

config_app = typer.Typer(
    help="The config in force, and changes to the workspace's hilt.toml.", no_args_is_help=True
)

AdminOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="The admin acting (default: the token's owner when a store service owns the "
        "workspace, else the operating-system user with the admin role).",
        show_default=False,
    ),
]
VersionArg = Annotated[
    int | None,
    typer.Argument(help="The pending version (default: the one pending).", show_default=False),
]


@config_app.command("draft")
def config_draft(
    file: Annotated[Path, typer.Argument(help="Cases as .csv or .parquet.")],
    target: Annotated[str, typer.Option("--target", help="The column holding the label.")],
    id_column: Annotated[
        str | None,
        typer.Option("--id", help="The case id column (default: guessed).", show_default=False),
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(
            "--subject", help="The person's id column (default: guessed).", show_default=False
        ),
    ] = None,
    max_levels: Annotated[
        int, typer.Option("--max-levels", help="A text column with more levels is a string.")
    ] = 30,
) -> None:
    """Draft hilt.toml from a case file on standard output, every guess commented:
    `hilt config draft cases.csv --target risk > hilt.toml`."""
    from hilt.pipelines.config_draft import draft_config

    draft = guard(
        lambda: draft_config(
            file, target=target, id_column=id_column, subject=subject, max_levels=max_levels
        )
    )
    typer.echo(draft.text, nl=False)
    typer.echo(
        f"drafted {len(draft.columns)} columns from {draft.rows} rows: "
        f"{len(draft.features)} features, {len(draft.personal)} personal, "
        f"{len(draft.protected)} protected; check every commented guess",
        err=True,
    )


def _on_config(ws: Workspace, who: str | None, operator: bool, act: Callable[[Store], T]) -> T:
    """``act`` on the store as ``who``, opened for the config operations (which run while
    hilt.toml differs from the config in force)."""
    from hilt.pipelines.store import Identity, open_store_as

    identity = Identity(name=who, operator=operator)
    with closing(open_store_as(ws, identity, for_config=True)) as store:
        return act(store)


def _version_line(v: ConfigVersion) -> str:
    return (
        f"version {v.version} (sha256 {v.sha256[:12]}…), applied by {v.applied_by} at "
        f"{v.applied_at} (audit seq {v.applied_seq})"
    )


def _changes(v: ConfigVersion) -> list[str]:
    lines = [
        f"  {label}: {', '.join(keys)}"
        for label, keys in (("changed", v.changed), ("added", v.added), ("removed", v.removed))
        if keys
    ]
    if v.users_changed:
        lines.append(
            "  [access.users] changed: the store's users change only with "
            "`hilt users sync --as ADMIN`"
        )
    return lines or ["  no key changed (comments or layout only)"]


def _loosens(v: ConfigVersion) -> list[str]:
    return [f"  loosens {line}" for line in v.loosens]


def _status_lines(status: ConfigStatus) -> list[str]:
    lines = [f"in force: {_version_line(status.in_force)}"]
    if status.in_force.decided_by:
        lines.append(
            f"  approved by {status.in_force.decided_by} (audit seq {status.in_force.decided_seq})"
        )
    pending = status.pending
    if pending is not None:
        lines.append(f"pending a lead's approval: {_version_line(pending)}")
        lines += _loosens(pending)
        lines.append(
            f"  a lead who is not {pending.applied_by} approves it with `hilt config approve "
            f"{pending.version} --as LEAD`, or rejects it with `hilt config reject "
            f"{pending.version} --as LEAD`"
        )
    if status.problem is None:
        lines.append("hilt.toml: the config in force")
    else:
        lines.append(f"hilt.toml: {status.problem}")
    return lines


@config_app.command("status")
def config_status(workspace: WorkspaceOpt = None, as_user: AdminOpt = None) -> None:
    """What is in force, what waits for a lead, and whether hilt.toml differs."""
    ws = Workspace.at(workspace)
    status = guard(lambda: _on_config(ws, as_user, True, lambda s: s.config_status()))
    typer.echo("\n".join(_status_lines(status)))


def _applied_lines(done: ConfigApplied) -> list[str]:
    v = done.version
    if done.outcome == "unchanged":
        return [f"hilt.toml is the config in force (version {v.version}); nothing to apply"]
    lines = []
    if done.withdrawn is not None:
        lines.append(f"withdrew the pending version {done.withdrawn}")
    if done.outcome == "applied":
        lines.append(f"config version {v.version} in force (audit seq {v.applied_seq})")
        return lines + _changes(v)
    lines.append(
        f"config version {v.version} waits for a lead's approval (audit seq {v.applied_seq}); "
        "it loosens rules that protect people:"
    )
    lines += _loosens(v)
    lines += _changes(v)
    lines.append(
        f"hilt.toml is back to the config in force (version {v.base_version}) until a lead who "
        f"is not {v.applied_by} approves it: `hilt config approve {v.version} --as LEAD`"
    )
    return lines


@config_app.command("apply")
def config_apply(workspace: WorkspaceOpt = None, as_user: AdminOpt = None) -> None:
    """Record the edited hilt.toml (an admin): in force at once, or, where it loosens a rule
    that protects people, pending a lead's approval."""
    ws = Workspace.at(workspace)
    done = guard(lambda: _on_config(ws, as_user, True, lambda s: s.config_apply()))
    typer.echo("\n".join(_applied_lines(done)))


def _decided(v: ConfigVersion) -> str:
    if v.state == "in-force":
        return (
            f"config version {v.version} in force, approved by {v.decided_by} (audit seq "
            f"{v.decided_seq}); hilt.toml now holds it"
        )
    return (
        f"config version {v.version} rejected by {v.decided_by} (audit seq {v.decided_seq}); "
        f"version {v.base_version} stays in force"
    )


@config_app.command("approve")
def config_approve(
    as_user: LeadOpt, version: VersionArg = None, workspace: WorkspaceOpt = None
) -> None:
    """Bring the pending change into force (a lead who is not the admin who applied it)."""
    ws = Workspace.at(workspace)
    typer.echo(
        _decided(guard(lambda: _on_config(ws, as_user, False, lambda s: s.config_approve(version))))
    )


@config_app.command("reject")
def config_reject(
    as_user: LeadOpt, version: VersionArg = None, workspace: WorkspaceOpt = None
) -> None:
    """Refuse the pending change (a lead); the config in force stays."""
    ws = Workspace.at(workspace)
    typer.echo(
        _decided(guard(lambda: _on_config(ws, as_user, False, lambda s: s.config_reject(version))))
    )
