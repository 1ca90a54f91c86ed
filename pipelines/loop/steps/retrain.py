"""The steps of retraining, one typed function per cell of notebooks/retrain.ipynb.

(start: the workspace and the MLflow run) → (training data: snapshot → dataset) → train →
evaluate → compare with the champion → gate → log and register → audit. Each step returns
something an executed notebook can show an auditor: small dataclasses with a ``table()``
(polars), figures (matplotlib, PNG in Jupyter), the gate's verdict. Nothing here prints, and
nothing returned for display holds a row of data: tables are counts, metrics and group-level
aggregates (groups smaller than ``subgroups.MIN_GROUP_SIZE`` show their count only).

Reproducibility: the snapshot file is identified by its sha256 (``training_data``); training
is deterministic (``model.fit``); ``label_noise`` flips a share of the training labels chosen
by a seeded generator, so even a robustness check reproduces byte for byte.

Importing this module does not import mlflow or xgboost; the steps that need them import
them when called.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop import evaluate as ev
from hilt.pipelines.loop.model import TrainedModel, TrainParams, fit
from hilt.pipelines.loop.steps.training_data import LABEL_SOURCES, Dataset
from hilt.pipelines.loop.subgroups import max_subgroup_gap, subgroup_metrics
from hilt.pipelines.loop.tracking.tags import (
    GATE_ARTIFACT,
    PARAM_AS_OF_SEQ,
    PARAM_LABEL_NOISE,
    TAG_GATE,
    TAG_REGISTERED_VERSION,
)
from hilt.pipelines.store import Store
from hilt.pipelines.store.gate import GateConfig, GateResult, gate

if TYPE_CHECKING:
    from hilt.pipelines.loop.plots import EvaluationFigure

#: The largest share of training labels ``train`` may flip (0.5 would be pure noise).
MAX_LABEL_NOISE = 0.5

Floats = npt.NDArray[np.float64]


# ---------------------------------------------------------------------------- training
def noisy_labels(y: pl.Series, share: float, seed: int) -> pl.Series:
    """``y`` with ``round(share * len(y))`` labels flipped (0 ↔ 1), the rows drawn without
    replacement by ``numpy.random.default_rng(seed)``: deterministic."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share):
        raise InputError("label_noise must be a number")
    if not 0.0 <= share <= MAX_LABEL_NOISE:
        raise InputError(f"label_noise must be between 0 and {MAX_LABEL_NOISE}")
    n_flip = round(share * y.len())
    if n_flip == 0:
        return y
    arr = y.cast(pl.Float64).to_numpy().copy()
    rows = np.random.default_rng(seed).choice(arr.size, size=n_flip, replace=False)
    arr[rows] = 1.0 - arr[rows]
    return pl.Series(y.name, arr, dtype=pl.Float64)


def train(
    dataset: Dataset,
    params: TrainParams,
    label_noise: float = 0.0,
    seed: int | None = None,
) -> TrainedModel:
    """Fit the model on the training rows (deterministic: same snapshot and parameters, same
    model bytes).

    ``label_noise`` is a robustness check only: that share of the training labels is flipped
    (rows drawn with ``seed``, default ``params.seed``) before fitting, to show that the gate
    rejects a model trained on corrupted labels. Keep it 0 for a model meant for promotion.
    """
    y = noisy_labels(dataset.y_train, label_noise, params.seed if seed is None else seed)
    return fit(dataset.X_train, y, params)


def model_table(model: TrainedModel) -> pl.DataFrame:
    """The trained model in one table: its sha256, rows and positives it was trained on."""
    facts = [
        ("model sha256", model.model_sha256()),
        ("training rows", str(model.train_rows)),
        ("positive training rows", str(model.train_positives)),
        ("features", ", ".join(model.features)),
    ]
    return pl.DataFrame(facts, schema=["item", "value"], orient="row")


# ---------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class Evaluation:
    """One model on the holdout: metrics, subgroup metrics and gaps, feature importance."""

    metrics: dict[str, float]
    #: ``evaluate.subgroup_metrics``: group labels, counts, rates (aggregates only).
    subgroups: pl.DataFrame
    #: Per protected attribute, max - min of ``gap_metric`` over comparable groups.
    gaps: dict[str, float]
    gap_metric: str
    importance: dict[str, float]
    threshold: float
    y: Floats = field(repr=False)
    scores: Floats = field(repr=False)

    def metrics_table(self) -> pl.DataFrame:
        return pl.DataFrame(
            [(k, self.metrics[k]) for k in ev.METRIC_NAMES if k in self.metrics],
            schema={"metric": pl.String, "holdout": pl.Float64},
            orient="row",
        )

    def gaps_table(self) -> pl.DataFrame:
        return pl.DataFrame(
            [(k, None if math.isnan(v) else v) for k, v in self.gaps.items()],
            schema={"protected attribute": pl.String, f"{self.gap_metric} gap": pl.Float64},
            orient="row",
        )

    def calibration_figure(self) -> EvaluationFigure:
        from hilt.pipelines.loop.plots import calibration_figure

        return calibration_figure(self.y, self.scores, label="challenger")

    def importance_figure(self) -> EvaluationFigure:
        from hilt.pipelines.loop.plots import feature_importance_figure

        return feature_importance_figure(self.importance)

    def subgroup_figure(self) -> EvaluationFigure:
        from hilt.pipelines.loop.plots import subgroup_figure

        return subgroup_figure(self.subgroups, self.gap_metric)


def evaluate(model: TrainedModel, dataset: Dataset, settings: Settings) -> Evaluation:
    """Metrics, subgroup metrics (per protected attribute) and their gaps on the holdout."""
    gate_config = GateConfig.from_settings(settings)
    threshold = settings.review.decision_threshold
    y = dataset.y_holdout.cast(pl.Float64).to_numpy()
    scores = model.predict(dataset.holdout_features)
    subgroups = subgroup_metrics(y, scores, threshold, dataset.groups_holdout)
    return Evaluation(
        metrics=ev.metrics(y, scores, threshold),
        subgroups=subgroups,
        gaps=max_subgroup_gap(subgroups, gate_config.gap_metric),
        gap_metric=gate_config.gap_metric,
        importance=ev.feature_importance(model),
        threshold=threshold,
        y=y,
        scores=scores,
    )


@dataclass(frozen=True)
class Comparison:
    """The champion on the same holdout (or the absence of one)."""

    version: str | None
    model_sha256: str | None
    metrics: dict[str, float] | None
    challenger_metrics: dict[str, float]
    scores: Floats | None = field(default=None, repr=False)

    def table(self) -> pl.DataFrame:
        """Challenger and champion side by side (champion columns null without a champion)."""
        rows = []
        for k in ev.METRIC_NAMES:
            if k == "n":
                continue
            mine = self.challenger_metrics.get(k)
            theirs = None if self.metrics is None else self.metrics.get(k)
            diff = None if mine is None or theirs is None else mine - theirs
            rows.append((k, mine, theirs, diff))
        return pl.DataFrame(
            rows,
            schema={
                "metric": pl.String,
                "challenger": pl.Float64,
                f"champion (v{self.version})" if self.version else "champion (none)": pl.Float64,
                "challenger - champion": pl.Float64,
            },
            orient="row",
        )


def compare_with_champion(
    dataset: Dataset, settings: Settings, evaluation: Evaluation
) -> Comparison:
    """Load the champion (via MLflow's registry; call ``ensure_run`` or
    ``tracking.client.configure`` first) and evaluate it on the same holdout."""
    from hilt.pipelines.loop.tracking.pyfunc import load_model_version
    from hilt.pipelines.loop.tracking.registry import champion_version

    version = champion_version(settings)
    if version is None:
        return Comparison(None, None, None, dict(evaluation.metrics))
    champion = load_model_version(settings, version)
    scores = champion.predict(dataset.holdout_features)
    return Comparison(
        version=version,
        model_sha256=champion.model_sha256(),
        metrics=ev.metrics(evaluation.y, scores, evaluation.threshold),
        challenger_metrics=dict(evaluation.metrics),
        scores=scores,
    )


def roc_figure(evaluation: Evaluation, comparison: Comparison | None = None) -> EvaluationFigure:
    """The challenger's ROC curve on the holdout, with the champion's when there is one."""
    from hilt.pipelines.loop.plots import roc_curve_figure

    champion = comparison.scores if comparison is not None else None
    label = f"champion v{comparison.version}" if comparison and comparison.version else "champion"
    return roc_curve_figure(
        evaluation.y,
        evaluation.scores,
        "challenger",
        champion_scores=champion,
        champion_label=label,
    )


def apply_gate(evaluation: Evaluation, comparison: Comparison, settings: Settings) -> GateResult:
    """The promotion gate of hilt.toml: floor, subgroup gaps, not worse than the champion."""
    return gate(
        evaluation.metrics,
        evaluation.gaps,
        comparison.metrics,
        GateConfig.from_settings(settings),
    )


def gate_table(result: GateResult) -> pl.DataFrame:
    """One row per check of the gate, with its plain-language explanation."""
    return pl.DataFrame(
        [
            (
                c.name,
                "pass" if c.passed else "FAIL",
                None if c.value is None or math.isnan(c.value) else c.value,
                c.limit,
                c.explanation,
            )
            for c in result.checks
        ],
        schema={
            "check": pl.String,
            "result": pl.String,
            "value": pl.Float64,
            "limit": pl.Float64,
            "explanation": pl.String,
        },
        orient="row",
    )


@dataclass(frozen=True)
class Registration:
    """What the run logged and registered."""

    run_id: str
    model_sha256: str
    gate_passed: bool
    #: The registered model's name and the new version (None: logged only, not registered).
    registered_name: str
    version: str | None
    #: The challenger alias points at ``version`` (the gate passed).
    challenger: bool
    #: The pending challenger that a rejected version would have displaced, restored.
    restored_challenger: str | None = None

    def table(self) -> pl.DataFrame:
        facts = [
            ("MLflow run", self.run_id),
            ("model sha256", self.model_sha256),
            ("gate", "passed" if self.gate_passed else "rejected"),
            (
                "registered version",
                f"{self.registered_name} v{self.version}" if self.version else "not registered",
            ),
            (
                "alias",
                "challenger (awaiting a lead's approval: hilt promote)"
                if self.challenger
                else "none (the champion alias is untouched)",
            ),
        ]
        return pl.DataFrame(facts, schema=["item", "value"], orient="row")


def training_params(params: TrainParams, label_noise: float, as_of_seq: int) -> dict[str, Any]:
    """The MLflow params of a retraining run: TrainParams, label_noise, the requested seq."""
    return {**params.to_dict(), PARAM_LABEL_NOISE: float(label_noise), PARAM_AS_OF_SEQ: as_of_seq}


def run_metrics(evaluation: Evaluation) -> dict[str, float]:
    """holdout_<metric> and gap_<attribute> (NaN where undefined)."""
    out = {f"holdout_{k}": float(v) for k, v in evaluation.metrics.items()}
    out.update({f"gap_{k}": float(v) for k, v in evaluation.gaps.items()})
    return out


def log_and_register(
    run_id: str,
    settings: Settings,
    *,
    model: TrainedModel,
    dataset: Dataset,
    evaluation: Evaluation,
    gate_result: GateResult,
    params: TrainParams,
    label_noise: float = 0.0,
    as_of_seq: int = 0,
    register: bool = True,
) -> Registration:
    """Log the training to the MLflow run (params, metrics, dataset input with the snapshot's
    path and sha256, the model, the subgroup table, the gate's verdict) and, with
    ``register``, register the model: it becomes the challenger when the gate passed; when
    it failed, the new version is rejected at once (tagged, no alias) and the champion alias
    is untouched (as is a pending challenger of an earlier run)."""
    from hilt.pipelines.loop.tracking import registry
    from hilt.pipelines.loop.tracking.environment import registered_model_name
    from hilt.pipelines.loop.tracking.runs import log_run_dict, set_run_tags
    from hilt.pipelines.loop.tracking.training import log_training

    snapshot = dataset.snapshot
    logged = log_training(
        run_id,
        params=training_params(params, label_noise, as_of_seq),
        metrics=run_metrics(evaluation),
        subgroup_table=evaluation.subgroups,
        dataset_frame=dataset.X_train,
        dataset_name=snapshot.name,
        dataset_digest=snapshot.sha256,
        snapshot_seq=snapshot.as_of_seq,
        model=model,
        dataset_source=snapshot.path,
    )
    verdict = "passed" if gate_result.passed else "rejected"
    log_run_dict(run_id, gate_result.to_dict(), GATE_ARTIFACT)
    set_run_tags(run_id, {TAG_GATE: verdict})
    name = registered_model_name(settings)
    if not register:
        return Registration(run_id, logged.model_sha256, gate_result.passed, name, None, False)
    previous = registry.challenger_version(settings)
    version = registry.register_challenger(settings, run_id)
    set_run_tags(run_id, {TAG_REGISTERED_VERSION: version})
    restored = None
    if not gate_result.passed:
        registry.reject_challenger(settings, version)
        if previous is not None and previous != version:
            registry.set_challenger(settings, previous)
            restored = previous
    return Registration(
        run_id=run_id,
        model_sha256=logged.model_sha256,
        gate_passed=gate_result.passed,
        registered_name=name,
        version=version,
        challenger=gate_result.passed,
        restored_challenger=restored,
    )


def _gate_payload(result: GateResult) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "passed": c.passed,
            "value": None if c.value is None or math.isnan(c.value) else round(c.value, 6),
            "limit": c.limit,
        }
        for c in result.checks
    ]


def record(
    store: Store,
    registration: Registration,
    dataset: Dataset,
    gate_result: GateResult,
    reproduces: str = "",
) -> pl.DataFrame:
    """Audit the outcome: ``model.trained`` always; then ``model.challenger`` (gate passed)
    or ``model.gate_failed`` (rejected) for a registered version. Payloads: ids, hashes,
    counts and gate values, no data. Returns the events written (action, seq)."""
    snapshot = dataset.snapshot
    written: list[tuple[str, int]] = []
    trained: dict[str, Any] = {
        "run_id": registration.run_id,
        "model_sha256": registration.model_sha256,
        "snapshot": snapshot.name,
        "snapshot_sha256": snapshot.sha256,
        "snapshot_as_of_seq": snapshot.as_of_seq,
        "train_rows": dataset.X_train.height,
        "holdout_rows": dataset.X_holdout.height,
        "label_sources": {s: dataset.counts[("train", s)][0] for s in LABEL_SOURCES},
        "gate": "passed" if gate_result.passed else "rejected",
    }
    if reproduces:
        trained["reproduces"] = reproduces
    seq = store.record_event("model.trained", "run", registration.run_id, trained)
    written.append(("model.trained", seq))
    if registration.version is not None:
        object_id = f"{registration.registered_name}/v{registration.version}"
        payload: dict[str, Any] = {
            "run_id": registration.run_id,
            "version": registration.version,
            "model_sha256": registration.model_sha256,
            "checks": _gate_payload(gate_result),
        }
        if registration.challenger:
            action = "model.challenger"
        else:
            action = "model.gate_failed"
            payload["champion_unchanged"] = True
            payload["challenger_restored"] = registration.restored_challenger
        seq = store.record_event(action, "model", object_id, payload)
        written.append((action, seq))
    return pl.DataFrame(written, schema=["audit event", "seq"], orient="row")
