"""The retraining run, one typed function per cell of notebooks/retrain.ipynb.

(start: the workspace and the MLflow run) → (training data: snapshot → dataset) → train
(``training``) → evaluate, compare with the store's champion, gate (``holdout``) → log to
MLflow and register in the store's model registry (the store applies the gate itself;
MLflow's aliases mirror its verdict) → audit what only the run knows (``run.trained``).
This module holds the run's end (its MLflow params and metrics, the registration, the
audit) and every step in one call (``run_in_process``). Nothing here prints, and nothing
returned for display holds a row of data.

Reproducibility: the snapshot file is identified by its sha256 (``training_data``); training
is deterministic (``training``).

Importing this module does not import mlflow or xgboost; the steps that need them import
them when called.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.loop.model import TrainedModel, TrainParams
from hilt.pipelines.loop.steps.engine import TrainingEngine
from hilt.pipelines.loop.steps.holdout import (
    Comparison,
    Evaluation,
    apply_gate,
    checks_table,
    compare_with_champion,
    evaluate,
    gate_checks,
)
from hilt.pipelines.loop.steps.training import train
from hilt.pipelines.loop.steps.training_data import (
    LABEL_SOURCES,
    Dataset,
    load_dataset,
    take_snapshot,
    training_batches,
)
from hilt.pipelines.loop.tracking.tags import (
    GATE_ARTIFACT,
    PARAM_AS_OF_SEQ,
    PARAM_ENGINE,
    PARAM_LABEL_NOISE,
    PARAM_WORKERS,
    TAG_GATE,
    TAG_REGISTERED_VERSION,
)
from hilt.pipelines.store import Store
from hilt.pipelines.store.gate import GateResult
from hilt.pipelines.store.registry_records import GateCheckRecord, ModelEvaluation

if TYPE_CHECKING:
    from hilt.pipelines.loop.tracking.relay import Tracking


def _number(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


@dataclass(frozen=True)
class Registration:
    """What the run logged to MLflow and registered in the store's model registry."""

    run_id: str
    model_sha256: str
    #: The gate's verdict: the store's (registered), or as the store would give it (not).
    gate_passed: bool
    #: The registered model's name and the new version (None: logged only, not registered).
    registered_name: str
    version: str | None
    #: The store's registry: the model ("<name>/v<version>"), its state (challenger or
    #: rejected), the audit seq of ``model.registered``, the challenger it superseded.
    model: str | None = None
    state: str | None = None
    audit_seq: int | None = None
    superseded: str | None = None
    #: The store's own gate checks (registered) or the gate as the store would apply it.
    checks: tuple[GateCheckRecord, ...] = ()
    #: Why MLflow's aliases could not be brought in line with the store's registry (None:
    #: they were).
    mirror_problem: str | None = None

    @property
    def challenger(self) -> bool:
        """The store made the model the challenger (awaiting a lead's approval)."""
        return self.state == "challenger"

    def table(self) -> pl.DataFrame:
        if self.version is None:
            state = "not registered (register=false): logged to MLflow only"
        elif self.challenger:
            state = (
                "challenger (awaiting the approval of a lead who did not train it: hilt promote)"
            )
        else:
            state = "rejected by the store's gate (the champion is unchanged)"
        facts = [
            ("MLflow run", self.run_id),
            ("model sha256", self.model_sha256),
            (
                "gate",
                ("passed" if self.gate_passed else "rejected")
                + (" (the store's verdict)" if self.version else " (not registered)"),
            ),
            (
                "registered version",
                f"{self.registered_name} v{self.version}" if self.version else "not registered",
            ),
            ("state in the store's registry", state),
        ]
        if self.superseded:
            facts.append(("superseded challenger", self.superseded))
        if self.audit_seq is not None:
            facts.append(("audit seq (model.registered)", str(self.audit_seq)))
        if self.version is not None:
            facts.append(
                (
                    "MLflow aliases",
                    "mirror the store's registry"
                    if self.mirror_problem is None
                    else f"NOT updated: {self.mirror_problem}",
                )
            )
        return pl.DataFrame(facts, schema=["item", "value"], orient="row")

    def gate_table(self) -> pl.DataFrame:
        """The gate's checks as the store recorded them."""
        return checks_table(self.checks)


def training_params(
    params: TrainParams,
    label_noise: float,
    as_of_seq: int,
    engine: TrainingEngine | None = None,
) -> dict[str, Any]:
    """The MLflow params of a retraining run: TrainParams, label_noise, the requested seq,
    the engine and its worker count (0: local)."""
    out: dict[str, Any] = {
        **params.to_dict(),
        PARAM_LABEL_NOISE: float(label_noise),
        PARAM_AS_OF_SEQ: as_of_seq,
    }
    if engine is not None:
        out[PARAM_ENGINE] = engine.choice.name
        out[PARAM_WORKERS] = engine.shape.workers if engine.shape is not None else 0
    return out


def run_metrics(evaluation: Evaluation) -> dict[str, float]:
    """holdout_<metric> and gap_<attribute> (NaN where undefined)."""
    out = {f"holdout_{k}": float(v) for k, v in evaluation.metrics.items()}
    out.update({f"gap_{k}": float(v) for k, v in evaluation.gaps.items()})
    return out


def evaluation_record(
    dataset: Dataset, evaluation: Evaluation, comparison: Comparison
) -> ModelEvaluation:
    """What the store applies its gate to: the holdout metrics and gaps, the snapshot, and
    the champion compared with on the same holdout (NaN as null)."""

    def clean(values: dict[str, float]) -> dict[str, float | None]:
        return {k: _number(v) for k, v in values.items()}

    return ModelEvaluation(
        snapshot_sha256=dataset.snapshot.sha256,
        metrics=clean(evaluation.metrics),
        gaps=clean(evaluation.gaps),
        champion=comparison.model,
        champion_metrics=clean(comparison.metrics) if comparison.metrics is not None else None,
    )


def log_and_register(
    store: Store,
    run_id: str,
    settings: Settings,
    *,
    model: TrainedModel,
    dataset: Dataset,
    evaluation: Evaluation,
    comparison: Comparison,
    gate_result: GateResult,
    params: TrainParams,
    label_noise: float = 0.0,
    as_of_seq: int = 0,
    register: bool = True,
    engine: TrainingEngine | None = None,
) -> Registration:
    """Log the training to the MLflow run (params, metrics, dataset input with the snapshot's
    path and sha256, the model, the subgroup table) and, with ``register``, register the
    model: MLflow gives it a version number, then the store registers it with the evaluation
    and applies its gate itself: passed, it becomes the challenger (a pending one is
    superseded); not, it is rejected at once and nothing else changes. MLflow's aliases and
    tags, and the run's gate tag and ``evaluation/gate.json``, then mirror the store's
    verdict. A version the store refuses to register is removed from MLflow again.

    Without ``register`` nothing reaches the store's registry; the run's gate tag is
    ``gate_result`` (the same rule, applied here)."""
    from hilt.pipelines.loop.model_registry import find_model
    from hilt.pipelines.loop.tracking.environment import registered_model_name
    from hilt.pipelines.loop.tracking.relay import scratch, tracking_here
    from hilt.pipelines.loop.tracking.training_log import prepare_training_log

    snapshot = dataset.snapshot
    tracking = tracking_here(settings, store.models)
    if engine is not None:
        tracking.set_run_tags(run_id, engine.tags())
    with scratch(tracking) as folder:
        prepared = prepare_training_log(
            folder,
            params=training_params(params, label_noise, as_of_seq, engine),
            metrics=run_metrics(evaluation),
            subgroup_table=evaluation.subgroups,
            dataset_frame=dataset.X_train,
            dataset_name=snapshot.name,
            dataset_digest=snapshot.sha256,
            snapshot_seq=snapshot.as_of_seq,
            model=model,
            dataset_source=snapshot.path,
            remote_rows=None
            if dataset.train_on_client
            else (dataset.train_rows, lambda: training_batches(dataset, settings)),
        )
        tracking.write_training_log(run_id, prepared.to_json())
    model_sha256 = prepared.model_sha256
    name = registered_model_name(settings)
    if not register:
        checks = gate_checks(gate_result)
        _log_gate(tracking, run_id, gate_result.passed, checks)
        return Registration(run_id, model_sha256, gate_result.passed, name, None, checks=checks)
    version = tracking.register_version(run_id)
    label = f"{name}/v{version}"
    previous = next((m.model for m in store.models() if m.state == "challenger"), None)
    try:
        record = store.register_model(
            label,
            model_sha256,
            run_id,
            evaluation_record(dataset, evaluation, comparison),
        )
    except BaseException:
        # MLflow holds no version the store's registry does not (unless the store has it).
        with contextlib.suppress(Exception):
            if find_model(store, label) is None:
                tracking.delete_version(version)
        raise
    passed = record.gate == "passed"
    checks = tuple(record.checks)
    tracking.set_run_tags(run_id, {TAG_REGISTERED_VERSION: version})
    _log_gate(tracking, run_id, passed, checks)
    superseded = previous if record.state == "challenger" and previous != record.model else None
    return Registration(
        run_id=run_id,
        model_sha256=model_sha256,
        gate_passed=passed,
        registered_name=name,
        version=version,
        model=record.model,
        state=record.state,
        audit_seq=record.registered_seq,
        superseded=superseded,
        checks=checks,
        mirror_problem=tracking.mirror(),
    )


def _log_gate(
    tracking: Tracking, run_id: str, passed: bool, checks: Sequence[GateCheckRecord]
) -> None:
    """The gate's verdict on the run: its tag and ``evaluation/gate.json``."""
    tracking.log_run_dict(
        run_id, {"passed": passed, "checks": [c.model_dump() for c in checks]}, GATE_ARTIFACT
    )
    tracking.set_run_tags(run_id, {TAG_GATE: "passed" if passed else "rejected"})


def record(
    store: Store,
    registration: Registration,
    dataset: Dataset,
    reproduces: str = "",
) -> pl.DataFrame:
    """Audit what only the run knows, as ``run.trained`` (a run's event: the store wrote
    ``model.registered`` itself when it registered the model): the model's sha256, the
    snapshot, rows and label sources, the gate, the version registered (if any) and the run
    reproduced (if any). Payload: ids, hashes and counts, no data. Returns the audit events
    of the run's model (action, seq)."""
    snapshot = dataset.snapshot
    trained: dict[str, Any] = {
        "run_id": registration.run_id,
        "model_sha256": registration.model_sha256,
        "snapshot": snapshot.name,
        "snapshot_sha256": snapshot.sha256,
        "snapshot_as_of_seq": snapshot.as_of_seq,
        "train_rows": dataset.train_rows,
        "holdout_rows": dataset.X_holdout.height,
        "label_sources": {s: dataset.counts[("train", s)][0] for s in LABEL_SOURCES},
        "gate": "passed" if registration.gate_passed else "rejected",
        "model": registration.model,
    }
    if reproduces:
        trained["reproduces"] = reproduces
    written: list[tuple[str, int]] = []
    if registration.audit_seq is not None:
        written.append(("model.registered", registration.audit_seq))
    seq = store.record_event("run.trained", "run", registration.run_id, trained)
    written.append(("run.trained", seq))
    return pl.DataFrame(written, schema=["audit event", "seq"], orient="row")


def run_in_process(
    store: Store,
    run_id: str,
    settings: Settings,
    params: TrainParams,
    *,
    label_noise: float = 0.0,
) -> Registration:
    """The retraining notebook's steps one after the other, in this process (as a data
    scientist would call them in JupyterLab, or `hilt simulate --engine steps`): snapshot
    now, dataset, train, evaluate, compare with the champion, gate, log to the MLflow run
    ``run_id`` and register in the store (which applies the gate itself), ``run.trained``.
    The caller creates and finishes the MLflow run."""
    snapshot = take_snapshot(store, 0)
    dataset = load_dataset(snapshot, settings)
    model = train(dataset, params, label_noise=label_noise)
    evaluation = evaluate(model, dataset, settings)
    comparison = compare_with_champion(store, dataset, settings, evaluation)
    result = apply_gate(evaluation, comparison, settings)
    registration = log_and_register(
        store,
        run_id,
        settings,
        model=model,
        dataset=dataset,
        evaluation=evaluation,
        comparison=comparison,
        gate_result=result,
        params=params,
        label_noise=label_noise,
    )
    record(store, registration, dataset)
    return registration
