"""The feature matrix: hilt.toml's features and target as the model takes them.

The matrix follows ``settings.fields.features`` in order, one dtype per column type:

- category → ``pl.Enum`` with the levels of hilt.toml (the same codes for every model and
  every batch; xgboost's native categorical splits via ``enable_categorical``);
- bool → ``pl.Int8`` (0 / 1);
- int, float → ``pl.Float64``.

Nulls stay nulls (xgboost's missing value). The target is binary: 1.0 for
``settings.target.positive``, 0.0 for the other class.

Errors name columns and row numbers, never the values found there (no personal data).
Importing this module does not import xgboost (``hilt.pipelines.loop.model`` does, when a
model is fitted or loaded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import HiltError, InputError

#: The key of the intercept in an explanation ({feature: contribution, "bias": ...}).
BIAS = "bias"
#: The label column of ``Store.case_frame``.
SEED_LABEL = "seed_label"

FeatureKind = Literal["category", "bool", "numeric"]
#: Scores (or margins) of a model, one per row.
Scores = npt.NDArray[np.float64]
#: (features in order, kind per feature, levels per category feature).
FeatureSpec = tuple[list[str], dict[str, FeatureKind], dict[str, list[str]]]


class ModelError(HiltError):
    """The model cannot do what was asked: an unsupported target or feature type, a model
    file that does not match its description, a frame that does not fit the model."""

    status_code = 422
    kind = "model"


# ---------------------------------------------------------------------------- the target
def binary_classes(settings: Settings) -> tuple[str, str]:
    """(positive, negative) class of a binary target; ModelError for more classes."""
    classes = settings.target.classes
    if len(classes) != 2:
        raise ModelError(
            f"the model supports binary targets only; target.classes has {len(classes)} classes"
        )
    positive = settings.target.positive
    negative = classes[1] if classes[0] == positive else classes[0]
    return positive, negative


def predicted_labels(scores: Sequence[float] | Scores, settings: Settings) -> list[str]:
    """The positive class where score >= settings.review.decision_threshold, else the other."""
    positive, negative = binary_classes(settings)
    threshold = settings.review.decision_threshold
    return [positive if float(s) >= threshold else negative for s in scores]


# ---------------------------------------------------------------------------- the matrix
@dataclass(frozen=True)
class TrainingRange:
    """What the model saw in training for one feature (the review panel's OOD badge).

    Numeric and bool features: ``low`` / ``high`` (bool as 0 / 1; None when every value was
    missing). Category features: ``levels``, the levels seen, in hilt.toml's order. The same
    shape as ``hilt.widgets.contracts.protocols.FeatureRange``.
    """

    low: float | None = None
    high: float | None = None
    levels: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "high": self.high,
            "levels": list(self.levels) if self.levels is not None else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainingRange:
        levels = d.get("levels")
        low, high = d.get("low"), d.get("high")
        return cls(
            low=None if low is None else float(low),
            high=None if high is None else float(high),
            levels=None if levels is None else tuple(str(v) for v in levels),
        )


def row_numbers(mask: pl.Series, limit: int = 5) -> str:
    """'N rows (rows 1, 4, …)': 1-based row numbers, never values."""
    idx = [str(i + 1) for i in mask.arg_true().head(limit).to_list()]
    more = ", …" if int(mask.sum()) > limit else ""
    return f"{int(mask.sum())} rows (rows {', '.join(idx)}{more})"


def encode(
    frame: pl.DataFrame,
    features: Sequence[str],
    kinds: Mapping[str, FeatureKind],
    levels: Mapping[str, Sequence[str]],
) -> pl.DataFrame:
    """The feature matrix: ``features`` in order, typed by kind. InputError names columns
    and row numbers only."""
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise InputError(f"the frame lacks feature columns {missing}")
    out: list[pl.Series] = []
    problems: list[str] = []
    for name in features:
        s = frame[name]
        kind = kinds[name]
        if kind == "category":
            enum = pl.Enum(list(levels[name]))
            if s.dtype == enum:
                # Already the model's matrix column (e.g. the training matrix itself): an
                # Enum of exactly these levels holds no other value.
                out.append(s.alias(name))
                continue
            text = s if s.dtype == pl.String else s.cast(pl.String, strict=False)
            if s.dtype.is_float():
                text = text.str.replace(r"\.0$", "")
            known = text.is_in(list(levels[name])).fill_null(True)
            if not known.all():
                problems.append(
                    f"column {name!r}: {row_numbers(~known)} have a level the model does not know"
                )
                continue
            out.append(text.cast(enum).alias(name))
        elif kind == "bool":
            if s.dtype == pl.Boolean:
                b = s
            else:
                norm = s.cast(pl.String, strict=False).str.to_lowercase()
                mapping = {"true": True, "1": True, "false": False, "0": False}
                b = norm.replace_strict(mapping, default=None, return_dtype=pl.Boolean)
                bad = b.is_null() & s.is_not_null()
                if bad.any():
                    problems.append(f"column {name!r}: {row_numbers(bad)} are not true/false")
                    continue
            out.append(b.cast(pl.Int8).alias(name))
        else:
            if s.dtype.is_numeric():
                x = s.cast(pl.Float64)
            else:
                x = s.cast(pl.String, strict=False).str.strip_chars().cast(pl.Float64, strict=False)
                bad = x.is_null() & s.is_not_null()
                if bad.any():
                    problems.append(f"column {name!r}: {row_numbers(bad)} are not numbers")
                    continue
            # NaN and ±inf are treated as missing, like a null.
            finite = pl.col(name).is_finite()
            out.append(
                pl.DataFrame([x.alias(name)]).select(pl.when(finite).then(pl.col(name))).to_series()
            )
    if problems:
        raise InputError("feature matrix:\n- " + "\n- ".join(problems))
    return pl.DataFrame(out)


def feature_spec(settings: Settings) -> FeatureSpec:
    """(features in order, kind per feature, levels per category feature) from hilt.toml."""
    features = list(settings.fields.features)
    if BIAS in features:
        raise ModelError(f"a feature may not be called {BIAS!r}: explanations use that key")
    kinds: dict[str, FeatureKind] = {}
    levels: dict[str, list[str]] = {}
    for name in features:
        col = settings.columns[name]
        if col.type == "category":
            kinds[name] = "category"
            levels[name] = list(col.levels or [])
        elif col.type == "bool":
            kinds[name] = "bool"
        elif col.type in ("int", "float"):
            kinds[name] = "numeric"
        else:
            raise ModelError(
                f"feature {name!r} has type {col.type!r}; the model takes int, float, bool "
                "and category features"
            )
    return features, kinds, levels


def training_frame(
    frame: pl.DataFrame, settings: Settings, label_column: str = SEED_LABEL
) -> tuple[pl.DataFrame, pl.Series]:
    """(X, y): the feature matrix and the binary target of the labelled rows of ``frame``.

    X has ``settings.fields.features`` in order (category → pl.Enum of the configured levels,
    bool → Int8, int / float → Float64); y is Float64, 1.0 for the positive class. Rows
    without a label are dropped; a label that is not one of the classes is an InputError.
    """
    positive, _ = binary_classes(settings)
    features, kinds, levels = feature_spec(settings)
    if label_column not in frame.columns:
        raise InputError(f"the frame has no label column {label_column!r}")
    raw = frame[label_column]
    label = raw if raw.dtype == pl.String else raw.cast(pl.String, strict=False)
    if raw.dtype.is_float():
        label = label.str.replace(r"\.0$", "")
    labelled = label.is_not_null()
    rows = frame.filter(labelled)
    label = label.filter(labelled)
    unknown = ~label.is_in(settings.target.classes)
    if unknown.any():
        raise InputError(
            f"column {label_column!r}: {row_numbers(unknown)} of the labelled rows are not one of "
            "the target classes"
        )
    X = encode(rows, features, kinds, levels)
    y = (label == positive).cast(pl.Float64).alias("label")
    return X, y


def spec_of_matrix(X: pl.DataFrame) -> FeatureSpec:
    """Recover the feature spec from a matrix made by ``training_frame``."""
    kinds: dict[str, FeatureKind] = {}
    levels: dict[str, list[str]] = {}
    for name, dtype in X.schema.items():
        if name == BIAS:
            raise ModelError(f"a feature may not be called {BIAS!r}: explanations use that key")
        if isinstance(dtype, pl.Enum):
            kinds[name] = "category"
            levels[name] = [str(v) for v in dtype.categories.to_list()]
        elif dtype == pl.Int8:
            kinds[name] = "bool"
        elif dtype == pl.Float64:
            kinds[name] = "numeric"
        else:
            raise ModelError(
                f"feature column {name!r} has dtype {dtype}; build X with training_frame() "
                "(pl.Enum, Int8 for bool, Float64)"
            )
    return list(X.columns), kinds, levels


def training_ranges(
    X: pl.DataFrame, kinds: Mapping[str, FeatureKind], levels: Mapping[str, Sequence[str]]
) -> dict[str, TrainingRange]:
    out: dict[str, TrainingRange] = {}
    for name in X.columns:
        s = X[name]
        if kinds[name] == "category":
            seen = set(s.drop_nulls().cast(pl.String).unique().to_list())
            out[name] = TrainingRange(levels=tuple(v for v in levels[name] if v in seen))
        else:
            x = s.cast(pl.Float64).drop_nulls().to_numpy()
            if x.size:
                out[name] = TrainingRange(low=float(x.min()), high=float(x.max()))
            else:
                out[name] = TrainingRange()
    return out
