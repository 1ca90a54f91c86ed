"""Lineage: from a decision back to the data that trained the model behind it, from records.

    decision ─► prediction ─► prediction batch (and the scoring run that added it)
             ─► model version ─► training run ─► snapshot (as_of_seq, sha256)
             ─► the decisions whose labels entered that snapshot

Every link is read from the hash-chained audit log and the store's tables through the
auditor's read-only store operations (``get_decision``, ``get_prediction``,
``audit_search``); files are trusted only when their sha256 equals the one the log
recorded (the snapshot Parquet, the executed notebooks). MLflow is not needed for any of
it, so the audit dashboard starts without importing it; ``crosscheck_mlflow`` compares
the log with MLflow's own records on demand.

"The decisions that trained it": the training rows of the model's snapshot whose label
came from a reviewer (``label_source`` reviewer-accepted / reviewer-corrected); the snapshot
keeps, per row, the seq of the decision that gave the label (``label_seq``), so each one
is looked up in the log and checked (a live accept / override of that case, at or before
the snapshot's as_of_seq, with that very label).

Nothing here writes: not the store, not the workspace.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilt.pipelines.config import Settings
from hilt.pipelines.deferred_imports import deferred_module
from hilt.pipelines.errors import InputError, NotFoundError
from hilt.pipelines.loop.digests import file_sha256
from hilt.pipelines.store import Store
from hilt.pipelines.store.audit_records import AuditEvent, AuditQuery
from hilt.pipelines.store.case_records import Decision, Prediction
from hilt.pipelines.store.registry_records import ModelRecord
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    import polars as pl
else:
    pl = deferred_module("polars")  # on first use: the store's clients never import it

#: The event a training run writes with what only it knows (model sha256, snapshot, rows).
TRAINED_EVENT = "run.trained"
#: Label sources of reviewer labels in a snapshot.
REVIEWER_SOURCES = ("reviewer-accepted", "reviewer-corrected")
#: Training decisions shown per page.
PAGE = 50


def status_words(status: str) -> str:
    """A file status as the end of a sentence ("the snapshot file ...")."""
    return {
        "matches": "matches the sha256 the log recorded",
        "differs": "does not match the sha256 the log recorded (changed since)",
        "missing": "is missing",
        "not recorded": "has no sha256 in the log",
        "outside runs": "is not a notebook file in runs/ (the log names another path)",
    }.get(status, status)


def notebook_status(ws: Workspace, name: str, recorded: str | None) -> str:
    """``file_status`` of a run's notebook named in the log, or 'outside runs' when the
    name is not a notebook file in runs/ (never opened, never hashed)."""
    try:
        path = ws.run_notebook(name)
    except InputError:
        return "outside runs"
    return file_status(path, recorded)


def file_status(path: Path, recorded: str | None) -> str:
    """'matches', 'differs', 'missing', or 'not recorded' (no sha256 in the log)."""
    if recorded is None:
        return "not recorded"
    if not path.is_file():
        return "missing"
    return "matches" if file_sha256(path) == recorded else "differs"


# ---------------------------------------------------------------------------- records
@dataclass(frozen=True)
class PredictionLink:
    prediction: Prediction
    #: The ``predictions.ingest`` event of its batch.
    batch_event: AuditEvent | None
    #: The scoring run that added the batch (None: added outside a scoring run).
    scoring_run_id: str | None
    scoring_notebook: str | None


@dataclass(frozen=True)
class ModelLink:
    """A model version as the log and the store's registry know it: its events, the run
    that trained it, and its record in the registry (None: not registered there)."""

    model_version: str
    events: tuple[AuditEvent, ...]
    run_id: str | None
    model_sha256: str | None
    #: The champion when the decision was made (the last model.promoted before it).
    champion_at_decision: str | None
    registry: ModelRecord | None = None


@dataclass(frozen=True)
class RunLink:
    run_id: str
    kind: str | None
    author: str | None
    status: str
    notebook: str | None
    notebook_sha256: str | None
    notebook_status: str
    template_sha256: str | None
    parameters: dict[str, Any]
    events: tuple[AuditEvent, ...]


@dataclass(frozen=True)
class SnapshotLink:
    name: str
    sha256: str
    as_of_seq: int
    rows: int | None
    train_rows: int | None
    holdout_rows: int | None
    label_sources: dict[str, int]
    event: AuditEvent | None
    file_status: str


@dataclass(frozen=True)
class TrainingDecision:
    """One decision whose label entered the training data, as the log records it."""

    seq: int
    decision_id: str | None
    case_id: str
    action: str | None
    reviewer: str | None
    final_label: str | None
    label_source: str
    #: Empty when the log agrees with the snapshot row; else what disagrees.
    problem: str = ""


@dataclass(frozen=True)
class TrainingData:
    snapshot: str
    #: Reviewer-labelled training rows (= decisions that trained the model).
    total: int
    by_source: dict[str, int]
    #: One page of them, by seq.
    decisions: tuple[TrainingDecision, ...]
    offset: int


@dataclass(frozen=True)
class Lineage:
    decision: Decision
    decision_event: AuditEvent | None
    prediction: PredictionLink | None
    model: ModelLink | None
    training_run: RunLink | None
    #: The ``run.trained`` event of the training run.
    trained_event: AuditEvent | None
    snapshot: SnapshotLink | None
    training: TrainingData | None
    #: What the records do not show, or where they disagree, in plain words.
    problems: tuple[str, ...] = field(default_factory=tuple)
    #: The store's model registry as read for this lineage (every version).
    registry: tuple[ModelRecord, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------------------- queries
def all_events(store: Store, **filters: Any) -> list[AuditEvent]:
    """Every event matching the filters, oldest first (paged)."""
    out: list[AuditEvent] = []
    offset = 0
    while True:
        page = store.audit_search(
            AuditQuery(**filters, offset=offset, limit=1000, newest_first=False)
        )
        out.extend(page.events)
        offset += len(page.events)
        if not page.events or offset >= page.total:
            return out


def _event_at(store: Store, seq: int) -> AuditEvent | None:
    page = store.audit_search(AuditQuery(seqs=[seq], limit=1))
    return page.events[0] if page.events else None


def _latest(store: Store, **filters: Any) -> AuditEvent | None:
    page = store.audit_search(AuditQuery(**filters, limit=1, newest_first=True))
    return page.events[0] if page.events else None


def _scoring_run(store: Store, batch_seq: int) -> tuple[str | None, str | None]:
    """The scoring run in whose span the batch was added: the last ``run.started`` before it
    (kind score), not ended before it."""
    started = _latest(store, action="run.started", max_seq=batch_seq)
    if started is None or started.payload.get("kind") != "score":
        return None, None
    run_id = started.object_id
    ended = [
        e
        for e in all_events(store, object_id=run_id, action="run.")
        if e.action in ("run.finished", "run.failed")
    ]
    if ended and ended[0].seq < batch_seq:
        return None, None
    notebook = started.payload.get("notebook")
    return run_id, str(notebook) if notebook else None


def prediction_link(store: Store, prediction_id: int) -> PredictionLink:
    prediction = store.get_prediction(prediction_id)
    batch = _event_at(store, prediction.batch_seq)
    run_id, notebook = _scoring_run(store, prediction.batch_seq)
    return PredictionLink(prediction, batch, run_id, notebook)


def model_link(
    store: Store,
    model_version: str,
    before_seq: int | None = None,
    registry: Sequence[ModelRecord] | None = None,
) -> ModelLink:
    """The version's model events, its run and sha256 (as ``model.registered`` recorded
    them), the champion at ``before_seq``, and its record in the store's ``registry``
    (``Store.models()``, read here if not given)."""
    events = tuple(all_events(store, object_id=model_version, action="model."))
    run_id = next((str(e.payload["run_id"]) for e in events if e.payload.get("run_id")), None)
    sha = next(
        (str(e.payload["model_sha256"]) for e in events if e.payload.get("model_sha256")), None
    )
    champion = None
    if before_seq is not None:
        promoted = _latest(store, action="model.promoted", max_seq=before_seq)
        champion = promoted.object_id if promoted is not None else None
    models = store.models() if registry is None else registry
    record = next((m for m in models if m.model == model_version), None)
    return ModelLink(model_version, events, run_id, sha, champion, record)


def run_link(store: Store, ws: Workspace, run_id: str) -> tuple[RunLink, AuditEvent | None]:
    """The run's events (``run.*``) and its ``run.trained`` event, if any."""
    events = tuple(all_events(store, object_id=run_id))
    started = next((e for e in events if e.action == "run.started"), None)
    ended = next((e for e in events if e.action in ("run.finished", "run.failed")), None)
    trained = next((e for e in events if e.action == TRAINED_EVENT), None)
    last = ended or started
    notebook = last.payload.get("notebook") if last is not None else None
    nb_sha = ended.payload.get("notebook_sha256") if ended else None
    status = (
        "finished"
        if ended is not None and ended.action == "run.finished"
        else "failed"
        if ended is not None
        else "started, no end recorded"
        if started is not None
        else "not run through `hilt retrain` (no run events)"
    )
    nb_status = (
        notebook_status(ws, str(notebook), str(nb_sha) if nb_sha else None)
        if notebook
        else "not recorded"
    )
    author = started.actor if started else trained.actor if trained else None
    return (
        RunLink(
            run_id=run_id,
            kind=str(started.payload.get("kind")) if started else None,
            author=author,
            status=status,
            notebook=str(notebook) if notebook else None,
            notebook_sha256=str(nb_sha) if nb_sha else None,
            notebook_status=nb_status,
            template_sha256=(
                str(started.payload.get("template_sha256"))
                if started and started.payload.get("template_sha256")
                else None
            ),
            parameters=dict(started.payload.get("parameters") or {}) if started else {},
            events=events,
        ),
        trained,
    )


def snapshot_created(
    store: Store, name: str, sha256: str | None, before: int | None = None
) -> AuditEvent | None:
    """The last ``snapshot.created`` event of the snapshot file ``name`` with that sha256
    (at or before seq ``before``), or None."""
    created = [
        e
        for e in all_events(store, object_id=name, action="snapshot.created", max_seq=before)
        if e.payload.get("sha256") == sha256
    ]
    return created[-1] if created else None


def snapshot_link(store: Store, ws: Workspace, name: str, sha256: str, before: int) -> SnapshotLink:
    event = snapshot_created(store, name, sha256, before)
    p = event.payload if event else {}
    return SnapshotLink(
        name=name,
        sha256=sha256,
        as_of_seq=int(p.get("as_of_seq", _as_of_from_name(name))),
        rows=p.get("rows"),
        train_rows=p.get("train_rows"),
        holdout_rows=p.get("holdout_rows"),
        label_sources=dict(p.get("label_sources") or {}),
        event=event,
        file_status=file_status(ws.snapshots_dir / name, sha256),
    )


def _as_of_from_name(name: str) -> int:
    parts = name.split("-")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0


def _reviewer_rows(ws: Workspace, snapshot: SnapshotLink) -> pl.DataFrame:
    """The snapshot's reviewer-labelled training rows (case_id, label, label_source,
    label_seq), read from the file only if its bytes have the recorded sha256."""
    path = ws.snapshots_dir / snapshot.name
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != snapshot.sha256:
        raise InputError(f"{snapshot.name}: the file does not have the recorded sha256")
    frame = pl.read_parquet(
        io.BytesIO(data), columns=["case_id", "split", "label", "label_source", "label_seq"]
    )
    return frame.filter(
        (pl.col("split") == "train") & pl.col("label_source").is_in(REVIEWER_SOURCES)
    ).sort("label_seq", "case_id")


def training_data(
    store: Store, ws: Workspace, snapshot: SnapshotLink, offset: int = 0, limit: int = PAGE
) -> TrainingData:
    """The decisions whose labels entered ``snapshot``'s training rows: counts, and one page
    of them checked against the log (InputError if the file is missing or changed)."""
    if offset < 0 or not 1 <= limit <= 1000:
        raise InputError("offset must be >= 0 and limit between 1 and 1000")
    rows = _reviewer_rows(ws, snapshot)
    by_source = {s: int(rows.filter(pl.col("label_source") == s).height) for s in REVIEWER_SOURCES}
    page = rows.slice(offset, limit)
    seqs = [int(s) for s in page["label_seq"].to_list()]
    found = (
        {e.seq: e for e in store.audit_search(AuditQuery(seqs=seqs, limit=1000)).events}
        if seqs
        else {}
    )
    out = []
    for row in page.iter_rows(named=True):
        seq = int(row["label_seq"])
        e = found.get(seq)
        problem = ""
        if e is None or e.action != "decision.record":
            problem = "no decision event at this seq"
        elif e.object_id != row["case_id"]:
            problem = "the event is about another case"
        elif e.payload.get("action") not in ("accept", "override"):
            problem = "the event is not a final decision"
        elif str(e.payload.get("final_label")) != str(row["label"]):
            problem = "the snapshot's label differs from the decision's"
        elif seq > snapshot.as_of_seq:
            problem = "the decision is later than the snapshot"
        elif (e.payload.get("action") == "accept") != (row["label_source"] == "reviewer-accepted"):
            problem = "the label source does not match the decision's action"
        p = e.payload if e is not None else {}
        out.append(
            TrainingDecision(
                seq=seq,
                decision_id=p.get("decision_id"),
                case_id=str(row["case_id"]),
                action=p.get("action"),
                reviewer=e.actor if e is not None else None,
                final_label=p.get("final_label"),
                label_source=str(row["label_source"]),
                problem=problem,
            )
        )
    return TrainingData(
        snapshot=snapshot.name,
        total=rows.height,
        by_source=by_source,
        decisions=tuple(out),
        offset=offset,
    )


# ---------------------------------------------------------------------------- lineage
def decision_lineage(store: Store, ws: Workspace, decision_id: str) -> Lineage:
    """The lineage of one decision, as far as the records reach; ``problems`` says where
    they stop or disagree. NotFoundError for an unknown decision id."""
    decision = store.get_decision(decision_id)
    problems: list[str] = []
    decision_event = _event_at(store, decision.seq)
    if decision_event is None or decision_event.payload.get("decision_id") != decision_id:
        problems.append(f"the log holds no decision.record event for it at seq {decision.seq}")
    prediction = None
    if decision.prediction_id is None:
        problems.append("the decision names no prediction (the case had none)")
    else:
        prediction = prediction_link(store, decision.prediction_id)
        if prediction.prediction.case_id != decision.case_id:
            problems.append("the prediction belongs to another case")
        if prediction.batch_event is None:
            problems.append("the prediction's batch has no audit event")
    version = decision.model_version or (
        prediction.prediction.model_version if prediction else None
    )
    model = run = trained = snapshot = training = None
    registry = tuple(store.models())
    if version is not None:
        model = model_link(store, version, before_seq=decision.seq, registry=registry)
        if not model.events:
            problems.append(
                f"the log holds no model events for {version} (not trained and registered "
                "through hilt's retraining)"
            )
        if model.registry is None:
            problems.append(f"{version} is not a model of the store's registry")
    if model is not None and model.run_id is not None:
        run, trained = run_link(store, ws, model.run_id)
        if trained is None:
            problems.append(f"the log holds no {TRAINED_EVENT} event of run {model.run_id}")
        if run.notebook_status in ("missing", "differs"):
            problems.append(f"the run's executed notebook {status_words(run.notebook_status)}")
    if trained is not None:
        t = trained.payload
        if model is not None and model.model_sha256 and t.get("model_sha256") != model.model_sha256:
            problems.append("the model's sha256 differs between its training and its registration")
        if t.get("snapshot") and t.get("snapshot_sha256"):
            snapshot = snapshot_link(
                store, ws, str(t["snapshot"]), str(t["snapshot_sha256"]), trained.seq
            )
            if snapshot.event is None:
                problems.append("no snapshot.created event with that name and sha256")
            if snapshot.file_status != "matches":
                problems.append(f"the snapshot file {status_words(snapshot.file_status)}")
            else:
                training = training_data(store, ws, snapshot)
                expected = sum(snapshot.label_sources.get(s, 0) for s in REVIEWER_SOURCES)
                if snapshot.event is not None and training.total != expected:
                    problems.append(
                        "the snapshot file's reviewer labels differ from its audit event's count"
                    )
                bad = [d for d in training.decisions if d.problem]
                if bad:
                    problems.append(f"{len(bad)} training decisions disagree with the log")
    return Lineage(
        decision=decision,
        decision_event=decision_event,
        prediction=prediction,
        model=model,
        training_run=run,
        trained_event=trained,
        snapshot=snapshot,
        training=training,
        problems=tuple(problems),
        registry=registry,
    )


# ---------------------------------------------------------------------------- MLflow
@dataclass(frozen=True)
class Crosscheck:
    """One fact as the audit log and as MLflow record it."""

    item: str
    audit_log: str | None
    mlflow: str | None

    @property
    def agrees(self) -> bool:
        return self.audit_log == self.mlflow


def crosscheck_mlflow(ws: Workspace, lineage: Lineage) -> list[Crosscheck]:
    """Compare the lineage's training run with MLflow's record of it, and the store's model
    registry with MLflow's mirror of it: the version's state, sha256 and run, and the
    aliases (imports mlflow)."""
    run = lineage.training_run
    if run is None:
        raise InputError("the lineage names no training run to compare with MLflow")
    from hilt.pipelines.loop.tracking.client import TrackingError, configure
    from hilt.pipelines.loop.tracking.environment import DB_FILE, has_tracking_store
    from hilt.pipelines.loop.tracking.runs import run_info

    settings = ws.settings()
    if not has_tracking_store(ws):
        # configure() would create an empty store: an auditor's look must not write.
        raise NotFoundError(f"this workspace has no MLflow store ({DB_FILE})")
    configure(ws, settings=settings)
    try:
        info = run_info(run.run_id)
    except TrackingError:
        raise NotFoundError(f"MLflow has no run {run.run_id} in this workspace") from None
    t = lineage.trained_event.payload if lineage.trained_event else {}
    model = lineage.model
    version = model.model_version.rsplit("/v", 1)[-1] if model else None
    checks = [
        Crosscheck("model sha256", _text(t.get("model_sha256")), info.model_sha256),
        Crosscheck("snapshot sha256", _text(t.get("snapshot_sha256")), info.snapshot_sha256),
        Crosscheck(
            "snapshot as_of_seq",
            _text(t.get("snapshot_as_of_seq")),
            _text(info.snapshot_seq),
        ),
        Crosscheck("author", run.author, info.author),
        Crosscheck("status", "FINISHED" if run.status == "finished" else run.status, info.status),
    ]
    if version is not None and version.isdigit():
        checks.append(
            Crosscheck(
                "registered version made from the run",
                version,
                version if version in info.versions else ",".join(info.versions) or None,
            )
        )
    return checks + _registry_checks(settings, lineage)


def _registry_checks(settings: Settings, lineage: Lineage) -> list[Crosscheck]:
    """The store's registry against MLflow's mirror of it (the store's word on the left):
    the aliases, and this version's run and tags."""
    from hilt.pipelines.loop.tracking.environment import registered_model_name
    from hilt.pipelines.loop.tracking.mirror import version_of
    from hilt.pipelines.loop.tracking.registry import registry_facts

    record = lineage.model.registry if lineage.model is not None else None
    mine = version_of(record.model, registered_model_name(settings)) if record else None
    return [
        Crosscheck(f"registry: {f.item}", f.store, f.mlflow)
        for f in registry_facts(settings, lineage.registry)
        if f.version is None or (mine is not None and f.version == mine)
    ]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def payload_text(payload: Mapping[str, Any]) -> str:
    """An event's payload as one line of canonical JSON (for display)."""
    return json.dumps(payload, sort_keys=True, separators=(", ", ": "), ensure_ascii=False)


__all__ = [
    "PAGE",
    "TRAINED_EVENT",
    "Crosscheck",
    "Lineage",
    "ModelLink",
    "PredictionLink",
    "RunLink",
    "SnapshotLink",
    "TrainingData",
    "TrainingDecision",
    "all_events",
    "crosscheck_mlflow",
    "decision_lineage",
    "file_status",
    "model_link",
    "payload_text",
    "prediction_link",
    "run_link",
    "snapshot_created",
    "snapshot_link",
    "status_words",
    "training_data",
]
