"""`hilt audit verify` and `hilt audit checkpoint`: the tamper-evident audit log."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hilt.pipelines.cli.common import EXIT_FAILED, WorkspaceOpt, guard
from hilt.pipelines.cli.progress import progress
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.store import Identity
    from hilt.pipelines.store.audit_records import CheckpointRecord, VerifyReport

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    workspace: WorkspaceOpt = None,
    public_key: Annotated[
        str | None,
        typer.Option(help="Verify checkpoints with this key instead of the one in hilt.toml."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Verify a store that a service owns: fetch its log from this URL."),
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="API token for --url (default: $HILT_TOKEN).")
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(help="Checkpoint file (default: the workspace's audit/checkpoints.jsonl)."),
    ] = None,
    start_from: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="CHECKPOINT",
            help="Verify only what came after a signed checkpoint: 'latest' (the newest "
            "whose signature checks) or the seq of a checkpoint in the file.",
        ),
    ] = None,
) -> None:
    """Check the hash chain, every signed checkpoint, and the records against their events.

    On the workspace's file by default. With --url the log and the decisions are fetched
    through the API and checked here. Auditors keep their own copies of the public key and
    of the checkpoint file and pass them with --public-key and --checkpoints: whoever can
    rewrite the workspace can rewrite its copies too.

    The whole log is walked by default (what a scheduled job should run). With --from, the
    stored hash at the checkpoint's seq must be the signed one, and only what came after it
    is checked: a change before the checkpoint is found by the full walk only. A named
    checkpoint whose signature fails is refused (exit 1), never replaced by an older one.

    Where the workspace has an MLflow store (and no --url), MLflow's aliases and tags are
    compared with the store's model registry, which they mirror: each disagreement is one
    DISAGREE line and the exit code is 1, as for a log that does not verify (what people
    read in MLflow is not what the store decided).
    """
    ws = Workspace.at(workspace)

    #: What the store's own verify recorded (an incident), said after the report: (line,
    #: whether it goes to standard error).
    recorded: list[tuple[str, bool]] = []

    def run() -> VerifyReport:
        # Only what each way needs is imported (the store's operations table, polars and
        # the HTTP client are seconds of start-up that a walk of the file does without).
        from hilt.pipelines.store import TOKEN_ENV, Identity, open_store_as
        from hilt.pipelines.store.modes.locking import service_info

        served = ws.exists() and service_info(ws.service_file) is not None
        own_copies = public_key is None and checkpoints is None and start_from is None
        # A service owns the file and we hold a token: verify what it serves, here, with
        # our own key. Otherwise the file itself, read-only (one hashing process per core);
        # where it is broken the store's verify_and_record walks it again and opens an
        # incident, unless the caller brings their own key or checkpoint file or starts from
        # a checkpoint (then it only reads).
        if url is None and not (served and (token or os.environ.get(TOKEN_ENV))):
            from hilt.pipelines.store.audit.verify import verify_file

            with progress("verifying", total=None, unit="checks") as advance:
                report = verify_file(
                    ws, public_key, checkpoints, start_from, processes=True, on_progress=advance
                )
            if not report.ok and own_copies and not served and ws.exists():
                # Broken: the store verifies its own file again and decides (an incident,
                # once per broken seq); this walk's finding alone records nothing.
                own = _verify_and_record(ws, Identity(operator=True), recorded)
                if own is not None:
                    return own
            return report
        from hilt.pipelines.store.audit.remote_verify import verify_remote

        key = public_key or (ws.settings().audit.public_key if ws.exists() else None)
        with closing(open_store_as(url or ws, Identity(token=token))) as store:
            report = verify_remote(store, key, checkpoints or ws.checkpoints_path, start_from)
        if not report.ok and own_copies:
            # The service verifies its own file and records the incident (the fetched
            # copy is this machine's finding; the store decides from its own).
            _verify_and_record(url or ws, Identity(token=token), recorded)
        return report

    report = guard(run)
    if start_from is not None and report.from_checkpoint is None and report.ok:
        typer.echo("no checkpoint signed by the pinned key: the whole log was walked")
    typer.echo(report.summary())
    for line, err in recorded:
        typer.echo(line, err=err)
    mirrored = True
    if url is None and ws.exists():
        lines, mirrored = guard(lambda: _mlflow_mirror(ws))
        for line in lines:
            typer.echo(line)
    if not report.ok or not mirrored:
        raise typer.Exit(EXIT_FAILED)


def _verify_and_record(
    where: Workspace | str, who: Identity, said: list[tuple[str, bool]]
) -> VerifyReport | None:
    """The store's own verification (``verify_and_record``): adds to ``said`` the incident it
    opened or found open for the same break; None when the store could not be opened or
    refused (the caller then verifies the file without recording; standard error says so)."""
    from hilt.pipelines.errors import HiltError
    from hilt.pipelines.store import Need, open_store_as
    from hilt.pipelines.store.incidents import KINDS, VERIFY_KIND

    need = Need(frozenset({"admin", "lead", "dpo", "system"}), "verify and record incidents")
    try:
        with closing(open_store_as(where, who, need=need)) as store:
            outcome = store.verify_and_record()
    except HiltError as e:
        said.append((f"no incident recorded: {e}", True))
        return None
    if outcome.opened:
        kind = KINDS[VERIFY_KIND]
        opened = f"incident {outcome.incident_id} opened ({kind.name}, {kind.provision})"
        said.append((opened, False))
    elif outcome.incident_id is not None:
        said.append((f"incident {outcome.incident_id} already records this break", False))
    elif outcome.not_recorded is not None:
        said.append((f"no incident recorded: {outcome.not_recorded}", True))
    return outcome.report


def _mlflow_mirror(ws: Workspace) -> tuple[list[str], bool]:
    """MLflow's registry against the store's, where the workspace has an MLflow store: one
    line saying they agree, or a DISAGREE line per fact MLflow states otherwise and a closing
    line; and whether they agree (also when there is nothing to compare)."""
    from hilt.pipelines.errors import HiltError
    from hilt.pipelines.loop.tracking.environment import has_tracking_store

    if not has_tracking_store(ws):
        return [], True  # nothing mirrors the registry: the store is not even opened
    from hilt.pipelines.loop.model_registry import mlflow_disagreements
    from hilt.pipelines.store import Identity, Need, open_store_as

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    need = Need(frozenset({"auditor", "admin", "lead", "dpo", "data-scientist"}), "audit read")
    try:
        with closing(open_store_as(ws, Identity(operator=True), need=need)) as store:
            found = mlflow_disagreements(ws, store)
    except HiltError as e:
        return [f"MLflow's registry not compared with the store's: {e}"], True
    if found is None:
        return [], True
    if not found:
        return ["MLflow's registry mirrors the store's model registry"], True
    return [
        *(f.line() for f in found),
        f"MLflow's registry disagrees with the store's model registry in {len(found)} facts: "
        "the store's registry is what scoring and promotion obey; MLflow follows it again at "
        "the next registration, promotion or rejection",
    ], False


@audit_app.command("checkpoint")
def audit_checkpoint(workspace: WorkspaceOpt = None) -> None:
    """Sign (seq, head hash, time) and append it to the checkpoint file outside the database."""
    from hilt.pipelines.store import Identity, Need, open_store_as

    ws = Workspace.at(workspace)
    need = Need(frozenset({"admin", "system", "lead"}), "sign checkpoints")

    def run() -> CheckpointRecord:
        with closing(open_store_as(ws, Identity(operator=True), need=need)) as store:
            return store.checkpoint()

    cp = guard(run)
    typer.echo(f"checkpoint seq {cp.seq} head {cp.head_hash} at {cp.time}")
