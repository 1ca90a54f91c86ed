"""Metrics, subgroup metrics and the promotion gate: pure, typed functions on numpy / polars.

- ``metrics``: the usual binary-classification numbers of one model on one labelled set.
- ``subgroup_metrics``: the same per group of each protected attribute (selection rate,
  TPR, FPR, AUC, accuracy), with numeric attributes bucketed (tertiles of the data by
  default, or breakpoints passed in). Tables show group labels and counts only; a group
  smaller than ``min_group_size`` is listed with its count, but its metrics are withheld
  (a rate over a handful of people discloses their outcomes) and it takes no part in the
  gaps. For a free-text attribute (no configured levels) small groups are not even named:
  they are pooled under one label, since their labels are values that people gave.
- ``max_subgroup_gap``: per attribute, max - min of a metric over the groups large enough
  to compare (positive_rate: demographic-parity difference; tpr: equal-opportunity
  difference).
- ``gate``: the promotion gate (metric floor, maximum subgroup gap per protected attribute,
  not worse than the champion beyond a tolerance), with one plain-language line per check
  for an auditor.

No column of a particular data set is named here: the caller passes the label, the scores
and the protected attributes (``protected_groups`` reads them by ``settings.fields``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError

if TYPE_CHECKING:
    from hilt.pipelines.loop.model import TrainedModel

#: Labels, scores or a protected attribute: a polars Series, a numpy array or a sequence.
ArrayLike = pl.Series | npt.NDArray[Any] | Sequence[float]
Floats = npt.NDArray[np.float64]

#: Groups with fewer cases are listed with their count only and left out of the gaps.
MIN_GROUP_SIZE = 20
#: Joins the ends of a bucket label, as in "25\u201334" (an en dash).
RANGE_DASH = "\u2013"
#: The group label of rows whose protected attribute is missing.
MISSING_GROUP = "(missing)"
#: Free-text attributes (no configured levels): the small groups pooled under one label,
#: since a group's label is then a value someone gave, and a small group points at them.
POOLED_GROUP = "(small groups, pooled)"
#: The keys of ``metrics``, in this order.
METRIC_NAMES: tuple[str, ...] = (
    "n",
    "positive_rate",
    "auc",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "brier",
    "log_loss",
)
#: Metrics a gate may use; for these lower is better, for the others higher is better.
LOWER_IS_BETTER = frozenset({"brier", "log_loss"})
GATE_METRICS = frozenset({"auc", "accuracy", "precision", "recall", "f1", "brier", "log_loss"})
#: The per-group metrics of ``subgroup_metrics`` (each may be null).
SUBGROUP_METRICS: tuple[str, ...] = ("positive_rate", "tpr", "fpr", "auc", "accuracy")
SUBGROUP_SCHEMA: dict[str, pl.DataType] = {
    "attribute": pl.String(),
    "group": pl.String(),
    "n": pl.Int64(),
    "included": pl.Boolean(),
    **{m: pl.Float64() for m in SUBGROUP_METRICS},
}


# ---------------------------------------------------------------------------- inputs
def _floats(values: ArrayLike, what: str) -> Floats:
    if isinstance(values, pl.Series):
        if values.dtype == pl.Boolean:
            values = values.cast(pl.Float64)
        elif not values.dtype.is_numeric():
            raise InputError(f"{what} must be numeric, not {values.dtype}")
        arr = values.cast(pl.Float64).to_numpy()
    else:
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{what} must be numeric") from None
    if arr.ndim != 1:
        raise InputError(f"{what} must be one-dimensional, not {arr.ndim}-dimensional")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _labels_and_scores(y_true: ArrayLike, scores: ArrayLike) -> tuple[Floats, Floats]:
    """Validated (y, s): y in {0, 1}, s in [0, 1], same length, no missing values."""
    y = _floats(y_true, "y_true")
    s = _floats(scores, "scores")
    if y.shape != s.shape:
        raise InputError(f"y_true has {y.size} values but scores has {s.size}")
    if y.size == 0:
        raise InputError("no rows to evaluate")
    bad_y = ~np.isin(y, (0.0, 1.0))
    if bad_y.any():
        raise InputError(f"y_true must be 0 or 1; {int(bad_y.sum())} values are not")
    bad_s = ~(np.isfinite(s) & (s >= 0.0) & (s <= 1.0))
    if bad_s.any():
        raise InputError(f"scores must be probabilities in [0, 1]; {int(bad_s.sum())} are not")
    return y, s


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not (0.0 < t < 1.0):
        raise InputError("threshold must be in (0, 1)")
    return t


# ---------------------------------------------------------------------------- metrics
def _average_ranks(x: Floats) -> Floats:
    """1-based ranks of ``x``; tied values share the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    sx = x[order]
    edges = np.flatnonzero(np.r_[True, sx[1:] != sx[:-1], True])
    mean_rank = (edges[:-1] + 1 + edges[1:]) / 2.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, np.diff(edges))
    return ranks


def _auc(y: Floats, s: Floats) -> float:
    """Rank-based AUC (Mann-Whitney U / (n_pos · n_neg)); a tie counts one half.
    NaN when only one class is present."""
    pos = y == 1.0
    n_pos = int(pos.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(s)
    u = float(ranks[pos].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def _ratio(num: float, den: float) -> float:
    """num / den, and 0.0 when den is 0 (scikit-learn's zero_division default)."""
    return num / den if den else 0.0


def metrics(y_true: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> dict[str, float]:
    """The metrics of scores against 0/1 labels; a case is predicted positive when
    ``score >= threshold`` (as ``hilt.pipelines.loop.model.predicted_labels`` does).

    Keys (``METRIC_NAMES``): n; positive_rate (share predicted positive); auc (rank-based,
    ties count one half; NaN with one class only); accuracy, precision, recall, f1 at the
    threshold (0.0 where undefined, as scikit-learn does); brier; log_loss (scores clipped
    to [eps, 1 - eps]).
    """
    y, s = _labels_and_scores(y_true, scores)
    t = _check_threshold(threshold)
    pred = s >= t
    pos = y == 1.0
    tp = float(np.sum(pred & pos))
    fp = float(np.sum(pred & ~pos))
    fn = float(np.sum(~pred & pos))
    n = float(y.size)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    eps = float(np.finfo(np.float64).eps)
    p = np.clip(s, eps, 1.0 - eps)
    log_loss = -float(np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))
    return {
        "n": n,
        "positive_rate": float(pred.mean()),
        "auc": _auc(y, s),
        "accuracy": float(np.mean(pred == pos)),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "brier": float(np.mean((s - y) ** 2)),
        "log_loss": log_loss,
    }


def roc_points(y_true: ArrayLike, scores: ArrayLike) -> tuple[Floats, Floats]:
    """(fpr, tpr) of the ROC curve, one point per distinct score plus (0, 0).

    InputError when only one class is present (the curve is undefined)."""
    y, s = _labels_and_scores(y_true, scores)
    n_pos = float(y.sum())
    n_neg = float(y.size) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise InputError("the ROC curve needs both classes in y_true")
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last_of_tie = np.r_[ss[1:] != ss[:-1], True]
    tps = np.cumsum(ys)[last_of_tie]
    fps = np.cumsum(1.0 - ys)[last_of_tie]
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr


def calibration_bins(y_true: ArrayLike, scores: ArrayLike, bins: int = 10) -> pl.DataFrame:
    """Reliability table: equal-width score bins over [0, 1] with n, mean score and
    observed positive rate; empty bins are left out."""
    y, s = _labels_and_scores(y_true, scores)
    if bins < 1:
        raise InputError("bins must be at least 1")
    index = np.minimum((s * bins).astype(np.int64), bins - 1)
    rows: list[dict[str, Any]] = []
    for b in range(bins):
        in_bin = index == b
        count = int(in_bin.sum())
        if count:
            rows.append(
                {
                    "bin_low": b / bins,
                    "bin_high": (b + 1) / bins,
                    "n": count,
                    "mean_score": float(s[in_bin].mean()),
                    "observed_rate": float(y[in_bin].mean()),
                }
            )
    schema = {
        "bin_low": pl.Float64,
        "bin_high": pl.Float64,
        "n": pl.Int64,
        "mean_score": pl.Float64,
        "observed_rate": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


# ---------------------------------------------------------------------------- subgroups
def _is_integral(values: Floats) -> bool:
    return bool(np.all(np.equal(np.floor(values), values)))


def _fmt(x: float) -> str:
    return f"{x:g}"


def tertiles(values: pl.Series) -> list[float]:
    """Two breakpoints splitting the non-missing values into thirds (rounded to integers
    when every value is an integer; duplicates removed)."""
    x = _floats(values, "values")
    x = x[~np.isnan(x)]
    if x.size == 0:
        return []
    q = np.quantile(x, [1 / 3, 2 / 3])
    if _is_integral(x):
        q = np.round(q)
    return sorted({float(v) for v in q})


def bucket_numeric(values: pl.Series, breakpoints: Sequence[float] | None = None) -> pl.Series:
    """Bucket labels of a numeric attribute; ``breakpoints`` (ascending) default to the
    tertiles of the data.

    Breakpoints b1 < b2 < … give the buckets x < b1, b1 ≤ x < b2, …, x ≥ bk. With integer
    values and breakpoints [25, 35, 50] the labels read "<25", "25-34", "35-49", "50+" (the
    dash is ``RANGE_DASH``, an en dash); otherwise e.g. "<2.5", "2.5-<4", "≥4". Missing
    values get ``MISSING_GROUP``. The result is a pl.Enum whose
    categories are the bucket labels in ascending order.
    """
    x = _floats(values, "values")
    points = list(tertiles(values) if breakpoints is None else breakpoints)
    bp = np.asarray(points, dtype=np.float64)
    if bp.size and (not np.all(np.isfinite(bp)) or np.any(np.diff(bp) <= 0)):
        raise InputError("breakpoints must be finite and strictly ascending")
    valid = x[~np.isnan(x)]
    integral = _is_integral(valid) and _is_integral(bp)
    labels: list[str] = []
    if bp.size == 0:
        labels = ["all"]
    else:
        labels.append(f"<{_fmt(bp[0])}")
        for lo, hi in itertools.pairwise(bp):
            if not integral:
                labels.append(f"{_fmt(lo)}{RANGE_DASH}<{_fmt(hi)}")
            elif hi - lo > 1:
                labels.append(f"{_fmt(lo)}{RANGE_DASH}{_fmt(hi - 1)}")
            else:
                labels.append(_fmt(lo))
        labels.append(f"{_fmt(bp[-1])}+" if integral else f"≥{_fmt(bp[-1])}")
    index = np.searchsorted(bp, np.nan_to_num(x), side="right")
    out = [
        MISSING_GROUP if math.isnan(v) else labels[int(i)] for v, i in zip(x, index, strict=True)
    ]
    return pl.Series(values.name, out, dtype=pl.Enum([*labels, MISSING_GROUP]))


def protected_groups(frame: pl.DataFrame, settings: Settings) -> dict[str, pl.Series]:
    """The protected attributes (``settings.fields.protected``) of ``frame``, typed for
    ``subgroup_metrics``: int / float columns as Float64 (to be bucketed), the others as
    text (category levels in the configured order)."""
    out: dict[str, pl.Series] = {}
    missing = [n for n in settings.fields.protected if n not in frame.columns]
    if missing:
        raise InputError(f"the frame lacks protected attributes {missing}")
    for name in settings.fields.protected:
        col = settings.columns[name]
        s = frame[name]
        if col.type in ("int", "float"):
            x = (
                s.cast(pl.Float64)
                if s.dtype.is_numeric()
                else s.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
            )
            if (x.is_null() & s.is_not_null()).any():
                raise InputError(f"protected attribute {name!r}: some values are not numbers")
            out[name] = x
        elif col.type == "category" and col.levels:
            text = s.cast(pl.String)
            if s.dtype.is_float():
                text = text.str.replace(r"\.0$", "")
            if not text.is_in(col.levels).fill_null(True).all():
                raise InputError(f"protected attribute {name!r}: a level is not configured")
            out[name] = text.cast(pl.Enum(col.levels))
        else:
            out[name] = s.cast(pl.String)
    return out


def _group_labels(
    values: pl.Series, breakpoints: Sequence[float] | None
) -> tuple[list[str], list[str]]:
    """(label per row, the groups in reporting order)."""
    if values.dtype.is_numeric() and values.dtype != pl.Boolean:
        buckets = bucket_numeric(values, breakpoints)
        labels = buckets.cast(pl.String).to_list()
        assert isinstance(buckets.dtype, pl.Enum)
        order = [str(c) for c in buckets.dtype.categories.to_list()]
    else:
        if breakpoints is not None:
            raise InputError(f"breakpoints given for {values.name!r}, which is not numeric")
        text = values.cast(pl.String)
        labels = [MISSING_GROUP if v is None else v for v in text.to_list()]
        if isinstance(values.dtype, pl.Enum):
            order = [str(c) for c in values.dtype.categories.to_list()]
        else:
            order = sorted({v for v in labels if v != MISSING_GROUP})
        order.append(MISSING_GROUP)
    present = set(labels)
    return labels, [g for g in order if g in present]


def subgroup_metrics(
    y_true: ArrayLike,
    scores: ArrayLike,
    threshold: float,
    groups: Mapping[str, pl.Series],
    min_group_size: int = MIN_GROUP_SIZE,
    breakpoints: Mapping[str, Sequence[float]] | None = None,
) -> pl.DataFrame:
    """Per protected attribute and group: n, included, positive_rate (selection rate), tpr,
    fpr, auc (null with one class only) and accuracy at ``threshold``.

    ``groups`` maps each attribute's name to its values, row-aligned with ``y_true``.
    Numeric attributes are bucketed (``breakpoints[name]``, default: tertiles of the data;
    see ``bucket_numeric``); other attributes group by value. Groups with fewer than
    ``min_group_size`` rows have ``included`` false and null metrics: they are listed with
    their count only and take no part in ``max_subgroup_gap``. One row per (attribute,
    group), attributes in the given order, groups in bucket / level order; no row-level
    values. Columns: ``SUBGROUP_SCHEMA``.
    """
    y, s = _labels_and_scores(y_true, scores)
    t = _check_threshold(threshold)
    if min_group_size < 1:
        raise InputError("min_group_size must be at least 1")
    breakpoints = breakpoints or {}
    unknown = sorted(set(breakpoints) - set(groups))
    if unknown:
        raise InputError(f"breakpoints name attributes that are not among the groups: {unknown}")
    pred = s >= t
    pos = y == 1.0
    rows: list[dict[str, Any]] = []
    for attribute, values in groups.items():
        if values.len() != y.size:
            raise InputError(
                f"protected attribute {attribute!r} has {values.len()} values "
                f"but there are {y.size} labels"
            )
        labels, order = _group_labels(values.alias(attribute), breakpoints.get(attribute))
        label_array = np.asarray(labels, dtype=object)
        free_text = not values.dtype.is_numeric() and not isinstance(values.dtype, pl.Enum)
        if free_text:
            small = [
                g for g in order if g != MISSING_GROUP and (label_array == g).sum() < min_group_size
            ]
            if small:
                label_array[np.isin(label_array, small)] = POOLED_GROUP
                order = [g for g in order if g not in small] + [POOLED_GROUP]
        for group in order:
            member = label_array == group
            n = int(member.sum())
            row: dict[str, Any] = {"attribute": attribute, "group": group, "n": n}
            row["included"] = n >= min_group_size and group != POOLED_GROUP
            row.update(dict.fromkeys(SUBGROUP_METRICS))
            if row["included"]:
                gp, gy, gs = pred[member], pos[member], s[member]
                n_pos = int(gy.sum())
                n_neg = n - n_pos
                auc = _auc(gy.astype(np.float64), gs)
                row["positive_rate"] = float(gp.mean())
                row["tpr"] = float(np.sum(gp & gy)) / n_pos if n_pos else None
                row["fpr"] = float(np.sum(gp & ~gy)) / n_neg if n_neg else None
                row["auc"] = None if math.isnan(auc) else auc
                row["accuracy"] = float(np.mean(gp == gy))
            rows.append(row)
    return pl.DataFrame(rows, schema=SUBGROUP_SCHEMA, orient="row")


def max_subgroup_gap(table: pl.DataFrame, metric: str = "positive_rate") -> dict[str, float]:
    """Per attribute of a ``subgroup_metrics`` table: max - min of ``metric`` over the
    included groups where it is defined. NaN when fewer than two groups can be compared.

    positive_rate gives the demographic-parity difference, tpr the equal-opportunity
    difference.
    """
    if metric not in SUBGROUP_METRICS:
        raise InputError(f"metric must be one of {list(SUBGROUP_METRICS)}, not {metric!r}")
    missing = [c for c in ("attribute", "included", metric) if c not in table.columns]
    if missing:
        raise InputError(f"not a subgroup_metrics table: it lacks {missing}")
    out: dict[str, float] = {}
    for attribute in table["attribute"].unique(maintain_order=True).to_list():
        values = table.filter(
            (pl.col("attribute") == attribute) & pl.col("included") & pl.col(metric).is_not_null()
        )[metric].to_list()
        out[str(attribute)] = float(max(values) - min(values)) if len(values) >= 2 else math.nan
    return out


# ---------------------------------------------------------------------------- importance
def feature_importance(model: TrainedModel) -> dict[str, float]:
    """Total gain of each feature over all splits of the model's trees (features that are
    never split on: 0.0), largest first, ties by name."""
    raw = model.booster.get_score(importance_type="total_gain")
    gain: dict[str, float] = dict.fromkeys(model.features, 0.0)
    for name, value in raw.items():
        gain[name] = float(sum(value) if isinstance(value, list) else value)
    return dict(sorted(gain.items(), key=lambda kv: (-kv[1], kv[0])))


# ---------------------------------------------------------------------------- the gate
class GateCheck(NamedTuple):
    """One check of the gate: its name, outcome, measured value, limit and a sentence."""

    name: str
    passed: bool
    value: float | None
    limit: float | None
    explanation: str


@dataclass(frozen=True)
class GateConfig:
    """What a challenger must meet to be offered for promotion.

    Invalid values raise InputError at construction.
    """

    #: The model metric of the floor and the champion comparison (a key of ``metrics``).
    metric: str = "auc"
    #: The challenger's metric must be at least this (at most, for brier and log_loss).
    floor: float = 0.65
    #: Largest allowed gap of ``gap_metric`` between groups, per protected attribute.
    max_subgroup_gap: float = 0.2
    #: The subgroup metric whose gap is bounded (positive_rate: demographic parity).
    gap_metric: str = "positive_rate"
    #: How much worse than the champion's metric the challenger may be.
    tolerance: float = 0.02
    #: Protected attributes that must have a measured gap (e.g. settings.fields.protected).
    required_attributes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.metric not in GATE_METRICS:
            problems.append(f"metric must be one of {sorted(GATE_METRICS)}")
        if self.gap_metric not in SUBGROUP_METRICS:
            problems.append(f"gap_metric must be one of {list(SUBGROUP_METRICS)}")
        for name in ("floor", "max_subgroup_gap", "tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{name} must be a number")
            elif not math.isfinite(value):
                problems.append(f"{name} must be finite")
            else:
                object.__setattr__(self, name, float(value))
        if not problems:
            if not 0.0 <= self.max_subgroup_gap <= 1.0:
                problems.append("max_subgroup_gap must be in [0, 1]")
            if self.tolerance < 0.0:
                problems.append("tolerance must be >= 0")
        object.__setattr__(self, "required_attributes", tuple(self.required_attributes))
        if problems:
            raise InputError("gate configuration: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> GateConfig:
        """From a mapping (papermill parameters); unknown names are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"gate configuration: unknown {unknown}; known are {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_settings(cls, settings: Settings) -> GateConfig:
        """The gate of hilt.toml (``[gate]``), requiring a gap for every protected attribute
        (``settings.fields.protected``)."""
        g = settings.gate
        return cls(
            metric=g.metric,
            floor=g.floor,
            max_subgroup_gap=g.max_subgroup_gap,
            tolerance=g.tolerance,
            required_attributes=tuple(settings.fields.protected),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["required_attributes"] = list(self.required_attributes)
        return d


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: passed only if every check passed."""

    passed: bool
    checks: list[GateCheck]

    def summary(self) -> str:
        """The verdict and one line per check, for an executed notebook or an audit note."""
        head = "PASSED: every check passed" if self.passed else "REJECTED: a check failed"
        failed = [c.name for c in self.checks if not c.passed]
        if failed:
            head += f" ({', '.join(failed)})"
        lines = [f"gate {head}"]
        lines += [
            f"[{'pass' if c.passed else 'FAIL'}] {c.name}: {c.explanation}" for c in self.checks
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None)."""

        def clean(v: float | None) -> float | None:
            return None if v is None or math.isnan(v) else v

        return {
            "passed": self.passed,
            "checks": [
                {
                    "name": c.name,
                    "passed": c.passed,
                    "value": clean(c.value),
                    "limit": clean(c.limit),
                    "explanation": c.explanation,
                }
                for c in self.checks
            ],
        }


def _num(x: float) -> str:
    return f"{x:.4f}"


def _metric_value(m: Mapping[str, float], name: str) -> float | None:
    v = m.get(name)
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def gate(
    challenger_metrics: Mapping[str, float],
    challenger_gaps: Mapping[str, float],
    champion_metrics: Mapping[str, float] | None,
    config: GateConfig | None = None,
) -> GateResult:
    """Check a challenger for promotion; deterministic, one explained check per rule.

    - floor: ``config.metric`` at least ``config.floor`` (at most, for brier / log_loss);
    - one check per attribute of ``challenger_gaps`` (attribute → gap of
      ``config.gap_metric``, from ``max_subgroup_gap``), in name order: gap ≤
      ``config.max_subgroup_gap``; a gap that could not be measured (NaN) fails, and so
      does a ``config.required_attributes`` entry without a gap;
    - champion: not worse than ``champion_metrics[config.metric]`` by more than
      ``config.tolerance``; skipped (passed, explained) when there is no champion. Both
      sets of metrics must come from the same holdout.
    """
    config = config or GateConfig()
    m = config.metric
    lower = m in LOWER_IS_BETTER
    checks: list[GateCheck] = []

    value = _metric_value(challenger_metrics, m)
    if value is None:
        checks.append(
            GateCheck("floor", False, None, config.floor, f"the challenger has no {m} value")
        )
    else:
        ok = value <= config.floor if lower else value >= config.floor
        rel = ("≤" if ok else ">") if lower else ("≥" if ok else "<")
        kind = "ceiling" if lower else "floor"
        checks.append(
            GateCheck(
                "floor",
                ok,
                value,
                config.floor,
                f"{m} {_num(value)} {rel} {kind} {_num(config.floor)}",
            )
        )

    gm = config.gap_metric
    missing = [a for a in config.required_attributes if a not in challenger_gaps]
    for attribute in sorted(set(challenger_gaps) | set(missing)):
        name = f"gap:{attribute}"
        limit = config.max_subgroup_gap
        if attribute in missing:
            checks.append(
                GateCheck(name, False, None, limit, f"no {gm} gap was measured for {attribute}")
            )
            continue
        gap = float(challenger_gaps[attribute])
        if math.isnan(gap):
            checks.append(
                GateCheck(
                    name,
                    False,
                    gap,
                    limit,
                    f"the {gm} gap across {attribute} groups could not be measured "
                    "(fewer than two groups large enough to compare)",
                )
            )
            continue
        ok = gap <= limit
        checks.append(
            GateCheck(
                name,
                ok,
                gap,
                limit,
                f"largest difference in {gm} between {attribute} groups {_num(gap)} "
                f"{'≤' if ok else '>'} maximum {_num(limit)}",
            )
        )

    if champion_metrics is None:
        checks.append(
            GateCheck(
                "champion",
                True,
                value,
                None,
                "no champion yet: comparison skipped",
            )
        )
    else:
        champ = _metric_value(champion_metrics, m)
        if champ is None or value is None:
            whose = "champion" if champ is None else "challenger"
            checks.append(
                GateCheck(
                    "champion", False, value, None, f"the {whose} has no {m} value to compare"
                )
            )
        else:
            limit = champ + config.tolerance if lower else champ - config.tolerance
            ok = value <= limit if lower else value >= limit
            worse = value - champ if lower else champ - value
            if worse > 0:
                how = f"worse by {_num(worse)}, tolerance {_num(config.tolerance)}"
            elif worse < 0:
                how = f"better by {_num(-worse)}"
            else:
                how = "equal"
            checks.append(
                GateCheck(
                    "champion",
                    ok,
                    value,
                    limit,
                    f"{m} {_num(value)} vs champion {_num(champ)}: {how}",
                )
            )
    return GateResult(passed=all(c.passed for c in checks), checks=checks)
