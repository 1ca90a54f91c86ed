"""Subgroup metrics of the protected attributes: pure, typed functions on numpy / polars.

- ``subgroup_metrics``: per group of each protected attribute, the selection rate, TPR,
  FPR, AUC and accuracy, with numeric attributes bucketed (tertiles of the data by default,
  or breakpoints passed in). Tables show group labels and counts only; a group smaller than
  ``min_group_size`` is listed with its count, but its metrics are withheld (a rate over a
  handful of people discloses their outcomes) and it takes no part in the gaps. For a
  free-text attribute (no configured levels) small groups are not even named: they are
  pooled under one label, since their labels are values that people gave.
- ``max_subgroup_gap``: per attribute, max - min of a metric over the groups large enough
  to compare (positive_rate: demographic-parity difference; tpr: equal-opportunity
  difference).

No column of a particular data set is named here: ``protected_groups`` reads the protected
attributes by ``settings.fields``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.evaluate import (
    ArrayLike,
    Floats,
    as_floats,
    auc_of,
    check_threshold,
    labels_and_scores,
)
from hilt.pipelines.store.gate import SUBGROUP_METRICS

#: Groups with fewer cases are listed with their count only and left out of the gaps.
MIN_GROUP_SIZE = 20
#: Joins the ends of a bucket label, as in "25\u201334" (an en dash).
RANGE_DASH = "\u2013"
#: The group label of rows whose protected attribute is missing.
MISSING_GROUP = "(missing)"
#: Free-text attributes (no configured levels): the small groups pooled under one label,
#: since a group's label is then a value someone gave, and a small group points at them.
POOLED_GROUP = "(small groups, pooled)"
#: The per-group metrics of ``subgroup_metrics`` (each may be null).
SUBGROUP_SCHEMA: dict[str, pl.DataType] = {
    "attribute": pl.String(),
    "group": pl.String(),
    "n": pl.Int64(),
    "included": pl.Boolean(),
    **{m: pl.Float64() for m in SUBGROUP_METRICS},
}


def _is_integral(values: Floats) -> bool:
    return bool(np.all(np.equal(np.floor(values), values)))


def _fmt(x: float) -> str:
    return f"{x:g}"


def tertiles(values: pl.Series) -> list[float]:
    """Two breakpoints splitting the non-missing values into thirds (rounded to integers
    when every value is an integer; duplicates removed)."""
    x = as_floats(values, "values")
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
    x = as_floats(values, "values")
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
    categories = [*labels, MISSING_GROUP]
    codes = np.where(np.isnan(x), len(labels), index)
    return pl.Series(
        values.name, np.asarray(categories, dtype=object)[codes], dtype=pl.Enum(categories)
    )


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


def _group_codes(
    values: pl.Series, breakpoints: Sequence[float] | None
) -> tuple[npt.NDArray[np.int64], list[str]]:
    """(per row, the index of its group in the list; the groups in reporting order).

    Numeric attributes are bucketed (``bucket_numeric``), level attributes keep their
    configured order, free text is sorted; missing values are ``MISSING_GROUP``, last.
    Vectorised: a group is an integer code, never a Python object per row."""
    if values.dtype.is_numeric() and values.dtype != pl.Boolean:
        values = bucket_numeric(values, breakpoints)
    elif breakpoints is not None:
        raise InputError(f"breakpoints given for {values.name!r}, which is not numeric")
    text = values.cast(pl.String).fill_null(MISSING_GROUP)
    if isinstance(values.dtype, pl.Enum):
        order = [str(c) for c in values.dtype.categories.to_list()]
    else:
        order = sorted(str(v) for v in text.unique().to_list())
    order = list(dict.fromkeys([*(g for g in order if g != MISSING_GROUP), MISSING_GROUP]))
    codes = text.replace_strict(order, list(range(len(order))), return_dtype=pl.Int64)
    return codes.to_numpy(), order


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
    y, s = labels_and_scores(y_true, scores)
    t = check_threshold(threshold)
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
        codes, names = _group_codes(values.alias(attribute), breakpoints.get(attribute))
        counts = np.bincount(codes, minlength=len(names))
        present = [(i, g) for i, g in enumerate(names) if counts[i]]
        free_text = not values.dtype.is_numeric() and not isinstance(values.dtype, pl.Enum)
        if free_text:
            small = [i for i, g in present if g != MISSING_GROUP and counts[i] < min_group_size]
            if small:
                pooled = len(names)
                codes = np.where(np.isin(codes, small), pooled, codes)
                present = [(i, g) for i, g in present if i not in small]
                present.append((pooled, POOLED_GROUP))
        for code, group in present:
            member = codes == code
            n = int(member.sum())
            row: dict[str, Any] = {"attribute": attribute, "group": group, "n": n}
            row["included"] = n >= min_group_size and group != POOLED_GROUP
            row.update(dict.fromkeys(SUBGROUP_METRICS))
            if row["included"]:
                gp, gy, gs = pred[member], pos[member], s[member]
                n_pos = int(gy.sum())
                n_neg = n - n_pos
                auc = auc_of(gy.astype(np.float64), gs)
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
