"""What a training run logs to MLflow (``log_training``), and what it never holds.

- params: the training parameters as given, plus ``hilt.snapshot_seq``,
  ``hilt.snapshot_sha256``, ``hilt.dataset_name``; metrics as given;
- tags: ``hilt.model_sha256``, ``hilt.snapshot_seq``, ``hilt.snapshot_sha256`` (the
  provenance tags were set when the run was created: ``runs.create_run``);
- the dataset input (context ``training``): ``mlflow.data.from_polars`` of the snapshot frame
  with our digest. MLflow stores its name, digest, source, schema (column names and types)
  and profile; the profile of a polars dataset is ``num_rows`` and ``num_elements`` only (MLflow
  3.17, checked at run time: any other key and the dataset is logged from a zero-row frame).
  MLflow caps a dataset digest at 36 characters, so the digest is the first 32 hex digits of
  the snapshot's sha256; the full sha256 is the input tag ``hilt.sha256`` and a param;
- the model, name ``model``: the pyfunc model of ``pyfunc`` with its signature, requirements
  and a synthetic input example; the LoggedModel is created in the run's own experiment, so
  its files are under ``<workspace>/mlartifacts`` too;
- the subgroup metrics table, if given, as ``evaluation/subgroup_metrics.csv`` (group-level
  aggregates; small groups are the evaluation's business).

MLflow's INFO lines and its note on how it reads a local dataset source are kept out of the
caller's output while it logs (an executed notebook's stderr).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import mlflow
import mlflow.pyfunc
import polars as pl
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.polars_dataset import PolarsDataset, from_polars
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, Run, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.model import TrainedModel, load_xgboost
from hilt.pipelines.loop.tracking.client import configured, mlflow_errors
from hilt.pipelines.loop.tracking.pyfunc import (
    LOADER_MODULE,
    MODEL_NAME,
    model_requirements,
    signature_of,
)
from hilt.pipelines.loop.tracking.runs import run_id_of
from hilt.pipelines.loop.tracking.tags import (
    EVALUATION_DIR,
    INPUT_TAG_SHA256,
    TAG_MODEL_SHA256,
    TAG_SNAPSHOT_SEQ,
)
from hilt.pipelines.loop.tracking.training_log import (
    TrainingLog,
    friendly_for_schema,
    prepare_training_log,
)

#: MLflow caps dataset digests at 36 characters; we use this many hex digits of the sha256.
DATASET_DIGEST_LENGTH: Final = 32

_SHA256 = re.compile(r"[0-9a-f]{64}")
_PROFILE_KEYS: Final = frozenset({"num_rows", "num_elements"})


# ---------------------------------------------------------------------------- the dataset
def training_dataset(
    frame: pl.DataFrame,
    *,
    name: str,
    sha256: str,
    source: str | Path | None = None,
    snapshot_seq: int | None = None,
) -> PolarsDataset:
    """The MLflow dataset of a training snapshot: schema (names, types) and row counts, our
    digest (the first 32 hex digits of ``sha256``), and as source the snapshot file (a local
    path) or, without one, a code source tagged with the snapshot seq. No values: if MLflow's
    profile ever holds more than counts, the dataset is built from a zero-row frame."""
    if not _SHA256.fullmatch(sha256):
        raise InputError("the dataset digest must be a sha256 (64 lowercase hex digits)")
    src: DatasetSource
    if source is not None:
        src = resolve_dataset_source(str(source))
    else:
        src = CodeDatasetSource(
            tags={TAG_SNAPSHOT_SEQ: str(snapshot_seq)} if snapshot_seq is not None else {}
        )
    friendly = friendly_for_schema(frame)
    digest = sha256[:DATASET_DIGEST_LENGTH]
    dataset = from_polars(friendly, source=src, name=name, digest=digest)
    if not set(dataset.profile) <= _PROFILE_KEYS:
        dataset = from_polars(friendly.clear(), source=src, name=name, digest=digest)
    return dataset


def _dataset_input(dataset: PolarsDataset, sha256: str, profile: str | None = None) -> DatasetInput:
    """The dataset as a training input of a run, tagged with the snapshot's full sha256;
    ``profile`` (JSON) in place of the dataset's own (that of the frame it was built from)."""
    d = dataset.to_dict()
    entity = Dataset(
        name=d["name"],
        digest=d["digest"],
        source_type=d["source_type"],
        source=d["source"],
        schema=d["schema"],
        profile=d["profile"] if profile is None else profile,
    )
    return DatasetInput(
        entity,
        tags=[
            InputTag(MLFLOW_DATASET_CONTEXT, "training"),
            InputTag(INPUT_TAG_SHA256, sha256),
        ],
    )


# ---------------------------------------------------------------------------- the run
@contextmanager
def _quiet_logs() -> Iterator[None]:
    """MLflow's INFO lines and its note on how it reads a local dataset source would land in
    an executed notebook's stderr; they say nothing an auditor needs."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="The specified dataset source can be interpreted"
            )
            yield
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class LoggedTraining:
    """What ``log_training`` logged: the run, the logged model and its input example."""

    run_id: str
    model_id: str
    model_uri: str
    model_sha256: str
    dataset_digest: str
    input_example: pl.DataFrame = field(repr=False)
    seconds: float = 0.0


def log_training(
    run: Run | str,
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
) -> LoggedTraining:
    """Log one training to ``run`` (an ActiveRun, a Run or a run id; it stays open).

    ``dataset_digest`` is the sha256 of the snapshot file; ``dataset_source`` optionally its
    path. ``model_input_example`` defaults to ``synthetic_input_example(model, dataset_frame)``;
    one given must not equal a row of ``dataset_frame`` (InputError). See the module's
    docstring for everything that is logged. ``training_log.prepare_training_log``, then
    ``write_training_log``.
    """
    started = time.perf_counter()
    run_id = run_id_of(run)
    with tempfile.TemporaryDirectory(prefix="hilt-mlflow-") as tmp:
        prepared = prepare_training_log(
            tmp,
            params=params,
            metrics=metrics,
            subgroup_table=subgroup_table,
            dataset_frame=dataset_frame,
            dataset_name=dataset_name,
            dataset_digest=dataset_digest,
            snapshot_seq=snapshot_seq,
            model=model,
            model_input_example=model_input_example,
            dataset_source=dataset_source,
        )
        logged = write_training_log(run_id, prepared)
    return replace(logged, seconds=time.perf_counter() - started)


def write_training_log(run_id: str, log: TrainingLog) -> LoggedTraining:
    """Write a prepared training (``prepare_training_log``) to the run ``run_id``: params,
    metrics and tags in one batch, the dataset input, the subgroup table, the model."""
    started = time.perf_counter()
    client = configured().client
    now = int(time.time() * 1000)
    example = log.input_example()
    profile = json.dumps(
        {"num_rows": log.dataset_rows, "num_elements": log.dataset_rows * log.dataset_columns}
    )
    with _quiet_logs():
        dataset = training_dataset(
            log.schema_frame(),
            name=log.dataset_name,
            sha256=log.dataset_sha256,
            source=log.dataset_source,
            snapshot_seq=log.snapshot_seq,
        )
        with mlflow_errors(f"cannot log the training of run {run_id}"):
            client.log_batch(
                run_id,
                metrics=[Metric(k, v, now, 0) for k, v in log.metrics.items()],
                params=[Param(k, v) for k, v in log.params.items()],
                tags=[RunTag(k, v) for k, v in log.tags.items()],
            )
            client.log_inputs(
                run_id, datasets=[_dataset_input(dataset, log.dataset_sha256, profile)]
            )
            subgroups = log.subgroup_file()
            if subgroups is not None:
                client.log_artifact(run_id, str(subgroups), artifact_path=EVALUATION_DIR)
            # The LoggedModel is created here, in the run's own experiment: left to Model.log,
            # it goes to the process's active experiment, MLflow's Default (id 0, artifacts in
            # ./mlruns) unless something set one.
            logged_model = client.create_logged_model(
                experiment_id=client.get_run(run_id).info.experiment_id,
                name=MODEL_NAME,
                source_run_id=run_id,
                tags={TAG_MODEL_SHA256: log.model_sha256},
                params=log.params,
            )
            info = mlflow.models.Model.log(
                artifact_path=None,
                name=MODEL_NAME,
                flavor=mlflow.pyfunc,
                run_id=run_id,
                model_id=logged_model.model_id,
                loader_module=LOADER_MODULE,
                data_path=str(log.model_dir),
                signature=signature_of(log.features, log.kinds),
                input_example=example.to_pandas(),
                pip_requirements=model_requirements(),
                metadata={"hilt_model_sha256": log.model_sha256},
            )
    return LoggedTraining(
        run_id=run_id,
        model_id=str(info.model_id),
        model_uri=str(info.model_uri),
        model_sha256=log.model_sha256,
        dataset_digest=dataset.digest,
        input_example=example,
        seconds=time.perf_counter() - started,
    )


def warm_up() -> None:
    """What ``write_training_log`` first pays, paid ahead (the runner calls it on a thread
    while the kernel starts and trains): this module's imports (done); xgboost, without
    scikit-learn (``model.load_xgboost``), which ``Model.log`` imports when it loads the
    logged model to check its input example; and MLflow's map of installed packages, which
    ``Model.log`` reads to check the model's requirements (~0.5 s the first time in a
    process). A private MLflow helper: if it is gone, that is not warmed."""
    load_xgboost()
    with contextlib.suppress(Exception):
        from mlflow.utils.requirements_utils import _init_packages_to_modules_map

        _init_packages_to_modules_map()  # type: ignore[no-untyped-call]
