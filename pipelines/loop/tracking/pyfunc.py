"""The model as MLflow keeps it: a pyfunc model named ``model`` whose data is
``TrainedModel.save`` (model.ubj, the booster as UBJSON, and model.json, the sidecar), loaded
by this module's ``_load_pyfunc`` (no pickle, no code file).

The xgboost flavor is not used: it builds ``xgboost.DMatrix(data)`` without
``enable_categorical``, so it cannot score our ``pl.Enum`` categoricals, and its signature
inference fails on them (pandas "category" vs the inferred "string"). Our pyfunc takes
category features as strings, validates their levels through ``TrainedModel.matrix`` and
returns one ``score`` column.

The model's input example is synthetic, never a real row (``training_log``, which makes
it without mlflow).

The requirements are named (``model_requirements``), so MLflow's pip-requirement inference
(a subprocess) is skipped.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
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
from hilt.pipelines.loop.tracking.provenance import installed_version, xgboost_distribution
from hilt.pipelines.loop.tracking.training_log import DATA_DIR as DATA_DIR  # (re-exported)

if TYPE_CHECKING:
    import pandas as pd

#: The logged model's name within a run.
MODEL_NAME: Final = "model"
#: The output column of the logged pyfunc model.
SCORE_COLUMN: Final = "score"
#: Distributions the logged pyfunc model needs (its requirements.txt); "xgboost" stands for
#: the distribution that installed it (``provenance.xgboost_distribution``: xgboost-cpu here).
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
    return signature_of(model.features, model.kinds)


def signature_of(features: Sequence[str], kinds: Mapping[str, str]) -> ModelSignature:
    """``model_signature`` of a model with these features and kinds."""
    inputs = Schema([ColSpec(_COLSPEC_TYPES[kinds[f]], f, required=False) for f in features])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(DataType.double, SCORE_COLUMN)]))


def model_requirements() -> list[str]:
    """``MODEL_REQUIREMENTS`` pinned to the installed versions (unpinned if not installed).

    XGBoost is named by the distribution that installed it: MLflow checks every requirement
    against this environment while it logs the model, and a distribution it cannot find it
    imports instead (``xgboost`` with scikit-learn: seconds, on the run's critical path)."""
    reqs = []
    for name in MODEL_REQUIREMENTS:
        dist = xgboost_distribution() if name == "xgboost" else name
        version = installed_version(dist)
        reqs.append(dist if version is None else f"{dist}=={version}")
    return reqs


# ---------------------------------------------------------------------------- loading
def load_model_version(settings: Settings, version: str | int) -> TrainedModel:
    """Download a registered version's model and load it (``TrainedModel.load`` checks the
    booster against its sidecar). Whether it is the model the store registered under that
    version is the store's to say: a scorer presents ``model_sha256()`` of what it loaded
    (``Store.add_predictions``), never a tag."""
    with tempfile.TemporaryDirectory(prefix="hilt-mlflow-") as tmp:
        return TrainedModel.load(download_model_version(settings, version, Path(tmp)))


def download_model_version(settings: Settings, version: str | int, folder: Path) -> Path:
    """Download a registered version's model into ``folder``; the directory of its saved
    ``TrainedModel`` (for ``TrainedModel.load``)."""
    state = configured()
    name = registered_model_name(settings)
    v = str(version)
    with mlflow_errors(f"cannot load version {v} of {name!r}"):
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{v}",
            dst_path=str(folder),
            tracking_uri=state.uri,
            registry_uri=state.uri,
        )
    return Path(local) / "data" / DATA_DIR
