"""The steps of a monitoring run, one typed function per cell of notebooks/monitor.ipynb
(post-market monitoring, EU AI Act Arts. 72, 26(5)).

the store's champion (loaded from MLflow, proved by its sha256) → its training snapshot (the
file the store's registry names, checked by sha256) → the cases it scored in the window →
drift statistics (``loop/monitoring.py``) → the store's verdict (``record_monitoring``: the
store applies its own thresholds, adds the override / accept rates and the realised
performance from its own tables, and audits ``monitoring.run`` and each breach). The
notebook shows aggregates only: statistics per feature name, counts and rates.

Importing this module does not import mlflow or xgboost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop import monitoring
from hilt.pipelines.loop.steps.score import ScoringModel, load_model
from hilt.pipelines.store import Store
from hilt.pipelines.store.monitoring_records import MonitoringStatistics, MonitoringVerdict
from hilt.pipelines.workspace import Workspace

__all__ = [
    "Window",
    "champion",
    "compute",
    "figures",
    "log_monitoring",
    "record",
    "training_reference",
    "verdict_tables",
    "window",
    "window_days",
]


def window_days(settings: Settings, given: int = 0) -> int:
    """The window of the run: ``given`` days, or (0) the config's ``[monitoring]
    window_days``."""
    if given < 0:
        raise InputError("window_days must be >= 0 (0: the config's window)")
    return given or settings.monitoring.window_days


def champion(store: Store, settings: Settings) -> ScoringModel:
    """The store's champion, loaded from MLflow (its sha256 is checked against the store's
    registry when the statistics are recorded)."""
    return load_model(store, settings)


def training_reference(
    ws: Workspace, store: Store, model: ScoringModel, settings: Settings
) -> monitoring.Reference:
    """The champion's training rows (the snapshot the store's registry recorded for it,
    checked by sha256) and its scores on them, as monitoring compares with them."""
    from hilt.pipelines.loop.digests import file_sha256
    from hilt.pipelines.loop.model_registry import find_model
    from hilt.pipelines.loop.steps.training_data import find_snapshot

    record = find_model(store, model.label)
    if record is None:
        raise InputError(f"{model.label} is not registered in this store")
    path: Path = find_snapshot(ws, record.evaluation.snapshot_sha256)
    data = pl.read_parquet(path)
    if file_sha256(path) != record.evaluation.snapshot_sha256:
        raise InputError(f"{path.name}: the file changed while it was read")
    train = data.filter(pl.col("split") == "train")
    return monitoring.reference(train, model.model.predict(train), settings)


@dataclass(frozen=True)
class Window:
    """The cases the champion scored in the window: features as stored, and its scores."""

    days: int
    cases: pl.DataFrame
    scores: monitoring.Floats

    def table(self) -> pl.DataFrame:
        return monitoring.facts_table([("window (days)", self.days), ("cases", self.cases.height)])


def window(store: Store, days: int) -> Window:
    """The window's cases, read from the store (the champion's latest score of each)."""
    scored = store.monitoring_window(days)
    ids = scored["case_id"].to_list()
    if not ids:
        return Window(days, pl.DataFrame(schema={"case_id": pl.String}), np.zeros(0))
    cases = store.case_frame(ids)
    joined = cases.join(scored.select("case_id", "score"), on="case_id", how="inner")
    if joined.height != len(ids):
        raise InputError(f"{len(ids) - joined.height} scored cases could not be read")
    return Window(days, joined.drop("score"), joined["score"].to_numpy())


def compute(
    reference: monitoring.Reference, live: Window, model: ScoringModel, settings: Settings
) -> MonitoringStatistics:
    """The drift statistics of the window against the training reference."""
    cases = live.cases
    if cases.height == 0:
        cases = pl.DataFrame(
            {name: pl.Series(name, [], dtype=pl.String) for name in settings.fields.features}
        )
    return monitoring.compare(
        reference,
        cases,
        live.scores,
        settings,
        model_version=model.label,
        model_sha256=model.model.model_sha256(),
        window_days=live.days,
    )


def record(
    store: Store, ws: Workspace, statistics: MonitoringStatistics, run_id: str
) -> MonitoringVerdict:
    """The store's verdict, audited (``monitoring.run``, one ``monitoring.breach`` each),
    naming this run's executed notebook in runs/ (when run by ``hilt monitor``)."""
    found = sorted(ws.runs_dir.glob(f"*-monitor-{run_id}.ipynb")) if ws.runs_dir.is_dir() else []
    notebook = found[-1].name if found else None
    return store.record_monitoring(statistics, run_id, notebook)


def figures(statistics: MonitoringStatistics) -> pl.DataFrame:
    """Per feature: PSI, the test, missing rates; then the scores and the estimates."""
    return monitoring.feature_table(statistics)


def verdict_tables(
    verdict: MonitoringVerdict, statistics: MonitoringStatistics
) -> dict[str, pl.DataFrame]:
    """The store's verdict as tables: summary, findings, rates (over the window: week empty;
    then week by week), realised performance."""
    e, t = statistics.estimated, statistics.estimated_training
    summary = monitoring.facts_table(
        [
            ("model", verdict.model_version),
            ("window (days)", verdict.window_days),
            ("cases in the window (the store's count)", verdict.cases),
            ("score PSI", statistics.score_psi),
            (
                "estimated positive rate (window / training)",
                f"{e.positive_rate} / {t.positive_rate}",
            ),
            ("estimated accuracy (window / training)", f"{e.accuracy} / {t.accuracy}"),
            ("worst", verdict.worst),
            ("audit seq", verdict.seq),
        ]
    )
    findings = pl.DataFrame(
        [b.model_dump() for b in verdict.breaches],
        schema={
            "check": pl.String,
            "feature": pl.String,
            "statistic": pl.String,
            "value": pl.Float64,
            "threshold": pl.Float64,
            "severity": pl.String,
        },
    )
    rates = pl.DataFrame(
        [r.model_dump() for r in [*verdict.rates, *verdict.weekly_rates]],
        schema={
            "model_version": pl.String,
            "week": pl.String,
            "decisions": pl.Int64,
            "accept_rate": pl.Float64,
            "override_rate": pl.Float64,
        },
    )
    realised = pl.DataFrame(
        [r.model_dump() for r in verdict.realised],
        schema={
            "model_version": pl.String,
            "outcomes": pl.Int64,
            "auc": pl.Float64,
            "accuracy": pl.Float64,
        },
    )
    return {"summary": summary, "findings": findings, "rates": rates, "realised": realised}


def log_monitoring(
    run_id: str, verdict: MonitoringVerdict, statistics: MonitoringStatistics
) -> None:
    """Params and metrics of the monitoring run in MLflow: the model, the window, counts,
    the score PSI, the worst severity (aggregates only)."""
    from hilt.pipelines.loop.tracking.relay import log_run_values

    log_run_values(
        run_id,
        params={
            "model_version": verdict.model_version,
            "model_sha256": statistics.model_sha256,
            "window_days": verdict.window_days,
            "worst": verdict.worst,
        },
        metrics={
            "cases": verdict.cases,
            "score_psi": statistics.score_psi,
            "breaches": sum(1 for b in verdict.breaches if b.severity != "warning"),
            "warnings": sum(1 for b in verdict.breaches if b.severity == "warning"),
        },
    )
