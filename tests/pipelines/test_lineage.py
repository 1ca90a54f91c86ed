"""Lineage of a decision, from records only, on a workspace that went round the loop twice
(real DuckDB, MLflow, papermill): it names the run and the snapshot that MLflow and the
files name, the decisions that trained the model, and the explanation as the reviewer saw
it; where the records are tampered with, it says so. The auditor writes nothing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from hilt.pipelines.compliance.explanation_replay import replay_explanation
from hilt.pipelines.compliance.lineage import (
    TrainingDecision,
    crosscheck_mlflow,
    decision_lineage,
    training_data,
)
from hilt.pipelines.errors import InputError, NotFoundError
from hilt.pipelines.loop.notebook_render import remote_resources
from hilt.pipelines.loop.tracking.client import configure
from hilt.pipelines.loop.tracking.environment import DB_FILE, registered_model_name
from hilt.pipelines.loop.tracking.registry import version_run_id
from hilt.pipelines.loop.tracking.runs import run_info
from hilt.pipelines.store import DecisionRequest, Identity, open_store_as
from hilt.pipelines.workspace import Workspace
from tests.audit_helpers import REVIEWED, AuditedLoop, audited_loop
from tests.conftest import operator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> AuditedLoop:
    return audited_loop(tmp_path_factory.mktemp("lineage"))


def test_lineage_names_the_run_and_the_snapshot_that_mlflow_and_the_file_name(
    loop: AuditedLoop,
) -> None:
    ws = loop.ws
    settings = ws.settings()
    otto = open_store_as(ws, Identity(name="otto"))
    head = otto.audit_head()
    lineage = decision_lineage(otto, ws, loop.decision.decision_id)
    assert lineage.problems == ()

    # decision → prediction → the scoring run that added it
    assert lineage.decision == loop.decision
    assert lineage.prediction is not None
    assert lineage.prediction.prediction.prediction_id == loop.decision.prediction_id
    assert lineage.prediction.scoring_run_id == loop.scoring.run_id
    assert lineage.prediction.scoring_notebook == loop.scoring.notebook.name
    # → model version (v2, the champion when alice decided) → its training run
    assert lineage.model is not None
    assert lineage.model.model_version == f"{registered_model_name(settings)}/v2"
    assert lineage.model.champion_at_decision == lineage.model.model_version
    configure(ws, settings=settings)
    assert lineage.model.run_id == loop.second.run_id == version_run_id(settings, "2")
    run = lineage.training_run
    assert run is not None
    assert (run.run_id, run.kind, run.author, run.status) == (
        loop.second.run_id,
        "retrain",
        "dana",
        "finished",
    )
    assert run.notebook == loop.second.notebook.name
    assert run.notebook_sha256 == loop.second.notebook_sha256
    assert run.notebook_status == "matches"
    assert lineage.model.model_sha256 == loop.second.model_sha256
    # → snapshot: the same sha256 in the log, in MLflow and of the file itself
    snap = lineage.snapshot
    assert snap is not None
    mlflow_run = run_info(loop.second.run_id)
    assert snap.sha256 == mlflow_run.snapshot_sha256
    assert snap.as_of_seq == mlflow_run.snapshot_seq
    file_sha = hashlib.sha256((ws.snapshots_dir / snap.name).read_bytes()).hexdigest()
    assert snap.sha256 == file_sha
    assert snap.file_status == "matches"
    assert snap.event is not None and snap.event.payload["sha256"] == file_sha
    # Reading wrote nothing.
    assert otto.audit_head() == head


def test_the_decisions_that_trained_the_model_are_alices_reviews_before_the_snapshot(
    loop: AuditedLoop,
) -> None:
    ws = loop.ws
    otto = open_store_as(ws, Identity(name="otto"))
    lineage = decision_lineage(otto, ws, loop.decision.decision_id)
    snap, training = lineage.snapshot, lineage.training
    assert snap is not None and training is not None
    # Independent record 1: the snapshot.created event's counts.
    assert training.by_source == {
        "reviewer-accepted": snap.label_sources["reviewer-accepted"],
        "reviewer-corrected": snap.label_sources["reviewer-corrected"],
    }
    # Independent record 2: the store's final decisions before the snapshot (none of them
    # on a holdout case, no accepted label dropped by the cap in this workspace).
    assert snap.event is not None and snap.event.payload["accepted_dropped"] == 0
    finals = [d for d in otto.decisions(final_only=True, limit=10_000) if d.seq <= snap.as_of_seq]
    assert training.total == len(finals) == REVIEWED
    seen: list[TrainingDecision] = []
    offset = 0
    while offset < training.total:
        page = training_data(otto, ws, snap, offset=offset, limit=25)
        seen.extend(page.decisions)
        offset += 25
    assert [d.problem for d in seen] == [""] * REVIEWED
    assert {d.decision_id for d in seen} == {d.decision_id for d in finals}
    assert {d.reviewer for d in seen} == {"alice"}
    by_id = {d.decision_id: d for d in finals}
    for d in seen:
        assert d.decision_id is not None
        final = by_id[d.decision_id]
        assert (d.case_id, d.final_label, d.seq) == (final.case_id, final.final_label, final.seq)
        expected = "reviewer-accepted" if final.action == "accept" else "reviewer-corrected"
        assert d.label_source == expected


def test_the_explanation_is_rendered_again_byte_for_byte(loop: AuditedLoop) -> None:
    otto = open_store_as(loop.ws, Identity(name="otto"))
    replay = replay_explanation(otto, loop.ws.settings(), loop.decision.decision_id)
    assert replay.verdict == "identical", replay.message
    assert replay.html == loop.explanation_html
    assert replay.rendered_sha256 == replay.recorded_sha256 == loop.decision.explanation_sha256
    assert hashlib.sha256(replay.html.encode()).hexdigest() == loop.decision.explanation_sha256
    assert f"sha256 {loop.decision.explanation_sha256}" in replay.message


def test_mlflow_agrees_with_the_log(loop: AuditedLoop) -> None:
    otto = open_store_as(loop.ws, Identity(name="otto"))
    lineage = decision_lineage(otto, loop.ws, loop.decision.decision_id)
    checks = crosscheck_mlflow(loop.ws, lineage)
    assert {c.item for c in checks} >= {"model sha256", "snapshot sha256", "author"}
    # The store's registry, and MLflow's mirror of it.
    v2 = "hilt-german-credit/v2"
    by_item = {c.item: c for c in checks}
    assert {
        "registry: alias champion",
        "registry: alias challenger",
        f"registry: {v2} run",
        f"registry: {v2} hilt.gate",
        f"registry: {v2} hilt.model_sha256",
    } <= set(by_item)
    assert by_item["registry: alias champion"].audit_log == "2"
    assert by_item[f"registry: {v2} hilt.gate"].audit_log == "promoted"
    assert [c.item for c in checks if not c.agrees] == []


def test_mlflow_aliases_moved_behind_the_stores_back_are_named(
    loop: AuditedLoop, tmp_path: Path
) -> None:
    """Someone points MLflow's champion alias back at version 1: the store's registry (what
    scores) still names version 2, and the lineage's MLflow check says MLflow disagrees."""
    from mlflow import MlflowClient

    ws = _copy(loop, tmp_path)
    otto = open_store_as(ws, Identity(name="otto"))
    lineage = decision_lineage(otto, ws, loop.decision.decision_id)
    configure(ws, settings=ws.settings())
    MlflowClient().set_registered_model_alias("hilt-german-credit", "champion", "1")
    checks = crosscheck_mlflow(ws, lineage)
    assert [(c.item, c.audit_log, c.mlflow) for c in checks if not c.agrees] == [
        ("registry: alias champion", "2", "1")
    ]


def _copy(loop: AuditedLoop, tmp_path: Path) -> Workspace:
    copy = Workspace.at(tmp_path / "copy")
    shutil.copytree(loop.ws.root, copy.root)
    return copy


def test_a_changed_prediction_or_snapshot_is_named(loop: AuditedLoop, tmp_path: Path) -> None:
    ws = _copy(loop, tmp_path)
    otto = open_store_as(ws, Identity(name="otto"))
    lineage = decision_lineage(otto, ws, loop.decision.decision_id)
    assert lineage.snapshot is not None
    con = duckdb.connect(str(ws.db_path))
    try:
        con.execute(
            "UPDATE predictions SET score = score + 0.01 WHERE prediction_id = ?",
            [loop.decision.prediction_id],
        )
    finally:
        con.close()
    replay = replay_explanation(otto, ws.settings(), loop.decision.decision_id)
    assert replay.verdict == "differs"
    assert "DIFFERS" in replay.message and replay.html != loop.explanation_html

    path = ws.snapshots_dir / lineage.snapshot.name
    frame = pl.read_parquet(path)
    frame.with_columns(pl.col("label").reverse()).write_parquet(path)
    again = decision_lineage(otto, ws, loop.decision.decision_id)
    assert (
        "the snapshot file does not match the sha256 the log recorded (changed since)"
        in again.problems
    )
    assert again.training is None


def test_a_decision_without_records_says_what_is_missing(loaded_workspace: Workspace) -> None:
    """A model version added by hand (no training run), a decision without an explanation,
    a blind judgement: each is reported as such, never made up."""
    alice = open_store_as(loaded_workspace, Identity(name="alice"))
    leased = alice.next_case()
    assert leased is not None
    blind = alice.record_decision(
        DecisionRequest(
            case_id=leased.case.case_id, action="blind", final_label="1", model_shown=False
        )
    )
    accept = alice.record_decision(DecisionRequest(case_id=leased.case.case_id, action="accept"))
    otto = open_store_as(loaded_workspace, Identity(name="otto"))
    lineage = decision_lineage(otto, loaded_workspace, accept.decision_id)
    # The stand-in is in the store's registry, but no training run recorded it.
    assert lineage.model is not None and lineage.model.registry is not None
    assert any("no run.trained event of run run-of-test-model/v1" in p for p in lineage.problems)
    run = lineage.training_run
    assert run is not None and run.status == "not run through `hilt retrain` (no run events)"
    assert lineage.snapshot is None
    settings = loaded_workspace.settings()
    old = replay_explanation(otto, settings, accept.decision_id)
    assert old.verdict == "not-recorded"
    assert "cannot be proven" in old.message and old.html  # a reference rendering
    assert replay_explanation(otto, settings, blind.decision_id).verdict == "not-shown"
    with pytest.raises(NotFoundError):
        decision_lineage(otto, loaded_workspace, "no-such-decision")
    assert operator(loaded_workspace).audit_head().seq == accept.seq


def test_the_audit_backend_reads_everything_and_writes_nothing(
    loop: AuditedLoop, tmp_path: Path
) -> None:
    from hilt.pipelines.dashboards.audit import StoreAuditBackend, open_audit_backend
    from hilt.widgets.audit.dashboard import AuditDashboard, audit_panel
    from hilt.widgets.contracts.audit import EventFilter

    ws = _copy(loop, tmp_path)  # a copy: the last step tampers with a notebook
    before = (operator(ws).audit_head(), operator(ws).counts())
    backend = open_audit_backend(str(ws.root), env={"HTTP_X_FORWARDED_USER": "otto"})
    assert isinstance(backend, StoreAuditBackend)
    panel = audit_panel(backend)
    assert isinstance(panel, AuditDashboard)
    report = backend.verify()
    assert report.ok and report.summary == f"OK {before[0].seq} events"
    assert report.head_hash == before[0].hash
    page = backend.events(EventFilter(action="model."), 0, 10)
    assert {r.action for r in page.rows} == {"model.registered", "model.promoted"}
    assert page.chart_png.startswith(b"\x89PNG")
    view = backend.lineage(loop.decision.decision_id)
    assert view.problems == ()
    titles = [s.title for s in view.steps]
    assert titles == ["Decision", "Prediction", "Model version", "Training run", "Snapshot"]
    snapshot = dict(view.steps[-1].facts)
    assert snapshot["sha256"] == run_info(loop.second.run_id).snapshot_sha256
    assert dict(view.steps[3].facts)["run id"] == loop.second.run_id
    assert view.training is not None and view.training.total == REVIEWED
    assert backend.explanation(loop.decision.decision_id).verdict == "identical"
    assert backend.crosscheck(loop.decision.decision_id).status == "ok"

    runs = {r.run_id: r for r in backend.notebooks()}
    assert runs[loop.second.run_id].sha256 == loop.second.notebook_sha256
    assert runs[loop.scoring.run_id].file_status == "matches"
    page_html = backend.notebook_html(loop.second.run_id)
    assert "<html" in page_html and "Retraining" in page_html
    assert remote_resources(page_html) == []
    # Opening and using all of it wrote nothing.
    assert (operator(ws).audit_head(), operator(ws).counts()) == before

    notebook = ws.runs_dir / loop.second.notebook.name
    notebook.write_text(notebook.read_text().replace("Retraining", "Retrained"))
    with pytest.raises(InputError, match="does not match the sha256 the log recorded"):
        backend.notebook_html(loop.second.run_id)


def test_the_mlflow_crosscheck_never_creates_an_mlflow_store(
    loop: AuditedLoop, tmp_path: Path
) -> None:
    ws = _copy(loop, tmp_path)
    otto = open_store_as(ws, Identity(name="otto"))
    lineage = decision_lineage(otto, ws, loop.decision.decision_id)
    (ws.root / DB_FILE).unlink()
    with pytest.raises(NotFoundError, match="no MLflow store"):
        crosscheck_mlflow(ws, lineage)
    assert not (ws.root / DB_FILE).exists()
