"""What the documentation of a model version says, read from the records: the version's
MLflow run (params, metrics, tags, the subgroup table it logged) and the audit log (its
training, snapshot, ingests, decisions, promotion, halts and checkpoints).

Read only: nothing is written to the store, MLflow or the workspace.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from hilt.pipelines.compliance.lineage import all_events, snapshot_created
from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.tracking.tags import SUBGROUP_ARTIFACT
from hilt.pipelines.store import Store
from hilt.pipelines.store.records import AuditEvent, AuditQuery
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.loop.tracking.runs import RunRecord


def parse_version(text: str, settings: Settings, registered: str) -> str:
    """ "3", "v3" or "<registered name>/v3" → "3"; InputError otherwise."""
    value = text.strip()
    if value.startswith(registered + "/"):
        value = value[len(registered) + 1 :]
    value = value.removeprefix("v")
    if not value.isdigit():
        raise InputError(
            f"a model version is a registered version number, e.g. 3 or v3 or {registered}/v3"
        )
    return str(int(value))


def reader_store(ws: Workspace) -> Store:
    """The store for reading: the service's (with $HILT_TOKEN) if one owns the workspace,
    else the file itself as the operating-system user (like the other `hilt` commands)."""
    from hilt.pipelines.store import Identity, Need, open_store_as

    return open_store_as(
        ws,
        Identity(operator=True),
        need=Need(
            frozenset({"auditor", "admin", "lead", "dpo", "data-scientist"}), "read the audit log"
        ),
    )


@dataclass(frozen=True)
class ModelRecords:
    """Everything the document says, as read from MLflow and the audit log."""

    settings: Settings
    registered: str
    version: str
    label: str
    run: RunRecord
    aliases: dict[str, str]
    subgroups: pl.DataFrame | None
    head_seq: int
    model_events: list[AuditEvent]
    trained: AuditEvent | None
    run_events: list[AuditEvent]
    snapshot_event: AuditEvent | None
    ingests: list[AuditEvent]
    decisions_by_action: dict[str, int]
    history: list[tuple[str, dict[str, float]]]
    halts: int
    checkpoints: int


def gather(ws: Workspace, version_text: str, store: Store) -> ModelRecords:
    """Read the records of one registered version (imports mlflow)."""
    from hilt.pipelines.loop.tracking.artifacts import download_run_artifact
    from hilt.pipelines.loop.tracking.client import TrackingError, configure
    from hilt.pipelines.loop.tracking.environment import registered_model_name
    from hilt.pipelines.loop.tracking.registry import aliases, version_run_id
    from hilt.pipelines.loop.tracking.runs import run_info

    settings = ws.settings()
    configure(ws, settings=settings)
    registered = registered_model_name(settings)
    version = parse_version(version_text, settings, registered)
    try:
        run_id = version_run_id(settings, version)
    except TrackingError:
        raise InputError(f"{registered} has no registered version {version}") from None
    if run_id is None:
        raise InputError(f"version {version} of {registered} names no MLflow run")
    run = run_info(run_id)
    label = f"{registered}/v{version}"
    with tempfile.TemporaryDirectory(prefix="hilt-docs-") as tmp:
        csv = download_run_artifact(run_id, SUBGROUP_ARTIFACT, tmp)
        subgroups = pl.read_csv(csv, infer_schema=False) if csv is not None else None
    head = store.audit_head().seq
    all_model = [
        e
        for e in all_events(store, action="model.", max_seq=head)
        if e.object_id.startswith(registered + "/v") or e.action == "model.trained"
    ]
    trained = next(
        (e for e in all_model if e.action == "model.trained" and e.object_id == run_id), None
    )
    snapshot_event = None
    ingests: list[AuditEvent] = []
    if trained is not None and trained.payload.get("snapshot"):
        snapshot_event = snapshot_created(
            store, str(trained.payload["snapshot"]), trained.payload.get("snapshot_sha256")
        )
        as_of = int(trained.payload.get("snapshot_as_of_seq") or 0)
        ingests = all_events(store, action="cases.ingest", max_seq=as_of)
    by_action: dict[str, int] = {}
    for e in all_events(store, action="decision.record", model_version=label):
        a = str(e.payload.get("action"))
        by_action[a] = by_action.get(a, 0) + 1
    # Every registered version's run, for the change log's metric history.
    versions = sorted(
        {str(e.payload["version"]) for e in all_model if e.payload.get("version")}, key=int
    )
    history = []
    for v in versions:
        rid = next(
            (str(e.payload["run_id"]) for e in all_model if str(e.payload.get("version")) == v),
            None,
        )
        if rid:
            history.append((v, dict(run_info(rid).metrics)))
    return ModelRecords(
        settings=settings,
        registered=registered,
        version=version,
        label=label,
        run=run,
        aliases=aliases(settings),
        subgroups=subgroups,
        head_seq=head,
        model_events=all_model,
        trained=trained,
        run_events=all_events(store, object_id=run_id, action="run."),
        snapshot_event=snapshot_event,
        ingests=ingests,
        decisions_by_action=by_action,
        history=history,
        halts=store.audit_search(AuditQuery(action="system.halted", limit=1)).total,
        checkpoints=store.audit_search(AuditQuery(action="audit.checkpoint", limit=1)).total,
    )
