"""The model as MLflow keeps it: a pyfunc model named ``model`` whose data is
``TrainedModel.save`` (model.ubj, the booster as UBJSON, and model.json, the sidecar), loaded
by this module's ``_load_pyfunc`` (no pickle, no code file).

The xgboost flavor is not used: it builds ``xgboost.DMatrix(data)`` without
``enable_categorical``, so it cannot score our ``pl.Enum`` categoricals, and its signature
inference fails on them (pandas "category" vs the inferred "string"). Our pyfunc takes
category features as strings, validates their levels through ``TrainedModel.matrix`` and
returns one ``score`` column.

The model's input example is synthetic, never a real row: the middle of each numeric
feature's training range and the first level seen in training of each category feature
(``synthetic_input_example``), checked not to equal any row of the training data. An input
example is stored in clear text next to the model and is shown to anyone who can read the
registry; a real row would be a data subject's record (and ``age``-like features are personal
data).

The requirements are named (``model_requirements``), so MLflow's pip-requirement inference
(a subprocess) is skipped.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import mlflow
import polars as pl
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema

from hilt.pipelines.config import Settings
from hilt.pipelines.loop.model import TrainedModel
from hilt.pipelines.loop.tracking.client import configured, mlflow_errors
from hilt.pipelines.loop.tracking.environment import registered_model_name
from hilt.pipelines.loop.tracking.provenance import installed_version

if TYPE_CHECKING:
    import pandas as pd

#: The logged model's name within a run.
MODEL_NAME: Final = "model"
#: The output column of the logged pyfunc model.
SCORE_COLUMN: Final = "score"
#: The folder of the model's data (a saved TrainedModel) within the logged model's ``data``.
DATA_DIR: Final = "hilt_model"
#: Distributions the logged pyfunc model needs (its requirements.txt).
MODEL_REQUIREMENTS: Final = ("hilt-workbench", "xgboost", "polars", "pyarrow", "pandas")

_COLSPEC_TYPES: Final = {
    "category": DataType.string,
    "bool": DataType.boolean,
    "numeric": DataType.double,
}


class HiltPyfuncModel:
    """What ``mlflow.pyfunc.load_model`` returns for a hilt model: pandas in (category
    features as strings, numbers as floats), pandas out (one ``score`` column)."""

    def __init__(self, model: TrainedModel) -> None:
        self.model = model

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        import pandas

        frame = pl.from_pandas(model_input)
        absent = [f for f in self.model.features if f not in frame.columns]
        if absent:  # optional columns left out: missing values
            frame = frame.with_columns(pl.lit(None).alias(f) for f in absent)
        return pandas.DataFrame({SCORE_COLUMN: self.model.predict(frame)})


def _load_pyfunc(data_path: str) -> HiltPyfuncModel:
    """MLflow's pyfunc loader hook (``loader_module``): ``data_path`` is a TrainedModel dir."""
    return HiltPyfuncModel(TrainedModel.load(data_path))


#: The module MLflow imports to load a logged hilt model (its ``_load_pyfunc``).
LOADER_MODULE: Final = __name__


def model_signature(model: TrainedModel) -> ModelSignature:
    """Inputs: the model's features in order (category → string, bool → boolean, int/float →
    double), all optional because a missing value is a valid input; output: ``score``."""
    inputs = Schema(
        [ColSpec(_COLSPEC_TYPES[model.kinds[f]], f, required=False) for f in model.features]
    )
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(DataType.double, SCORE_COLUMN)]))


def model_requirements() -> list[str]:
    """``MODEL_REQUIREMENTS`` pinned to the installed versions (unpinned if not installed)."""
    reqs = []
    for dist in MODEL_REQUIREMENTS:
        version = installed_version(dist)
        reqs.append(dist if version is None else f"{dist}=={version}")
    return reqs


# ---------------------------------------------------------------------------- input example
def _example_values(model: TrainedModel) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in model.features:
        r = model.training_ranges[name]
        kind = model.kinds[name]
        if kind == "category":
            seen = r.levels or model.levels[name]
            row[name] = seen[0] if seen else None
        elif r.low is None or r.high is None:
            row[name] = None
        elif kind == "bool":
            row[name] = bool(r.low)
        else:
            row[name] = float(round((r.low + r.high) / 2))
    return row


def _example_frame(model: TrainedModel, row: Mapping[str, Any]) -> pl.DataFrame:
    dtypes: dict[str, pl.DataType] = {
        f: pl.String() if k == "category" else pl.Boolean() if k == "bool" else pl.Float64()
        for f, k in model.kinds.items()
    }
    return pl.DataFrame({f: [row[f]] for f in model.features}, schema=dtypes)


def equals_a_row(model: TrainedModel, example: pl.DataFrame, rows: pl.DataFrame) -> bool:
    """Whether any example row has the same feature values as a row of ``rows`` (compared
    as the model sees them; False when ``rows`` lacks the features)."""
    if rows.height == 0 or any(f not in rows.columns for f in model.features):
        return False
    real = model.matrix(rows)
    mine = model.matrix(example)
    for values in mine.iter_rows(named=True):
        same = pl.all_horizontal(pl.col(f).eq_missing(values[f]) for f in model.features)
        if real.select(same.any()).item():
            return True
    return False


def synthetic_input_example(model: TrainedModel, avoid: pl.DataFrame | None = None) -> pl.DataFrame:
    """One made-up row of model input, derived from the model's own description only: the
    middle of each numeric feature's training range (rounded), ``low`` of each bool feature,
    the first level seen in training of each category feature (hilt.toml's order).

    If ``avoid`` (the training data) holds a row with these very feature values, numeric
    features are moved off the data's grid (+0.37 of a unit) and, failing that, every value is
    left missing, so the example never reproduces a real record. Category features are
    strings, as a caller of the served model sends them.
    """
    row = _example_values(model)
    example = _example_frame(model, row)
    if avoid is None or not equals_a_row(model, example, avoid):
        return example
    nudged = {
        f: (v + 0.37 if model.kinds[f] == "numeric" and v is not None else v)
        for f, v in row.items()
    }
    example = _example_frame(model, nudged)
    if not equals_a_row(model, example, avoid):
        return example
    return _example_frame(model, dict.fromkeys(model.features))


# ---------------------------------------------------------------------------- loading
def load_model_version(settings: Settings, version: str | int) -> TrainedModel:
    """Download a registered version's model and load it (``TrainedModel.load`` checks the
    booster against its sidecar). Whether it is the model the store registered under that
    version is the store's to say: a scorer presents ``model_sha256()`` of what it loaded
    (``Store.add_predictions``), never a tag."""
    state = configured()
    name = registered_model_name(settings)
    v = str(version)
    with (
        mlflow_errors(f"cannot load version {v} of {name!r}"),
        tempfile.TemporaryDirectory(prefix="hilt-mlflow-") as tmp,
    ):
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{v}",
            dst_path=tmp,
            tracking_uri=state.uri,
            registry_uri=state.uri,
        )
        return TrainedModel.load(Path(local) / "data" / DATA_DIR)
