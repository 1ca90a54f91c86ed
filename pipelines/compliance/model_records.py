"""What the documentation of a model version says, read from the records: the version in
the store's model registry (state, author, the store's gate verdict, approver), the
version's MLflow run (params, metrics, tags, the subgroup table it logged), where MLflow's
registry disagrees with the store's, and the audit log (its training, snapshot, ingests,
decisions, promotion, halts and checkpoints).

Read only: nothing is written to the store, MLflow or the workspace.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from hilt.pipelines.compliance.lineage import TRAINED_EVENT, all_events, snapshot_created
from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.tracking.tags import SUBGROUP_ARTIFACT
from hilt.pipelines.store import Store
from hilt.pipelines.store.audit_records import AuditEvent, AuditQuery
from hilt.pipelines.store.registry_records import ModelRecord
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.loop.tracking.mirror import MirrorFact
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
    """Everything the document says, as read from the store's registry, MLflow and the
    audit log."""

    settings: Settings
    registered: str
    version: str
    label: str
    run: RunRecord
    #: The version in the store's model registry (None: MLflow has it, the store does not).
    registry: ModelRecord | None
    #: MLflow's aliases of the registered model (a mirror of the store's registry).
    aliases: dict[str, str]
    #: The store's registry and MLflow's mirror of it, fact by fact (``mirror.facts``).
    mirror: list[MirrorFact]
    subgroups: pl.DataFrame | None
    head_seq: int
    #: The model events of the registered model's versions and the runs' ``run.trained``.
    model_events: list[AuditEvent]
    #: The training run's ``run.trained`` event.
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
    from hilt.pipelines.loop.tracking.mirror import version_of
    from hilt.pipelines.loop.tracking.registry import (
        aliases,
        registry_facts,
        version_run_id,
    )
    from hilt.pipelines.loop.tracking.runs import run_info

    settings = ws.settings()
    configure(ws, settings=settings)
    registered = registered_model_name(settings)
    version = parse_version(version_text, settings, registered)
    label = f"{registered}/v{version}"
    models = store.models()
    record = next((m for m in models if m.model == label), None)
    try:
        mlflow_run_id = version_run_id(settings, version)
    except TrackingError:
        mlflow_run_id = None
    run_id = record.run_id if record is not None else mlflow_run_id
    if run_id is None:
        raise InputError(f"{registered} has no registered version {version}")
    run = run_info(run_id)
    with tempfile.TemporaryDirectory(prefix="hilt-docs-") as tmp:
        csv = download_run_artifact(run_id, SUBGROUP_ARTIFACT, tmp)
        subgroups = pl.read_csv(csv, infer_schema=False) if csv is not None else None
    head = store.audit_head().seq
    mine = [m for m in models if version_of(m.model, registered) is not None]
    runs = {m.run_id for m in mine} | {run_id}
    all_model = [
        e
        for e in all_events(store, action="model.", max_seq=head)
        if e.object_id.startswith(registered + "/v")
    ]
    for rid in sorted(runs):
        all_model += all_events(store, object_id=rid, action=TRAINED_EVENT, max_seq=head)
    all_model.sort(key=lambda e: e.seq)
    trained = next(
        (e for e in all_model if e.action == TRAINED_EVENT and e.object_id == run_id), None
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
    # Every version the store registered, by its run, for the change log's metric history.
    history = [
        (str(version_of(m.model, registered)), dict(run_info(m.run_id).metrics))
        for m in sorted(mine, key=lambda m: int(version_of(m.model, registered) or 0))
    ]
    return ModelRecords(
        settings=settings,
        registered=registered,
        version=version,
        label=label,
        run=run,
        registry=record,
        aliases=aliases(settings),
        mirror=registry_facts(settings, models),
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
