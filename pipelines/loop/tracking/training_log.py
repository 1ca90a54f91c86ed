"""What a training run logs to MLflow, prepared without MLflow (``prepare_training_log``):
the checks, the params, metrics and tags, the synthetic input example, the dataset's schema
and counts, and the files (the saved model, the subgroup table) in a folder.

``training.write_training_log`` then writes a ``TrainingLog`` to the run (mlflow), in this
process (``training.log_training`` does both) or in the runner's: a retraining notebook's
kernel prepares it and the runner, which has MLflow loaded already, writes it
(``relay``), so the kernel never imports mlflow. A ``TrainingLog`` crosses that boundary as
JSON naming its folder; it holds no row of data (the dataset is its schema, a zero-row frame,
and its counts; the input example is synthetic, checked not to equal a training row).

The model's input example is synthetic, never a real row: the middle of each numeric
feature's training range and the first level seen in training of each category feature
(``synthetic_input_example``), checked not to equal any row of the training data. An input
example is stored in clear text next to the model and is shown to anyone who can read the
registry; a real row would be a data subject's record (and ``age``-like features are personal
data).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, TypeAlias

import polars as pl
import polars.selectors as cs

from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.model import TrainedModel
from hilt.pipelines.loop.tracking.tags import (
    PARAM_DATASET_NAME,
    PARAM_SNAPSHOT_SEQ,
    PARAM_SNAPSHOT_SHA256,
    RESERVED_PREFIX,
    SUBGROUP_ARTIFACT,
    TAG_MODEL_SHA256,
    TAG_SNAPSHOT_SEQ,
    TAG_SNAPSHOT_SHA256,
)

#: The folder of the model's data (a saved TrainedModel) within the logged model's ``data``.
DATA_DIR: Final = "hilt_model"
#: Files of a prepared log within its folder.
SCHEMA_FILE: Final = "dataset-schema.arrow"
EXAMPLE_FILE: Final = "input-example.arrow"

_SHA256 = re.compile(r"[0-9a-f]{64}")


#: Training rows read a batch at a time, afresh at each call: what a training on a cluster
#: left on the snapshot file (``training_data.training_batches``), for the input example's
#: check that it copies no real row.
RowBatches: TypeAlias = Callable[[], Iterator[pl.DataFrame]]


def metric_value(name: str, value: Any) -> float:
    """A metric's value as a float; InputError naming the metric otherwise."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"metric {name!r} is not a number") from None
    return out


# ---------------------------------------------------------------------------- the dataset
def friendly_for_schema(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast the dtypes MLflow maps only approximately (and warns about through the root
    logger) to their exact counterparts: Enum/Categorical → String, small unsigned → signed,
    Date → Datetime. Same column names, same row count."""
    return frame.with_columns(
        (cs.enum() | cs.categorical()).cast(pl.String),
        cs.by_dtype(pl.UInt8, pl.UInt16).cast(pl.Int32),
        cs.by_dtype(pl.UInt32).cast(pl.Int64),
        cs.date().cast(pl.Datetime("us")),
    )


# ---------------------------------------------------------------------------- the log
@dataclass(frozen=True)
class TrainingLog:
    """One training's MLflow record, ready to write (``training.write_training_log``): every
    value checked, the files in ``folder`` (the saved model in ``DATA_DIR``, the dataset's
    schema, the input example, the subgroup table if any)."""

    folder: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    model_sha256: str
    #: The model's features in order and their kinds (its signature).
    features: list[str]
    kinds: dict[str, str]
    dataset_name: str
    #: The snapshot file's sha256 (MLflow gets the first 32 hex digits as its digest).
    dataset_sha256: str
    dataset_source: str | None
    snapshot_seq: int
    #: The training frame's counts (MLflow's profile of a polars dataset).
    dataset_rows: int
    dataset_columns: int
    #: The subgroup table's artifact path within the run (None: not logged).
    subgroup_artifact: str | None = None
    seconds: float = field(default=0.0, compare=False)

    @property
    def model_dir(self) -> Path:
        return Path(self.folder) / DATA_DIR

    def schema_frame(self) -> pl.DataFrame:
        """The training frame's columns and types, no rows."""
        return pl.read_ipc(Path(self.folder) / SCHEMA_FILE)

    def input_example(self) -> pl.DataFrame:
        return pl.read_ipc(Path(self.folder) / EXAMPLE_FILE)

    def subgroup_file(self) -> Path | None:
        if self.subgroup_artifact is None:
            return None
        return Path(self.folder) / self.subgroup_artifact.rpartition("/")[2]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainingLog:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise InputError("a training log is a JSON object")
        try:
            return cls(**data)
        except TypeError as e:
            raise InputError(f"malformed training log: {e}") from None


def _input_example(
    model: TrainedModel, given: pl.DataFrame | None, dataset_frame: pl.DataFrame | RowBatches
) -> pl.DataFrame:
    """The caller's input example (checked: not a row of the training data), else a
    synthetic one."""
    if given is None:
        return synthetic_input_example(model, dataset_frame)
    missing = [f for f in model.features if f not in given.columns]
    if given.height == 0 or missing:
        raise InputError(
            f"the input example needs at least one row and the features {model.features}"
        )
    example = given.select(model.features).with_columns(
        (cs.enum() | cs.categorical()).cast(pl.String)
    )
    if equals_a_row(model, example, dataset_frame):
        raise InputError(
            "the input example equals a row of the training data; pass a synthetic one "
            "(or none: a synthetic one is made)"
        )
    return example


def prepare_training_log(
    folder: str | Path,
    *,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    subgroup_table: pl.DataFrame | None,
    dataset_frame: pl.DataFrame,
    dataset_name: str,
    dataset_digest: str,
    snapshot_seq: int,
    model: TrainedModel,
    model_input_example: pl.DataFrame | None = None,
    dataset_source: str | Path | None = None,
    remote_rows: tuple[int, RowBatches] | None = None,
) -> TrainingLog:
    """Check and prepare what ``training.log_training`` logs (see its docstring), writing the
    files into ``folder`` (an empty or new directory). No mlflow.

    A training on a cluster passes ``dataset_frame`` without rows (its columns only) and
    ``remote_rows``: how many rows it trained on, and those rows a batch at a time (the input
    example is checked against them; MLflow's profile counts them)."""
    if not _SHA256.fullmatch(dataset_digest):
        raise InputError("dataset_digest must be the snapshot's sha256 (64 lowercase hex digits)")
    if isinstance(snapshot_seq, bool) or not isinstance(snapshot_seq, int) or snapshot_seq < 0:
        raise InputError("snapshot_seq must be a non-negative integer")
    reserved = sorted(k for k in params if k.startswith(RESERVED_PREFIX))
    if reserved:
        raise InputError(f"params {reserved}: the prefix {RESERVED_PREFIX!r} is reserved")
    metric_values = {k: metric_value(k, v) for k, v in metrics.items()}
    example = _input_example(
        model, model_input_example, dataset_frame if remote_rows is None else remote_rows[1]
    )
    sha = model.model_sha256()
    all_params = {str(k): str(v) for k, v in params.items()}
    all_params.update(
        {
            PARAM_SNAPSHOT_SEQ: str(snapshot_seq),
            PARAM_SNAPSHOT_SHA256: dataset_digest,
            PARAM_DATASET_NAME: dataset_name,
        }
    )
    tags = {
        TAG_MODEL_SHA256: sha,
        TAG_SNAPSHOT_SEQ: str(snapshot_seq),
        TAG_SNAPSHOT_SHA256: dataset_digest,
    }
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    model.save(root / DATA_DIR)
    friendly_for_schema(dataset_frame.clear()).write_ipc(root / SCHEMA_FILE)
    example.write_ipc(root / EXAMPLE_FILE)
    subgroup_artifact = None
    if subgroup_table is not None:
        subgroup_artifact = SUBGROUP_ARTIFACT
        subgroup_table.write_csv(root / SUBGROUP_ARTIFACT.rpartition("/")[2])
    return TrainingLog(
        folder=str(root),
        params=all_params,
        metrics=metric_values,
        tags=tags,
        model_sha256=sha,
        features=list(model.features),
        kinds={f: str(model.kinds[f]) for f in model.features},
        dataset_name=dataset_name,
        dataset_sha256=dataset_digest,
        dataset_source=None if dataset_source is None else str(dataset_source),
        snapshot_seq=snapshot_seq,
        dataset_rows=dataset_frame.height if remote_rows is None else remote_rows[0],
        dataset_columns=dataset_frame.width,
        subgroup_artifact=subgroup_artifact,
    )


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


def equals_a_row(
    model: TrainedModel, example: pl.DataFrame, rows: pl.DataFrame | RowBatches
) -> bool:
    """Whether any example row has the same feature values as a row of ``rows`` (compared
    as the model sees them; False when ``rows`` lacks the features)."""
    if not isinstance(rows, pl.DataFrame):
        return any(equals_a_row(model, example, batch) for batch in rows())
    if rows.height == 0 or any(f not in rows.columns for f in model.features):
        return False
    real = model.matrix(rows)
    mine = model.matrix(example)
    for values in mine.iter_rows(named=True):
        same = pl.all_horizontal(pl.col(f).eq_missing(values[f]) for f in model.features)
        if real.select(same.any()).item():
            return True
    return False


def synthetic_input_example(
    model: TrainedModel, avoid: pl.DataFrame | RowBatches | None = None
) -> pl.DataFrame:
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
