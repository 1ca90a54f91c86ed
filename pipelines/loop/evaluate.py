"""How well a model scores a labelled set: pure, typed functions on numpy / polars.

- ``metrics``: the usual binary-classification numbers of one model on one labelled set;
- ``roc_points`` and ``calibration_bins``: the ROC curve and the reliability table;
- ``feature_importance``: the total gain of each feature in the model's trees.

The per-group metrics of the protected attributes are ``hilt.pipelines.loop.subgroups``; the
promotion gate that reads both is ``hilt.pipelines.store.gate`` (the store applies it). No
column of a particular data set is named here: the caller passes the labels and the scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from hilt.pipelines.errors import InputError

if TYPE_CHECKING:
    from hilt.pipelines.loop.model import TrainedModel

#: Labels, scores or a protected attribute: a polars Series, a numpy array or a sequence.
ArrayLike = pl.Series | npt.NDArray[Any] | Sequence[float]
Floats = npt.NDArray[np.float64]

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
#: Metrics for which lower is better; for the others higher is better.


# ---------------------------------------------------------------------------- inputs
def as_floats(values: ArrayLike, what: str) -> Floats:
    """``values`` as a one-dimensional float array (booleans as 0 / 1); InputError naming
    ``what`` otherwise."""
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


def labels_and_scores(y_true: ArrayLike, scores: ArrayLike) -> tuple[Floats, Floats]:
    """Validated (y, s): y in {0, 1}, s in [0, 1], same length, no missing values."""
    y = as_floats(y_true, "y_true")
    s = as_floats(scores, "scores")
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


def check_threshold(threshold: float) -> float:
    """The decision threshold as a float in (0, 1); InputError otherwise."""
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


def auc_of(y: Floats, s: Floats) -> float:
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
    y, s = labels_and_scores(y_true, scores)
    t = check_threshold(threshold)
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
        "auc": auc_of(y, s),
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
    y, s = labels_and_scores(y_true, scores)
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
    y, s = labels_and_scores(y_true, scores)
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


# ---------------------------------------------------------------------------- importance
def feature_importance(model: TrainedModel) -> dict[str, float]:
    """Total gain of each feature over all splits of the model's trees (features that are
    never split on: 0.0), largest first, ties by name."""
    raw = model.booster.get_score(importance_type="total_gain")
    gain: dict[str, float] = dict.fromkeys(model.features, 0.0)
    for name, value in raw.items():
        gain[name] = float(sum(value) if isinstance(value, list) else value)
    return dict(sorted(gain.items(), key=lambda kv: (-kv[1], kv[0])))
