"""`hilt store serve|backup|restore` and `hilt users ...`: the store service, its backups,
its users and their tokens."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from hilt.pipelines.cli.common import EXIT_STORE_ERROR, WorkspaceOpt, fail, guard, port_option
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.store import Store
    from hilt.pipelines.store.user_records import TokenGrant, UserInfo, UserSync

T = TypeVar("T")

store_app = typer.Typer(help="The feedback store.", no_args_is_help=True)
users_app = typer.Typer(help="Users and API tokens.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="User name.")]
#: ``--as`` of the users commands (an administrator).
AdminOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="The administrator acting (default: the token's owner when a store service owns "
        "the workspace, else the operating-system user with the admin role).",
        show_default=False,
    ),
]


@store_app.command("serve")
def store_serve(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, port_option("TCP port.")] = 8765,
    host: Annotated[str, typer.Option(help="Interface; keep 127.0.0.1 behind a proxy.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Own the store and serve it over HTTP (OpenAPI at /openapi.json) until Ctrl-C."""
    from hilt.pipelines.store.modes.service_http import serve

    ws = Workspace.at(workspace)

    def run() -> None:
        ws.require()
        typer.echo(f"hilt store service for {ws.root} at http://{host}:{port}", err=True)
        try:
            serve(ws, host=host, port=port)
        except SystemExit as e:  # SIGTERM, after the graceful shutdown
            if e.code not in (0, None):
                raise
        end_now()

    guard(run)


def end_now() -> NoReturn:
    """End a service process that stopped cleanly (its database closed, lock released,
    service file removed) at once, exit code 0: the interpreter's teardown would spend
    ~0.4 s of CPU freeing every module for a process that is ending anyway."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


@store_app.command("backup")
def store_backup(
    dest: Annotated[
        Path, typer.Argument(help="A new folder for the backup (on the store's host).")
    ],
    workspace: WorkspaceOpt = None,
    as_user: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Who backs up (admin or system; default: the token's owner when a store "
            "service owns the workspace, else the operating-system user).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Back the store up into DEST, online (through the service when one runs): a verified
    copy as of one audit head, and a manifest. The keys, the erasure ledger, the signing key
    and the checkpoints are NOT in it: back them up apart (README, Backups)."""
    from hilt.pipelines.store import Identity, Need, open_store_as

    ws = Workspace.at(workspace)
    need = Need(frozenset({"admin", "system"}), "back up the store")

    def run() -> None:
        who = Identity(name=as_user, operator=True)
        with closing(open_store_as(ws, who, need=need)) as store:
            report = store.store_backup(str(dest.expanduser().absolute()))
        typer.echo(f"backup {report.path}: head seq {report.head_seq} {report.head_hash}")
        typer.echo(f"store.duckdb sha256 {report.store_sha256} ({report.bytes} bytes)")
        typer.echo(f"manifest sha256 {report.manifest_sha256}; recorded as audit seq {report.seq}")

    guard(run)


@store_app.command("restore")
def store_restore(
    src: Annotated[Path, typer.Argument(help="A folder `hilt store backup` wrote.")],
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="The NEW workspace folder to create.")
    ],
    keys_from: Annotated[
        Path,
        typer.Option(
            "--keys-from",
            help="The folder holding what is kept apart, in a workspace's layout (keys/, "
            "audit/): the old workspace, or its separate key backup.",
        ),
    ],
    as_user: Annotated[
        str | None, typer.Option("--as", help="An administrator.", show_default=False)
    ] = None,
) -> None:
    """Restore SRC into a new workspace: the erasure ledger is replayed (a subject erased
    after the backup stays erased) and the restored log is verified."""
    from hilt.pipelines.store import Identity
    from hilt.pipelines.store.restore import restore

    def run() -> None:
        done = restore(
            src, Workspace.at(workspace), keys_from, Identity(name=as_user, operator=True)
        )
        s, r, v = done.staged, done.reapplied, done.verified
        typer.echo(f"restored {workspace} at head seq {s.head_seq} {s.head_hash}")
        typer.echo(f"kept apart, copied: {', '.join(s.kept_apart) or 'nothing'}")
        typer.echo(
            f"erasure ledger: {r.ledger_entries} entries; re-applied {len(r.subjects)} "
            f"removals; {r.keys_destroyed} keys destroyed"
        )
        typer.echo(f"verify: {v.summary()}")
        if not v.ok:
            fail("the restored store does not verify", EXIT_STORE_ERROR)

    guard(run)


def _as_admin(
    workspace: WorkspaceOpt, as_user: str | None, what: str, act: Callable[[Store], T]
) -> T:
    """``act`` on the workspace's store as an administrator (``--as``, else the operator)."""
    from hilt.pipelines.store import Identity, Need, open_store_as

    ws = Workspace.at(workspace)
    need = Need(frozenset({"admin"}), what)

    def run() -> T:
        who = Identity(name=as_user, operator=True)
        with closing(open_store_as(ws, who, need=need)) as store:
            return act(store)

    return guard(run)


@users_app.command("add")
def users_add(
    name: NameArg,
    role: Annotated[str, typer.Option(help="Role to grant.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Grant NAME a role and print a new API token for NAME (shown once; it expires after
    [access] token_days)."""
    grant: TokenGrant = _as_admin(workspace, None, "add users", lambda s: s.add_user(name, role))
    typer.echo(f"user {grant.user} (roles: {', '.join(grant.roles)})")
    typer.echo(f"token (shown once, only its hash is stored): {grant.token}")
    typer.echo(f"expires {grant.expires_at}")


@users_app.command("revoke")
def users_revoke(name: NameArg, workspace: WorkspaceOpt = None, as_user: AdminOpt = None) -> None:
    """Revoke every token of NAME, at once (also on a running store service)."""
    n = _as_admin(workspace, as_user, "revoke tokens", lambda s: s.revoke_tokens(name))
    if n:
        typer.echo(f"revoked {n} token{'s' if n != 1 else ''} of {name}")
    else:
        typer.echo(f"{name} had no token in force: nothing revoked")


@users_app.command("disable")
def users_disable(name: NameArg, workspace: WorkspaceOpt = None, as_user: AdminOpt = None) -> None:
    """NAME can no longer act, in any mode (their tokens are revoked too)."""
    info = _as_admin(workspace, as_user, "disable users", lambda s: s.disable_user(name))
    typer.echo(f"user {info.name} is disabled: they can no longer act, and hold no token")


@users_app.command("enable")
def users_enable(name: NameArg, workspace: WorkspaceOpt = None, as_user: AdminOpt = None) -> None:
    """Let a disabled user act again (their old tokens stay revoked: `hilt users add` issues
    a new one)."""
    info = _as_admin(workspace, as_user, "enable users", lambda s: s.enable_user(name))
    typer.echo(f"user {info.name} is enabled (roles: {', '.join(info.roles)})")


@users_app.command("sync")
def users_sync(workspace: WorkspaceOpt = None, as_user: AdminOpt = None) -> None:
    """Make the store's users match hilt.toml [access.users], in one audited transaction:
    new users created, users no longer listed disabled (tokens revoked), roles as listed.
    Users hilt.toml never listed (systems, the dashboards' gateway) are left alone."""
    sync: UserSync = _as_admin(workspace, as_user, "sync users", lambda s: s.users_sync())
    for line in _sync_lines(sync):
        typer.echo(line)


def _sync_lines(sync: UserSync) -> list[str]:
    if not sync.changed:
        return ["the users already match hilt.toml: nothing written"]
    lines = [f"created {n} (roles: {', '.join(r)})" for n, r in sync.created.items()]
    lines += [f"listed {n}{' (enabled)' if n in sync.enabled else ''}" for n in sync.listed]
    lines += [f"disabled {n} (no longer in hilt.toml; tokens revoked)" for n in sync.disabled]
    lines += [
        f"roles of {n}: {', '.join(old) or 'none'} -> {', '.join(new)}"
        for n, (old, new) in sync.roles_changed.items()
    ]
    return [*lines, f"recorded as audit seq {sync.seq}"]


@users_app.command("list")
def users_list(workspace: WorkspaceOpt = None, as_user: AdminOpt = None) -> None:
    """The store's users: roles, whether they may act, whether hilt.toml lists them, and
    their tokens in force (never a token)."""
    users: list[UserInfo] = _as_admin(workspace, as_user, "list users", lambda s: s.list_users())
    for u in users:
        state = "active" if u.active else "DISABLED"
        listed = "hilt.toml" if u.in_config else "added"
        tokens = f"{u.tokens} token{'s' if u.tokens != 1 else ''}"
        if u.tokens_expire:
            tokens += f" (last expires {u.tokens_expire})"
        typer.echo(f"{u.name}\t{', '.join(u.roles)}\t{state}\t{listed}\t{tokens}")
