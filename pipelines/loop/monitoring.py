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
from typing import Any, Literal

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


@dataclass(frozen=True)
class Distinct:
    """A sample as its distinct values, ascending, and how many of its values are at or
    below each (a running count): what the KS test and the PSI bins need of the window's
    values, counted by a hash aggregation instead of sorting every value."""

    values: Floats = field(repr=False)
    at_or_below: np.ndarray[Any, np.dtype[np.int64]] = field(repr=False)

    @property
    def size(self) -> int:
        return int(self.at_or_below[-1]) if self.at_or_below.size else 0

    def below(self, points: Floats, side: Literal["left", "right"]) -> Any:
        """How many values are below each of ``points`` (``side="left"``), or at or below
        (``"right"``)."""
        index = np.searchsorted(self.values, points, side=side)
        return np.concatenate(([0], self.at_or_below))[index]


def distinct(values: Floats) -> Distinct:
    """``Distinct`` of a sample (in numpy; the window's come from polars, ``_prepare``)."""
    unique, counts = np.unique(np.asarray(values, dtype=np.float64), return_counts=True)
    return Distinct(unique, np.cumsum(counts))


def binned_distinct(live: Distinct, edges: Floats) -> Floats:
    """``binned`` of a sample given as ``Distinct``: O(bins · log distinct). A value equal
    to an edge is in the bin above it, as in ``binned``."""
    bounds = np.concatenate(([0], live.below(edges, "left"), [live.size]))
    return np.diff(bounds).astype(np.float64)


def ks(reference: Floats, live: Distinct) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov of a sorted reference sample and the window's values:
    D, the largest gap between their empirical distribution functions (evaluated at every
    distinct value of both), and the asymptotic two-sided p-value as
    ``scipy.stats.ks_2samp(method="asymp")`` gives it (Smirnov: ``kstwo.sf(D, round(n·m /
    (n + m)))``)."""
    n1, n2 = reference.size, live.size
    gap_live = np.abs(live.at_or_below / n2 - np.searchsorted(reference, live.values, "right") / n1)
    gap_ref = np.abs(
        np.searchsorted(reference, reference, "right") / n1 - live.below(reference, "right") / n2
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


def _score_figures(scores: Floats, edges: Floats, threshold: float) -> pl.LazyFrame:
    """One row: the number of scores, their mean (the expected positive rate), the expected
    accuracy at ``threshold`` (p where p >= threshold, else 1 - p) and, per inner edge, how
    many scores are at or above it (the PSI bins; NaN above every edge, as in ``binned``)."""
    p = pl.col("p")
    return pl.LazyFrame({"p": np.asarray(scores, dtype=np.float64)}).select(
        pl.len().alias("cases"),
        p.mean().alias("positive_rate"),
        pl.when(p >= threshold).then(p).otherwise(1.0 - p).mean().alias("accuracy"),
        *[(p >= float(edge)).sum().alias(f"at_or_above_{k}") for k, edge in enumerate(edges)],
    )


def _score_bins(row: pl.DataFrame, edges: Floats) -> Floats:
    """The PSI bin counts of the scores, from the row of ``_score_figures``."""
    at_or_above = [int(row[f"at_or_above_{k}"][0]) for k in range(edges.size)]
    return -np.diff(np.array([int(row["cases"][0]), *at_or_above, 0], dtype=np.float64))


def _score_estimate(row: pl.DataFrame) -> EstimatedPerformance:
    """The estimated performance, from the row of ``_score_figures``."""
    cases = int(row["cases"][0])
    if cases == 0:
        return EstimatedPerformance(cases=0, positive_rate=None, accuracy=None)
    return EstimatedPerformance(
        cases=cases,
        positive_rate=round(float(row["positive_rate"][0]), 6),
        accuracy=round(float(row["accuracy"][0]), 6),
    )


def estimated_performance(scores: Floats, threshold: float) -> EstimatedPerformance:
    """What calibrated probabilities expect before outcomes arrive: the positive rate (their
    mean) and the accuracy at ``threshold`` (p where p >= threshold, else 1 - p)."""
    return _score_estimate(_score_figures(scores, np.empty(0), threshold).collect())


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
    name: str, ref: NumericReference, live: Distinct, missing: float
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
    d, p = ks(ref.values, live)
    return FeatureStatistics(
        feature=name,
        kind="number",
        test="ks",
        psi=round(psi(ref.counts, binned_distinct(live, ref.edges)), 6),
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


def _prepare(
    live: pl.DataFrame, ref: Reference, scores: Floats, threshold: float
) -> tuple[dict[str, Distinct | dict[str, int]], pl.DataFrame]:
    """Per feature, what its statistics need of the window, and the scores' figures
    (``_score_figures``), computed by polars on every core at once: the distinct finite
    values of a number with their running counts, the level counts of a category."""
    frame = live.lazy()
    queries = []
    for name, feature_ref in ref.features.items():
        col = pl.col(name)
        if isinstance(feature_ref, NumericReference):
            x = col.cast(pl.Float64).drop_nulls()
            counts = x.filter(x.is_finite()).value_counts(name="n")
            queries.append(
                frame.select(counts.alias("counts"))
                .unnest("counts")
                .sort(name)
                .select(pl.col(name).alias("value"), pl.col("n").cast(pl.Int64).cum_sum())
            )
        else:
            counts = col.cast(pl.String).drop_nulls().value_counts(name="n")
            queries.append(frame.select(counts.alias("counts")).unnest("counts"))
    queries.append(_score_figures(scores, ref.score_edges, threshold))
    *results, score_row = pl.collect_all(queries)
    out: dict[str, Distinct | dict[str, int]] = {}
    for (name, feature_ref), result in zip(ref.features.items(), results, strict=True):
        if isinstance(feature_ref, NumericReference):
            out[name] = Distinct(result["value"].to_numpy(), result["n"].to_numpy())
        else:
            out[name] = {str(k): int(n) for k, n in zip(result[name], result["n"], strict=True)}
    return out, score_row


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
    threshold = settings.review.decision_threshold
    prepared, score_row = _prepare(live, ref, scores, threshold)
    features = []
    for name, feature_ref in ref.features.items():
        missing = _missing_rate(live[name])
        values = prepared[name]
        if isinstance(feature_ref, NumericReference):
            assert isinstance(values, Distinct)
            features.append(_numeric_statistics(name, feature_ref, values, missing))
        else:
            assert isinstance(values, dict)
            features.append(_category_statistics(name, feature_ref, values, missing))
    score_psi = (
        psi(ref.score_counts, _score_bins(score_row, ref.score_edges)) if scores.size else 0.0
    )
    return MonitoringStatistics(
        model_version=model_version,
        model_sha256=model_sha256,
        window_days=window_days,
        cases=live.height,
        training_rows=ref.rows,
        features=features,
        score_psi=round(score_psi, 6),
        estimated=_score_estimate(score_row),
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
