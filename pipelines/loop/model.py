"""XGBoost on polars: training parameters, fit, predict, explain, save and load.

The one module that imports xgboost, and only inside the functions that need it (the import
costs ~1.6 s): ``from hilt.pipelines.loop.model import TrainParams`` stays cheap, so parameters can
be validated before any data is touched, and dashboards never pay for xgboost. The matrix a
model takes is ``hilt.pipelines.loop.features``.

Training is reproducible: ``tree_method="hist"``, a fixed seed and a fixed nthread (every
core by default; the number used is recorded), so the same parameters on the same rows give
a byte-identical model (``model_sha256()``).

Explanations are TreeSHAP contributions (``pred_contribs=True``) in log-odds: per row, the
contributions of the features plus ``"bias"`` sum to the model's margin, and the score is
``1 / (1 + exp(-margin))``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.features import (
    BIAS,
    FeatureKind,
    ModelError,
    Scores,
    TrainingRange,
    encode,
    spec_of_matrix,
    training_ranges,
)

if TYPE_CHECKING:
    import xgboost

# XGBoost's OpenMP threads wait for each other at every step of a tree. By default they spin
# while they wait; on a machine busier than its cores (other processes runnable) a spinning
# thread holds a core the thread it waits for needs, and a training on every core took 30x
# longer than on one (80,000 rows: 40 s against 1.2 s passive, at load 16 on 2 cores).
# Passive waiting changes no result (the model's bytes are the same). Read by libgomp when
# xgboost is first imported, which this module does (and only it); an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load_xgboost() -> None:
    """Import ``xgboost`` (the first time) without scikit-learn; call before ``import
    xgboost``.

    XGBoost's ``compat`` imports scikit-learn when it is installed, for its sklearn-style
    estimators, which hilt does not use (it trains with ``xgboost.train``); scikit-learn pulls
    in scipy.stats and took ~1 s of the ~1.5 s import, in every kernel that trains or scores.
    While xgboost is first imported, ``sys.modules["sklearn"]`` is ``None`` (Python's "import
    of this name halted"), so xgboost finds no scikit-learn and defines its estimators on
    plain bases; the entry is removed right after, so scikit-learn stays importable (it is
    imported normally by whoever needs it; if it already was, nothing is changed). Training,
    the booster and the model's bytes are the same (``test_model.py`` checks both ways). A
    thread that imports scikit-learn during that import would get ImportError: no hilt code
    does."""
    if "xgboost" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]
    try:
        import xgboost  # noqa: F401
    finally:
        sys.modules.pop("sklearn", None)  # the None put there above


#: Files of a saved model (a directory).
MODEL_FILE = "model.ubj"
SIDECAR_FILE = "model.json"
SIDECAR_FORMAT = "hilt-model/1"


# ---------------------------------------------------------------------------- parameters
#: The nthread of a run that recorded none (before runs used every core): it trained on one.
LEGACY_NTHREAD = 1


def default_nthread() -> int:
    """Threads a training uses unless told otherwise: every core of this machine."""
    return os.cpu_count() or 1


@dataclass(frozen=True)
class TrainParams:
    """XGBoost parameters; the defaults suit ~1,000 rows of tabular data.

    Invalid values raise InputError at construction, before any data is touched.
    """

    #: Depth of each tree.
    max_depth: int = 3
    #: Learning rate.
    eta: float = 0.05
    #: Number of boosting rounds (trees).
    num_boost_round: int = 200
    #: Minimum sum of instance weight (hessian) in a leaf.
    min_child_weight: float = 1.0
    #: Row subsample ratio per tree.
    subsample: float = 0.8
    #: Column subsample ratio per tree.
    colsample_bytree: float = 0.8
    #: L2 regularisation of leaf weights.
    reg_lambda: float = 1.0
    #: Histogram bins per numeric feature.
    max_bin: int = 256
    #: Random seed (subsampling).
    seed: int = 0
    #: Threads; 0: every core of this machine (``default_nthread``). The model's bytes
    #: depend on it, so the number used is what ``to_dict`` records and a reproduction uses.
    nthread: int = 0

    def __post_init__(self) -> None:
        if self.nthread == 0 and not isinstance(self.nthread, bool):
            object.__setattr__(self, "nthread", default_nthread())
        problems: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            want = int if f.type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{f.name} must be a number")
            elif want is int and not isinstance(value, int):
                problems.append(f"{f.name} must be an integer")
            elif not math.isfinite(value):
                problems.append(f"{f.name} must be finite")
            elif want is float and isinstance(value, int):
                # 1 and 1.0 are one parameter: keep to_dict() and the sidecar stable.
                object.__setattr__(self, f.name, float(value))
        if not problems:
            checks = [
                (1 <= self.max_depth <= 32, "max_depth must be between 1 and 32"),
                (0 < self.eta <= 1, "eta must be in (0, 1]"),
                (1 <= self.num_boost_round <= 100_000, "num_boost_round must be 1 to 100000"),
                (self.min_child_weight >= 0, "min_child_weight must be >= 0"),
                (0 < self.subsample <= 1, "subsample must be in (0, 1]"),
                (0 < self.colsample_bytree <= 1, "colsample_bytree must be in (0, 1]"),
                (self.reg_lambda >= 0, "reg_lambda must be >= 0"),
                (2 <= self.max_bin <= 65_536, "max_bin must be between 2 and 65536"),
                (0 <= self.seed < 2**31, "seed must be in [0, 2**31)"),
                (1 <= self.nthread <= 1024, "nthread must be between 0 and 1024 (0: every core)"),
            ]
            problems = [msg for ok, msg in checks if not ok]
        if problems:
            raise InputError("training parameters: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainParams:
        """Parameters from a mapping (papermill parameters, ``-p NAME VALUE``, a sidecar).

        Unknown names are refused; text values are converted ("6" → 6, "0.1" → 0.1).
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(f"training parameters: unknown {unknown}; known are {sorted(known)}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            want_int = known[name].type in ("int", int)
            if isinstance(value, str):
                try:
                    converted[name] = int(value) if want_int else float(value)
                except ValueError:
                    kind = "an integer" if want_int else "a number"
                    raise InputError(f"training parameters: {name} must be {kind}") from None
            elif want_int and isinstance(value, float) and value.is_integer():
                converted[name] = int(value)
            elif not want_int and isinstance(value, int) and not isinstance(value, bool):
                converted[name] = float(value)
            else:
                converted[name] = value
        return cls(**converted)

    def to_dict(self) -> dict[str, int | float]:
        """Plain values, e.g. for MLflow params or the model's sidecar."""
        return asdict(self)

    def xgb_params(self) -> dict[str, Any]:
        """The parameter dict for ``xgboost.train``."""
        return {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.eta,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "max_bin": self.max_bin,
            "seed": self.seed,
            "nthread": self.nthread,
            "validate_parameters": True,
        }


# ---------------------------------------------------------------------------- the model
@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A fitted booster with what it needs to encode frames and describe itself."""

    booster: xgboost.Booster
    #: Feature names, in the matrix's order.
    features: tuple[str, ...]
    kinds: dict[str, FeatureKind]
    #: The levels (codes) of each category feature, as configured when it was trained.
    levels: dict[str, tuple[str, ...]]
    #: Per feature, the range (numeric, bool) or the levels (category) seen in training.
    training_ranges: dict[str, TrainingRange]
    params: TrainParams
    #: Rows it was trained on, and how many of them were positive.
    train_rows: int
    train_positives: int

    # --------------------------------------------------------------- identity
    def model_bytes(self) -> bytes:
        """The booster as UBJSON (``save_raw("ubj")``): identical for identical training."""
        return bytes(self.booster.save_raw("ubj"))

    def model_sha256(self) -> str:
        return hashlib.sha256(self.model_bytes()).hexdigest()

    # --------------------------------------------------------------- scoring
    def matrix(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The model's feature matrix of ``frame`` (extra columns are ignored)."""
        return encode(frame, self.features, self.kinds, self.levels)

    def _dmatrix(self, frame: pl.DataFrame) -> xgboost.DMatrix:
        load_xgboost()
        import xgboost as xgb

        return xgb.DMatrix(self.matrix(frame), enable_categorical=True, nthread=self.params.nthread)

    def predict(self, frame: pl.DataFrame) -> Scores:
        """The probability of the positive class, one per row."""
        if frame.height == 0:
            return np.zeros(0, dtype=np.float64)
        out = self.booster.predict(self._dmatrix(frame), validate_features=True)
        return np.asarray(out, dtype=np.float64)

    def margin(self, frame: pl.DataFrame) -> Scores:
        """The raw margin (log-odds of the positive class), one per row."""
        if frame.height == 0:
            return np.zeros(0, dtype=np.float64)
        out = self.booster.predict(self._dmatrix(frame), output_margin=True)
        return np.asarray(out, dtype=np.float64)

    def contributions(self, frame: pl.DataFrame) -> pl.DataFrame:
        """TreeSHAP contributions in log-odds: one column per feature, then ``bias``.

        Per row, the sum of all columns is the margin.
        """
        columns = [*self.features, BIAS]
        if frame.height == 0:
            return pl.DataFrame(schema=dict.fromkeys(columns, pl.Float64))
        raw = self.booster.predict(self._dmatrix(frame), pred_contribs=True)
        arr = np.asarray(raw, dtype=np.float64)
        return pl.DataFrame(arr, schema=columns, orient="row")

    def explain(self, frame: pl.DataFrame) -> list[dict[str, float]]:
        """Per row, {feature: contribution, ..., "bias": intercept}, in log-odds."""
        return self.contributions(frame).rows(named=True)

    def score_and_explain(self, frame: pl.DataFrame) -> tuple[Scores, pl.DataFrame]:
        """``predict`` and ``contributions`` from one matrix (what scoring needs)."""
        if frame.height == 0:
            return self.predict(frame), self.contributions(frame)
        d = self._dmatrix(frame)
        scores = np.asarray(self.booster.predict(d), dtype=np.float64)
        raw = np.asarray(self.booster.predict(d, pred_contribs=True), dtype=np.float64)
        return scores, pl.DataFrame(raw, schema=[*self.features, BIAS], orient="row")

    # --------------------------------------------------------------- persistence
    def describe(self) -> dict[str, Any]:
        """The sidecar: everything but the booster (no personal data: names, levels,
        training ranges, parameters, counts)."""
        load_xgboost()
        import xgboost as xgb

        return {
            "format": SIDECAR_FORMAT,
            "model_file": MODEL_FILE,
            "model_sha256": self.model_sha256(),
            "xgboost_version": xgb.__version__,
            "features": list(self.features),
            "kinds": dict(self.kinds),
            "levels": {k: list(v) for k, v in self.levels.items()},
            "training_ranges": {k: r.to_dict() for k, r in self.training_ranges.items()},
            "params": self.params.to_dict(),
            "train_rows": self.train_rows,
            "train_positives": self.train_positives,
        }

    def save(self, path: str | Path) -> Path:
        """Write the model into the directory ``path`` (created; must not hold a model):
        model.ubj (the booster) and model.json (the sidecar). No pickle. Returns ``path``."""
        target = Path(path)
        if (target / SIDECAR_FILE).exists() or (target / MODEL_FILE).exists():
            raise ModelError(f"{target}: a model is already saved there")
        target.parent.mkdir(parents=True, exist_ok=True)
        sidecar = json.dumps(self.describe(), indent=2, sort_keys=True) + "\n"
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            (tmp / MODEL_FILE).write_bytes(self.model_bytes())
            (tmp / SIDECAR_FILE).write_text(sidecar, encoding="utf-8")
            if target.exists():
                for f in (MODEL_FILE, SIDECAR_FILE):
                    os.replace(tmp / f, target / f)
            else:
                os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    @classmethod
    def load(cls, path: str | Path) -> TrainedModel:
        """Read a model written by ``save``; ModelError when its files do not match."""
        target = Path(path)
        try:
            meta = json.loads((target / SIDECAR_FILE).read_text(encoding="utf-8"))
            raw = (target / MODEL_FILE).read_bytes()
        except FileNotFoundError:
            raise ModelError(f"{target}: no saved model there") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"{target}: cannot read the model ({type(e).__name__})") from None
        if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
            raise ModelError(f"{target}/{SIDECAR_FILE}: not a {SIDECAR_FORMAT} sidecar")
        if hashlib.sha256(raw).hexdigest() != meta.get("model_sha256"):
            raise ModelError(f"{target}/{MODEL_FILE}: sha256 does not match the sidecar")
        try:
            features = tuple(str(f) for f in meta["features"])
            kinds: dict[str, FeatureKind] = {str(k): v for k, v in meta["kinds"].items()}
            levels = {str(k): tuple(str(x) for x in v) for k, v in meta["levels"].items()}
            ranges = {
                str(k): TrainingRange.from_dict(v) for k, v in meta["training_ranges"].items()
            }
            params = TrainParams.from_mapping(meta["params"])
            train_rows = int(meta["train_rows"])
            train_positives = int(meta["train_positives"])
        except (KeyError, TypeError, ValueError, AttributeError, InputError) as e:
            raise ModelError(
                f"{target}/{SIDECAR_FILE}: malformed sidecar ({type(e).__name__})"
            ) from None
        if set(kinds) != set(features) or any(
            kinds[f] not in ("category", "bool", "numeric") for f in features
        ):
            raise ModelError(f"{target}/{SIDECAR_FILE}: kinds do not match the features")
        load_xgboost()
        import xgboost as xgb

        booster = xgb.Booster(model_file=bytearray(raw))
        booster.set_param({"nthread": params.nthread})
        if tuple(booster.feature_names or ()) != features:
            raise ModelError(f"{target}: the booster's features do not match the sidecar")
        return cls(
            booster=booster,
            features=features,
            kinds=kinds,
            levels=levels,
            training_ranges=ranges,
            params=params,
            train_rows=train_rows,
            train_positives=train_positives,
        )


def fit(X: pl.DataFrame, y: pl.Series, params: TrainParams | None = None) -> TrainedModel:
    """Train a binary XGBoost model on the matrix and target of ``training_frame``.

    Deterministic: the same params on the same rows give byte-identical model bytes.
    """
    params = params or TrainParams()
    features, kinds, levels = spec_of_matrix(X)
    if X.height == 0:
        raise InputError("no labelled rows to train on")
    if y.len() != X.height:
        raise InputError(f"X has {X.height} rows but y has {y.len()}")
    target = y.cast(pl.Float64, strict=False)
    if target.null_count() or not target.is_in([0.0, 1.0]).all():
        raise InputError("y must be 0.0 or 1.0 in every row")
    positives = int(target.sum())
    if positives in (0, X.height):
        raise InputError("the training rows hold only one class; both are needed")
    load_xgboost()
    import xgboost as xgb

    dtrain = xgb.QuantileDMatrix(
        X,
        label=target.to_numpy(),
        enable_categorical=True,
        max_bin=params.max_bin,
        nthread=params.nthread,
    )
    booster = xgb.train(params.xgb_params(), dtrain, num_boost_round=params.num_boost_round)
    return TrainedModel(
        booster=booster,
        features=tuple(features),
        kinds=kinds,
        levels={k: tuple(v) for k, v in levels.items()},
        training_ranges=training_ranges(X, kinds, levels),
        params=params,
        train_rows=X.height,
        train_positives=positives,
    )
