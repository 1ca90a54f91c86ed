"""Post-market monitoring, the computation (EU AI Act Arts. 72, 26(5)): the cases the
champion scored in a window against its training snapshot.

Pure: frames in, statistics out (``MonitoringStatistics``, what the store's
``record_monitoring`` takes). Nothing here decides whether something is a breach: the
store applies the thresholds of its own config in force to these figures, and adds the
figures it computes from its own tables (override and accept rates from its decisions,
realised performance from its predictions and the outcomes recorded with `hilt outcomes`).

- per feature: the population stability index (PSI) over the bins of training (quantile
  bins of the training values for numbers, the training levels for categories, plus one
  bin for values training never had) and a test statistic: two-sample Kolmogorov-Smirnov
  for numbers, chi-square on the level counts for categories (``scipy.stats``);
- the champion's scores: PSI over the deciles of its scores on the training rows;
- missing-value rates, in training and in the window;
- estimated performance before outcomes arrive, from the calibrated probabilities: the
  expected positive rate (mean probability) and the expected accuracy at the decision
  threshold (mean of p where p >= t, else 1 - p), beside the same on training.

Why scipy and no monitoring library (evidently, nannyml): the figures are a few lines each
over numpy arrays; those libraries pull in large dependency trees (evidently: plotly,
nltk, fsspec, ...; nannyml: pandas-only pipelines, scikit-learn, its own pinned versions),
convert polars to pandas (a full copy of a million rows), and some fetch resources at
run time; hilt may download nothing when it runs. scipy is already installed.

Everything shown or sent is aggregate (counts, rates, statistics per feature name): no
value of a case, no level a case holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.store.monitoring_records import (
    EstimatedPerformance,
    FeatureStatistics,
    MonitoringStatistics,
)

#: Quantile bins of a numeric feature (and of the scores), at most.
BINS = 10
#: Share given to an empty bin, so that the PSI stays finite (the usual floor).
EMPTY_SHARE = 1e-4
#: At most this many training values are kept per numeric feature for the KS test.
MAX_REFERENCE_VALUES = 200_000

Floats = np.ndarray[Any, np.dtype[np.float64]]


# ---------------------------------------------------------------------------- primitives
def psi(expected: Floats, actual: Floats) -> float:
    """Population stability index of two count (or share) vectors over the same bins:
    sum((a - e) · ln(a / e)) over the shares, empty bins floored at ``EMPTY_SHARE``."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.size == 0:
        raise InputError("psi needs two count vectors over the same bins")
    if e.sum() <= 0 or a.sum() <= 0:
        return 0.0
    e = np.maximum(e / e.sum(), EMPTY_SHARE)
    a = np.maximum(a / a.sum(), EMPTY_SHARE)
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(values: Floats, bins: int = BINS) -> Floats:
    """Inner bin edges at the quantiles of ``values`` (distinct; none for a constant)."""
    if values.size == 0:
        return np.empty(0, dtype=np.float64)
    qs = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(qs)


def binned(values: Floats, edges: Floats) -> Floats:
    """Counts of ``values`` in the bins the inner ``edges`` make (len(edges) + 1 bins)."""
    idx = np.searchsorted(edges, values, side="right")
    return np.bincount(idx, minlength=edges.size + 1).astype(np.float64)


def binned_sorted(values: Floats, edges: Floats) -> Floats:
    """``binned`` of values already sorted: O(bins · log n) instead of O(n · log bins). A
    value equal to an edge is in the bin above it, as in ``binned``."""
    cuts = np.searchsorted(values, edges, side="left")
    bounds = np.concatenate(([0], cuts, [values.size]))
    return np.diff(bounds).astype(np.float64)


def ks_sorted(reference: Floats, live: Floats) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov on two sorted samples: D, the largest gap between their
    empirical distribution functions (evaluated at every distinct value of both), and the
    asymptotic two-sided p-value as ``scipy.stats.ks_2samp(method="asymp")`` gives it
    (Smirnov: ``kstwo.sf(D, round(n·m / (n + m)))``). One pass over the live values, which
    are sorted once for both this and the PSI."""
    n1, n2 = reference.size, live.size
    last = np.empty(n2, dtype=bool)
    np.not_equal(live[1:], live[:-1], out=last[:-1])
    last[-1] = True
    distinct = live[last]
    gap_live = np.abs(
        (np.flatnonzero(last) + 1) / n2 - np.searchsorted(reference, distinct, "right") / n1
    )
    gap_ref = np.abs(
        np.searchsorted(reference, reference, "right") / n1
        - np.searchsorted(live, reference, "right") / n2
    )
    d = float(max(gap_live.max(initial=0.0), gap_ref.max(initial=0.0)))
    m, n = sorted((float(n1), float(n2)), reverse=True)
    p = float(np.clip(stats.kstwo.sf(d, np.round(m * n / (m + n))), 0.0, 1.0))
    return d, p


# ---------------------------------------------------------------------------- reference
@dataclass(frozen=True)
class NumericReference:
    edges: Floats = field(repr=False)
    counts: Floats = field(repr=False)
    #: Sorted training values (a systematic sample of at most MAX_REFERENCE_VALUES).
    values: Floats = field(repr=False)
    missing_rate: float


@dataclass(frozen=True)
class CategoryReference:
    counts: dict[str, int]
    missing_rate: float


@dataclass(frozen=True)
class Reference:
    """The champion's training rows, as monitoring compares with them."""

    rows: int
    features: dict[str, NumericReference | CategoryReference]
    score_edges: Floats = field(repr=False)
    score_counts: Floats = field(repr=False)
    estimated: EstimatedPerformance


def _numbers(column: pl.Series) -> Floats:
    out: Floats = column.drop_nulls().cast(pl.Float64).to_numpy()
    return out[np.isfinite(out)]


def _levels(column: pl.Series) -> dict[str, int]:
    counts = column.drop_nulls().cast(pl.String).value_counts()
    name = counts.columns[0]
    return {str(k): int(n) for k, n in zip(counts[name], counts["count"], strict=True)}


def _missing_rate(column: pl.Series) -> float:
    return float(column.null_count() / column.len()) if column.len() else 0.0


def numeric(settings: Settings, name: str) -> bool:
    return settings.columns[name].type in ("int", "float")


def estimated_performance(scores: Floats, threshold: float) -> EstimatedPerformance:
    """What calibrated probabilities expect before outcomes arrive: the positive rate (their
    mean) and the accuracy at ``threshold`` (p where p >= threshold, else 1 - p)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return EstimatedPerformance(cases=0, positive_rate=None, accuracy=None)
    chosen = np.where(s >= threshold, s, 1.0 - s)
    return EstimatedPerformance(
        cases=int(s.size),
        positive_rate=round(float(s.mean()), 6),
        accuracy=round(float(chosen.mean()), 6),
    )


def reference(train: pl.DataFrame, train_scores: Floats, settings: Settings) -> Reference:
    """The reference of ``train`` (the champion's training rows, as the snapshot holds
    them) and the champion's scores on them."""
    if train.height == 0:
        raise InputError("the champion's training snapshot holds no training rows")
    features: dict[str, NumericReference | CategoryReference] = {}
    for name in settings.fields.features:
        if name not in train.columns:
            raise InputError(f"the training snapshot lacks the feature {name!r}")
        column = train[name]
        if numeric(settings, name):
            values = np.sort(_numbers(column))
            edges = quantile_edges(values)
            step = max(1, math.ceil(values.size / MAX_REFERENCE_VALUES))
            features[name] = NumericReference(
                edges=edges,
                counts=binned(values, edges),
                values=values[::step],
                missing_rate=_missing_rate(column),
            )
        else:
            features[name] = CategoryReference(_levels(column), _missing_rate(column))
    s = np.asarray(train_scores, dtype=np.float64)
    edges = quantile_edges(s)
    return Reference(
        rows=train.height,
        features=features,
        score_edges=edges,
        score_counts=binned(s, edges),
        estimated=estimated_performance(s, settings.review.decision_threshold),
    )


# ---------------------------------------------------------------------------- compare
def _numeric_statistics(
    name: str, ref: NumericReference, live: Floats, missing: float
) -> FeatureStatistics:
    if live.size == 0 or ref.values.size == 0:
        return FeatureStatistics(
            feature=name,
            kind="number",
            test="ks",
            psi=0.0,
            statistic=0.0,
            p_value=1.0,
            missing_rate_training=round(ref.missing_rate, 6),
            missing_rate=round(missing, 6),
        )
    d, p = ks_sorted(ref.values, live)
    return FeatureStatistics(
        feature=name,
        kind="number",
        test="ks",
        psi=round(psi(ref.counts, binned_sorted(live, ref.edges)), 6),
        statistic=round(d, 6),
        p_value=p,
        missing_rate_training=round(ref.missing_rate, 6),
        missing_rate=round(missing, 6),
    )


def _category_statistics(
    name: str, ref: CategoryReference, live: dict[str, int], missing: float
) -> FeatureStatistics:
    # The training levels, then one bin for every level training never had.
    known = sorted(ref.counts)
    unseen = sum(n for level, n in live.items() if level not in ref.counts)
    expected = np.array([ref.counts[k] for k in known] + [0], dtype=np.float64)
    actual = np.array([live.get(k, 0) for k in known] + [unseen], dtype=np.float64)
    statistic, p_value = 0.0, 1.0
    table = np.vstack([expected, actual])
    table = table[:, table.sum(axis=0) > 0]
    if actual.sum() > 0 and expected.sum() > 0 and table.shape[1] > 1:
        result = stats.chi2_contingency(table, correction=False)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return FeatureStatistics(
        feature=name,
        kind="category",
        test="chi-square",
        psi=round(psi(expected, actual), 6),
        statistic=round(statistic, 6),
        p_value=p_value,
        missing_rate_training=round(ref.missing_rate, 6),
        missing_rate=round(missing, 6),
        unseen_share=round(unseen / actual.sum(), 6) if actual.sum() else 0.0,
    )


def _prepare(live: pl.DataFrame, ref: Reference) -> dict[str, Floats | dict[str, int]]:
    """Per feature, what its statistics need of the window, computed by polars on every
    core at once: the sorted finite values of a number, the level counts of a category."""
    frame = live.lazy()
    queries = []
    for name, feature_ref in ref.features.items():
        col = pl.col(name)
        if isinstance(feature_ref, NumericReference):
            x = col.cast(pl.Float64).drop_nulls()
            queries.append(frame.select(x.filter(x.is_finite()).sort().alias("value")))
        else:
            counts = col.cast(pl.String).drop_nulls().value_counts(name="n")
            queries.append(frame.select(counts.alias("counts")).unnest("counts"))
    out: dict[str, Floats | dict[str, int]] = {}
    for (name, feature_ref), result in zip(
        ref.features.items(), pl.collect_all(queries), strict=True
    ):
        if isinstance(feature_ref, NumericReference):
            out[name] = result["value"].to_numpy()
        else:
            out[name] = {str(k): int(n) for k, n in zip(result[name], result["n"], strict=True)}
    return out


def compare(
    ref: Reference,
    live: pl.DataFrame,
    live_scores: Floats,
    settings: Settings,
    *,
    model_version: str,
    model_sha256: str,
    window_days: int,
) -> MonitoringStatistics:
    """The statistics of the window's cases ``live`` (the features as stored) and the
    champion's scores of them, against the training reference ``ref``."""
    scores = np.asarray(live_scores, dtype=np.float64)
    if scores.size != live.height:
        raise InputError(f"{live.height} cases but {scores.size} scores")
    lacking = [name for name in ref.features if name not in live.columns]
    if lacking:
        raise InputError(f"the window's cases lack the features {lacking}")
    prepared = _prepare(live, ref)
    features = []
    for name, feature_ref in ref.features.items():
        missing = _missing_rate(live[name])
        values = prepared[name]
        if isinstance(feature_ref, NumericReference):
            assert isinstance(values, np.ndarray)
            features.append(_numeric_statistics(name, feature_ref, values, missing))
        else:
            assert isinstance(values, dict)
            features.append(_category_statistics(name, feature_ref, values, missing))
    score_psi = psi(ref.score_counts, binned(scores, ref.score_edges)) if scores.size else 0.0
    return MonitoringStatistics(
        model_version=model_version,
        model_sha256=model_sha256,
        window_days=window_days,
        cases=live.height,
        training_rows=ref.rows,
        features=features,
        score_psi=round(score_psi, 6),
        estimated=estimated_performance(scores, settings.review.decision_threshold),
        estimated_training=ref.estimated,
    )


# ---------------------------------------------------------------------------- display
def feature_table(statistics: MonitoringStatistics) -> pl.DataFrame:
    """One row per feature: PSI, the test and its statistic and p-value, missing rates."""
    return pl.DataFrame(
        [
            {
                "feature": f.feature,
                "psi": f.psi,
                "test": f.test,
                "statistic": f.statistic,
                "p value": f.p_value,
                "missing (training)": f.missing_rate_training,
                "missing (window)": f.missing_rate,
                "unseen levels (share)": f.unseen_share,
            }
            for f in statistics.features
        ],
        schema={
            "feature": pl.String,
            "psi": pl.Float64,
            "test": pl.String,
            "statistic": pl.Float64,
            "p value": pl.Float64,
            "missing (training)": pl.Float64,
            "missing (window)": pl.Float64,
            "unseen levels (share)": pl.Float64,
        },
    )


def facts_table(facts: Sequence[tuple[str, Any]] | Mapping[str, Any]) -> pl.DataFrame:
    """Items and values as text, for a notebook's output."""
    items = list(facts.items()) if isinstance(facts, Mapping) else list(facts)
    return pl.DataFrame(
        [(str(k), "—" if v is None else str(v)) for k, v in items],
        schema=["item", "value"],
        orient="row",
    )
