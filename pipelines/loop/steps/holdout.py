"""The trained model on the holdout, steps of notebooks/retrain.ipynb: its evaluation
(metrics, subgroup metrics and their gaps, feature importance), the store's champion on the
same holdout, and the promotion gate as the store will apply it.

Each step returns something an executed notebook can show an auditor: small dataclasses with
a ``table()`` (polars), figures, the gate's verdict; tables are counts, metrics and
group-level aggregates (groups smaller than ``subgroups.MIN_GROUP_SIZE`` show their count
only). Importing this module does not import mlflow or xgboost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop import evaluate as ev
from hilt.pipelines.loop.model import TrainedModel
from hilt.pipelines.loop.steps.training_data import Dataset
from hilt.pipelines.loop.subgroups import max_subgroup_gap, subgroup_metrics
from hilt.pipelines.store import Store
from hilt.pipelines.store.gate import GateConfig, GateResult, gate
from hilt.pipelines.store.registry_records import GateCheckRecord

if TYPE_CHECKING:
    from hilt.pipelines.loop.plots import EvaluationFigure


Floats = npt.NDArray[np.float64]


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
    """The store's champion on the same holdout (or the absence of one)."""

    #: The champion's version number (its model in the store's registry is ``model``).
    version: str | None
    model_sha256: str | None
    metrics: dict[str, float] | None
    challenger_metrics: dict[str, float]
    scores: Floats | None = field(default=None, repr=False)
    #: "<registered name>/v<version>": the champion the store's registry names.
    model: str | None = None

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
    store: Store, dataset: Dataset, settings: Settings, evaluation: Evaluation
) -> Comparison:
    """The store's champion, loaded from MLflow (by the runner's relay in a run's kernel;
    else call ``ensure_run`` or ``tracking.client.configure`` first) and checked to be the
    model the store registered (its sha256), evaluated on the same holdout."""
    from hilt.pipelines.loop.model_registry import champion as store_champion
    from hilt.pipelines.loop.tracking.environment import registered_model_name
    from hilt.pipelines.loop.tracking.mirror import version_of
    from hilt.pipelines.loop.tracking.relay import load_version, tracking_here

    current = store_champion(store)
    if current is None:
        return Comparison(None, None, None, dict(evaluation.metrics))
    version = version_of(current.model, registered_model_name(settings))
    if version is None:
        raise InputError(
            f"the champion {current.model} is not a version of "
            f"{registered_model_name(settings)} in MLflow: it cannot be compared here"
        )
    champion = load_version(tracking_here(settings, store.models), settings, version)
    if champion.model_sha256() != current.model_sha256:
        raise InputError(
            f"the champion's model in MLflow is not the one the store registered as "
            f"{current.model} (its sha256 differs): nothing is compared with it"
        )
    scores = champion.predict(dataset.holdout_features)
    return Comparison(
        version=version,
        model_sha256=current.model_sha256,
        metrics=ev.metrics(evaluation.y, scores, evaluation.threshold),
        challenger_metrics=dict(evaluation.metrics),
        scores=scores,
        model=current.model,
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
    """The promotion gate of hilt.toml (floor, subgroup gaps, not worse than the champion),
    as the store will apply it when the model is registered (``store.gate``, the same rule):
    shown before registering; the store's own verdict is ``Registration.checks``."""
    return gate(
        evaluation.metrics,
        evaluation.gaps,
        comparison.metrics,
        GateConfig.from_settings(settings),
    )


def gate_table(result: GateResult) -> pl.DataFrame:
    """One row per check of the gate, with its plain-language explanation."""
    return checks_table(gate_checks(result))


def gate_checks(result: GateResult) -> tuple[GateCheckRecord, ...]:
    """The gate's checks as the store records them (NaN as null)."""
    return tuple(GateCheckRecord(**c) for c in result.to_dict()["checks"])


def checks_table(checks: Sequence[GateCheckRecord]) -> pl.DataFrame:
    """One row per check, with its plain-language explanation."""
    return pl.DataFrame(
        [(c.name, "pass" if c.passed else "FAIL", c.value, c.limit, c.explanation) for c in checks],
        schema={
            "check": pl.String,
            "result": pl.String,
            "value": pl.Float64,
            "limit": pl.Float64,
            "explanation": pl.String,
        },
        orient="row",
    )
