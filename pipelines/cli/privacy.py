"""The GDPR commands: `hilt subject ...` (data-subject rights), `hilt retention apply` and
`hilt records` (the record of processing activities)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from hilt.pipelines.cli.common import (
    EXIT_STORE_ERROR,
    EXIT_USER_ERROR,
    WorkspaceOpt,
    fail,
    guard,
    quiet_mlflow,
)
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.store import Store
    from hilt.pipelines.store.recipient_records import RecipientNotice
    from hilt.pipelines.store.subject_records import RetentionReport, SnapshotRewrite, SubjectAction

T = TypeVar("T")

subject_app = typer.Typer(
    help="Data-subject rights (GDPR Arts. 15-22), as the data-protection officer (role dpo). "
    "The subject is named by their own id; the store keeps it only sealed.",
    no_args_is_help=True,
)
retention_app = typer.Typer(help="Retention periods (GDPR Art. 5(1)(e)).", no_args_is_help=True)

SubjectArg = Annotated[
    str,
    typer.Argument(metavar="EXTERNAL_ID", help="The subject's own id (the data's subject column)."),
]
DpoOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="The data-protection officer acting (a user with the role dpo; with a store "
        "service, the owner of $HILT_TOKEN).",
        show_default=False,
    ),
]
LiftOpt = Annotated[bool, typer.Option("--lift", help="End it.")]


def _as_dpo(ws: Workspace, as_user: str | None, act: Callable[[Store], T]) -> T:
    """``act`` on the store as the data-protection officer, in the guard."""
    from hilt.pipelines.store import Identity, Need, open_store_as

    need = Need(frozenset({"dpo"}), "exercise data-subject rights")

    def run() -> T:
        with closing(open_store_as(ws, Identity(name=as_user), need=need)) as store:
            return act(store)

    return guard(run)


def _said(action: SubjectAction) -> str:
    cases = ", ".join(action.cases) if action.cases else "none"
    return f"{action.action}: subject {action.subject_ref} (cases: {cases}); audit seq {action.seq}"


def _snapshots_rewritten(ws: Workspace, snapshots: list[SnapshotRewrite]) -> None:
    """Print what became of each snapshot that held removed rows, and tag the MLflow runs
    that trained on a regenerated one."""
    from hilt.pipelines.loop.tracking.erasure import tag_regenerated_runs

    for w in snapshots:
        after = f"regenerated as {w.new_name}" if w.new_name else "deleted (no rows left)"
        typer.echo(f"snapshot {w.name}: {w.rows_removed} rows removed, {after}")
    for run_id in guard(lambda: tag_regenerated_runs(ws, ws.settings(), snapshots)):
        typer.echo(f"MLflow run {run_id}: tagged (its snapshot was regenerated)")


@subject_app.command("export")
def subject_export(
    external_id: SubjectArg,
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Write the JSON here (mode 0600) instead of standard output."),
    ] = None,
    notices: Annotated[
        Path | None,
        typer.Option(
            help="Also write the notice about each final decision on the subject's cases "
            "into this new folder (CASE.txt and CASE.html, mode 0600; each issue audited)."
        ),
    ] = None,
) -> None:
    """Everything held about the subject, as JSON (Arts. 15, 20; schema: `hilt subject schema`);
    with --notices, also the notice about each of their final decisions (Art. 86)."""
    from hilt.pipelines.compliance.privacy import write_export

    ws = Workspace.at(workspace)
    if output is not None and output.exists():
        fail(f"{output} exists; refusing to overwrite it", EXIT_USER_ERROR)
    if notices is not None and notices.exists():
        fail(f"{notices} exists; refusing to overwrite it", EXIT_USER_ERROR)
    document = _as_dpo(ws, as_user, lambda s: s.subject_export(external_id))
    if notices is not None:
        _notices_of(ws, as_user, external_id, [c.case_id for c in document.cases], notices)
    if output is None:
        typer.echo(document.model_dump_json(indent=2))
        return
    write_export(document, output)
    typer.echo(
        f"exported subject {document.subject_ref}: {len(document.cases)} cases, "
        f"{len(document.snapshots)} snapshots, {len(document.training_runs)} training runs, "
        f"{len(document.audit_events)} audit events, {len(document.recipients)} recipients "
        f"-> {output}"
    )


@subject_app.command("notice")
def subject_notice(
    external_id: SubjectArg,
    workspace: WorkspaceOpt = None,
    as_user: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Who issues it (a user with the role dpo or admin; with a store service, "
            "the owner of $HILT_TOKEN).",
            show_default=False,
        ),
    ] = None,
    case: Annotated[
        str | None,
        typer.Option(
            help="The notice about this case of the subject (default: their latest final decision)."
        ),
    ] = None,
    html_output: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the notice as HTML here (mode 0600)."),
    ] = None,
) -> None:
    """The notice to the person about their final decision (EU AI Act Art. 86, GDPR Arts.
    13-15, 22(3)): plain text on standard output; its issue is audited
    (subject.notice_issued, with the renderer version and the notice's sha256)."""
    from hilt.pipelines.compliance.decision_notice import IssuedNotice, issue_notice
    from hilt.pipelines.compliance.privacy import write_private
    from hilt.pipelines.store import Identity, Need, open_store_as

    ws = Workspace.at(workspace)
    if html_output is not None and html_output.exists():
        fail(f"{html_output} exists; refusing to overwrite it", EXIT_USER_ERROR)
    quiet_mlflow()
    need = Need(frozenset({"dpo", "admin"}), "issue decision notices")

    def run() -> IssuedNotice:
        with closing(open_store_as(ws, Identity(name=as_user), need=need)) as store:
            return issue_notice(ws, store, ws.settings(), external_id, case)

    issued = guard(run)
    typer.echo(issued.notice.text)
    if html_output is not None:
        write_private(html_output, issued.notice.html)
    typer.echo(
        f"notice {issued.issued.renderer} sha256 {issued.issued.notice_sha256} about decision "
        f"{issued.issued.decision_id}; audit seq {issued.issued.seq}",
        err=True,
    )


def _notices_of(
    ws: Workspace, as_user: str | None, external_id: str, case_ids: list[str], folder: Path
) -> None:
    from hilt.pipelines.compliance.decision_notice import notices_into

    quiet_mlflow()
    settings = ws.settings()
    written = _as_dpo(
        ws, as_user, lambda s: notices_into(ws, s, settings, external_id, case_ids, folder)
    )
    for case_id, sha in written:
        said = f"notice sha256 {sha} -> {folder}" if sha else "no notice (no final decision)"
        typer.echo(f"case {case_id}: {said}", err=True)


@subject_app.command("schema")
def subject_schema() -> None:
    """Print the published JSON schema of `hilt subject export` documents."""
    from hilt.pipelines.compliance.privacy import export_schema_text

    typer.echo(export_schema_text(), nl=False)


@subject_app.command("rectify")
def subject_rectify(
    external_id: SubjectArg,
    set_value: Annotated[
        str, typer.Option("--set", help="COLUMN=VALUE: the corrected value (empty: no value).")
    ],
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
    case: Annotated[
        str | None, typer.Option(help="Only this case of the subject (default: all of them).")
    ] = None,
) -> None:
    """Rectify a value (Art. 16): a superseding record; the next snapshot uses it."""
    if "=" not in set_value:
        fail("--set takes COLUMN=VALUE", EXIT_USER_ERROR)
    column, value = set_value.split("=", 1)
    ws = Workspace.at(workspace)
    action = _as_dpo(
        ws, as_user, lambda s: s.subject_rectify(external_id, column, value or None, case)
    )
    typer.echo(_said(action))


def _restriction(
    kind: str, external_id: str, ws: Workspace, as_user: str | None, lift: bool
) -> None:
    action = _as_dpo(ws, as_user, lambda s: s.subject_restrict(external_id, kind, lift))
    typer.echo(_said(action))


@subject_app.command("restrict")
def subject_restrict(
    external_id: SubjectArg,
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
    lift: LiftOpt = False,
) -> None:
    """Restrict processing (Art. 18): out of training and the review queue until lifted."""
    _restriction("restrict", external_id, Workspace.at(workspace), as_user, lift)


@subject_app.command("object")
def subject_object(
    external_id: SubjectArg,
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
    lift: LiftOpt = False,
) -> None:
    """Record an objection (Art. 21): out of training and the review queue until lifted."""
    _restriction("object", external_id, Workspace.at(workspace), as_user, lift)


@subject_app.command("contest")
def subject_contest(
    external_id: SubjectArg,
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
) -> None:
    """Human review of the subject's latest decision (Art. 22): first in the queue, for a
    reviewer other than the one who decided it."""
    action = _as_dpo(Workspace.at(workspace), as_user, lambda s: s.subject_contest(external_id))
    typer.echo(_said(action))


@subject_app.command("erase")
def subject_erase(
    external_id: SubjectArg,
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
) -> None:
    """Erase the subject (Art. 17): case data deleted, key destroyed (every sealed copy is
    shredded, in the audit log too), identity removed, snapshots regenerated without them,
    MLflow runs that trained on those snapshots tagged. `hilt audit verify` still passes."""
    ws = Workspace.at(workspace)
    quiet_mlflow()
    report = _as_dpo(ws, as_user, lambda s: s.subject_erase(external_id))
    typer.echo(
        f"erased subject {report.subject_ref}: {len(report.cases)} cases, key "
        f"{'destroyed' if report.key_destroyed else 'NOT destroyed'}; audit seq {report.seq}"
    )
    _snapshots_rewritten(ws, report.snapshots)
    if not report.key_destroyed:
        fail(
            "the subject's key could not be destroyed; run `hilt retention apply`", EXIT_STORE_ERROR
        )


@subject_app.command("notify-recipients")
def subject_notify_recipients(
    external_id: Annotated[
        str | None,
        typer.Argument(
            metavar="[EXTERNAL_ID]",
            help="The subject's own id (omit it for an erased subject: give --subject-ref).",
            show_default=False,
        ),
    ] = None,
    recipient: Annotated[
        list[str] | None,
        typer.Option(
            "--recipient",
            help="A recipient named in hilt.toml [processing] recipients that was told "
            "(repeat it for several).",
            show_default=False,
        ),
    ] = None,
    subject_ref: Annotated[
        str | None,
        typer.Option(
            "--subject-ref",
            help="The subject_ref `hilt subject erase` printed (an erased subject's id no "
            "longer leads to them).",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
) -> None:
    """Record that you told a recipient outside the store's API of the subject's
    rectifications, erasure and restrictions not told before (Art. 19). Production systems
    that read decisions through the store are told by their own feed
    (GET /v1/subject-changes) and acknowledge it themselves."""
    if not recipient:
        fail("name the recipient that was told: --recipient NAME", EXIT_USER_ERROR)
    if (external_id is None) == (subject_ref is None):
        fail("name the subject: EXTERNAL_ID, or --subject-ref for an erased one", EXIT_USER_ERROR)

    names = list(recipient)

    def notify(store: Store) -> list[RecipientNotice]:
        return [
            store.subject_notify_recipient(name, subject_id=external_id, subject_ref=subject_ref)
            for name in names
        ]

    for notice in _as_dpo(Workspace.at(workspace), as_user, notify):
        typer.echo(
            f"{notice.recipient} told of subject {notice.subject_ref}'s changes up to seq "
            f"{notice.up_to_seq} (changes: {', '.join(map(str, notice.changes))}); "
            f"audit seq {notice.seq}"
        )


@retention_app.command("apply")
def retention_apply(
    workspace: WorkspaceOpt = None,
    as_user: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Who applies it (admin, system or dpo; default: the operating-system user "
            "as admin, or the owner of $HILT_TOKEN with a store service).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Remove what has passed its retention period (hilt.toml [retention]); idempotent:
    a run with nothing due writes nothing. Exit 0 either way."""
    from hilt.pipelines.store import Identity, Need, open_store_as

    ws = Workspace.at(workspace)
    quiet_mlflow()
    need = Need(frozenset({"admin", "system", "dpo"}), "apply retention")

    def run() -> RetentionReport:
        who = Identity(name=as_user, operator=True)
        with closing(open_store_as(ws, who, need=need)) as store:
            return store.retention_apply()

    report = guard(run)
    if report.seq is None:
        typer.echo(f"retention as of {report.as_of}: nothing due")
        return
    typer.echo(
        f"retention as of {report.as_of} (audit seq {report.seq}): "
        f"{report.cases_removed} cases' data removed, {report.subjects_removed} subjects "
        f"forgotten (keys destroyed), {report.predictions_purged} predictions and "
        f"{report.decisions_purged} decision rows purged"
        + (
            f", audit log purged through seq {report.audit_purged_through}"
            if report.audit_purged_through
            else ""
        )
    )
    _snapshots_rewritten(ws, report.snapshots)


def records(
    workspace: WorkspaceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of Markdown.")] = False,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """The record of processing activities (GDPR Art. 30), from hilt.toml and the schema."""
    import json

    from hilt.pipelines.compliance.processing_records import as_json as register_json
    from hilt.pipelines.compliance.processing_records import as_markdown

    ws = Workspace.at(workspace)

    def run() -> str:
        ws.require()
        settings = ws.settings()
        if as_json:
            return json.dumps(register_json(settings), indent=2) + "\n"
        return as_markdown(settings)

    text = guard(run)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote the record of processing activities to {output}")
