"""MLflow: the workspace's experiment, training runs, their artifacts and the model registry.

Only retraining and scoring runs import this module (``import mlflow`` costs ~1-2 s); no other
hilt module imports mlflow. Everything goes through one explicitly configured tracking URI:

- default ``sqlite:///<workspace>/mlflow.db`` with artifacts under ``<workspace>/mlartifacts``
  (MLflow 3 would otherwise create ``./mlflow.db`` in whatever the current directory is);
- or a server URL (``configure(ws, uri="http://…")`` or ``$HILT_MLFLOW_TRACKING_URI``), whose
  artifact store the server decides. ``$MLFLOW_TRACKING_URI`` is deliberately not read: a
  URI left over from another project must not receive this workspace's runs.

Call ``configure(ws)`` (or ``start_run``, which calls it) once per process; the registry
functions then use that URI. MLflow's usage telemetry is switched off before mlflow is
imported (``MLFLOW_DISABLE_TELEMETRY``, ``DO_NOT_TRACK``): hilt makes no network calls of its
own, and MLflow's pip-requirement inference (a subprocess) is skipped by naming the
requirements.

One experiment and one registered model per use case, both named ``hilt-<use_case.name>``.
Model versions carry aliases only (``challenger``, ``champion``), never the deprecated stages.

What a training run holds (``log_training``), and what it never holds:

- params: the training parameters as given, plus ``hilt.snapshot_seq``,
  ``hilt.snapshot_sha256``, ``hilt.dataset_name``; metrics as given;
- tags: ``hilt.author`` (also ``mlflow.user``), ``hilt.git_commit``, ``hilt.git_dirty``,
  ``hilt.version.<package>`` for hilt, xgboost, polars, duckdb, mlflow, papermill and python,
  ``hilt.model_sha256``, ``hilt.snapshot_seq``, ``hilt.snapshot_sha256``;
- the dataset input (context ``training``): ``mlflow.data.from_polars`` of the snapshot frame
  with our digest. MLflow stores its name, digest, source, schema (column names and types)
  and profile; the profile of a polars dataset is ``num_rows`` and ``num_elements`` only (MLflow
  3.17, checked at run time: any other key and the dataset is logged from a zero-row frame).
  MLflow caps a dataset digest at 36 characters, so the digest is the first 32 hex digits of
  the snapshot's sha256; the full sha256 is the input tag ``hilt.sha256`` and a param;
- the model, name ``model``: a pyfunc model whose data is ``TrainedModel.save`` (model.ubj,
  the booster as UBJSON, and model.json, the sidecar), loaded by this module's
  ``_load_pyfunc`` (no pickle, no code file); the LoggedModel is created in the run's own
  experiment, so its files are under ``<workspace>/mlartifacts`` too. The xgboost flavor is
  not used: it builds ``xgboost.DMatrix(data)`` without ``enable_categorical``, so it cannot
  score our ``pl.Enum`` categoricals, and its signature inference fails on them (pandas
  "category" vs the inferred "string"). Our pyfunc takes category features as strings,
  validates their levels through ``TrainedModel.matrix`` and returns one ``score`` column;
- the model's input example is synthetic, never a real row: the middle of each numeric
  feature's training range and the first level seen in training of each category feature
  (``synthetic_input_example``), and it is checked not to equal any row of the training data.
  An input example is stored in clear text next to the model and is shown to anyone who can
  read the registry; a real row would be a data subject's record (and ``age``-like features
  are personal data);
- the subgroup metrics table, if given, as ``evaluation/subgroup_metrics.csv`` (group-level
  aggregates; small groups are the evaluation's business);
- later, the executed notebook and its rendered HTML (``log_notebook``), the HTML built
  without any script or stylesheet from a CDN.
"""

from __future__ import annotations

import os

# Before the first `import mlflow` anywhere in this process: mlflow/__init__ starts its usage
# telemetry client (a thread that fetches a config over HTTPS) unless one of these is set.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
# No tqdm bars on stderr (they would fill executed notebooks and scheduler logs).
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import contextlib
import hashlib
import importlib.metadata
import platform
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import mlflow
import mlflow.pyfunc
import polars as pl
import polars.selectors as cs
from mlflow import MlflowClient
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.polars_dataset import PolarsDataset, from_polars
from mlflow.entities import Dataset, DatasetInput, InputTag, Param, Run, RunTag
from mlflow.entities import Metric as MlflowMetric
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.telemetry.client import set_telemetry_client
from mlflow.types import ColSpec, DataType, Schema
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_USER

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import HiltError, InputError
from hilt.pipelines.loop import notebook_render
from hilt.pipelines.loop.model import TrainedModel
from hilt.pipelines.paths import PROJECT_ROOT
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

# In case mlflow was imported before this module: drop a telemetry client it may have made.
set_telemetry_client()  # type: ignore[no-untyped-call]  # (unannotated in mlflow)

#: Registry aliases.
CHALLENGER: Final = "challenger"
CHAMPION: Final = "champion"
#: The logged model's name within a run.
MODEL_NAME: Final = "model"
#: The output column of the logged pyfunc model.
SCORE_COLUMN: Final = "score"
#: Environment variable naming a tracking URI (a server URL) for every hilt process.
URI_ENV: Final = "HILT_MLFLOW_TRACKING_URI"
#: Workspace-relative names of the default store and artifact root.
DB_FILE: Final = "mlflow.db"
ARTIFACTS_DIR: Final = "mlartifacts"
#: MLflow caps dataset digests at 36 characters; we use this many hex digits of the sha256.
DATASET_DIGEST_LENGTH: Final = 32

#: Tag and param keys.
TAG_AUTHOR: Final = "hilt.author"
TAG_GIT_COMMIT: Final = "hilt.git_commit"
TAG_GIT_DIRTY: Final = "hilt.git_dirty"
TAG_VERSION_PREFIX: Final = "hilt.version."
TAG_MODEL_SHA256: Final = "hilt.model_sha256"
TAG_SNAPSHOT_SEQ: Final = "hilt.snapshot_seq"
TAG_SNAPSHOT_SHA256: Final = "hilt.snapshot_sha256"
TAG_GATE: Final = "hilt.gate"
PARAM_SNAPSHOT_SEQ: Final = "hilt.snapshot_seq"
PARAM_SNAPSHOT_SHA256: Final = "hilt.snapshot_sha256"
PARAM_DATASET_NAME: Final = "hilt.dataset_name"
INPUT_TAG_SHA256: Final = "hilt.sha256"
#: Distributions whose versions every run records (tag hilt.version.<key>).
PACKAGES: Final = {
    "hilt": "hilt-workbench",
    "xgboost": "xgboost",
    "polars": "polars",
    "duckdb": "duckdb",
    "mlflow": "mlflow",
    "papermill": "papermill",
}
#: Distributions the logged pyfunc model needs (its requirements.txt).
MODEL_REQUIREMENTS: Final = ("hilt-workbench", "xgboost", "polars", "pyarrow", "pandas")

_SHA256 = re.compile(r"[0-9a-f]{64}")
_DATA_DIR = "hilt_model"


class TrackingError(HiltError):
    """MLflow refused or failed an operation (the message is MLflow's, which names runs,
    versions and keys, never data values), or hilt was asked for something the registry does
    not allow (rejecting the champion, registering a failed run)."""

    status_code = 500
    kind = "tracking"


@contextlib.contextmanager
def _mlflow_errors(action: str) -> Iterator[None]:
    try:
        yield
    except MlflowException as e:
        raise TrackingError(f"MLflow: {action}: {e.message}") from e


# ----------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class _Configured:
    uri: str
    client: MlflowClient
    experiment_id: str
    experiment_name: str


_state: _Configured | None = None


def tracking_uri(ws: Workspace, override: str | None = None) -> str:
    """The tracking (and registry) URI: ``override``, else ``$HILT_MLFLOW_TRACKING_URI``,
    else the workspace's sqlite file ``sqlite:///<ws.root>/mlflow.db``."""
    chosen = override or os.environ.get(URI_ENV)
    if chosen:
        return chosen
    return f"sqlite:///{(ws.root / DB_FILE).as_posix()}"


def artifact_location(ws: Workspace, uri: str) -> str | None:
    """Where the experiment's artifacts go: ``<ws.root>/mlartifacts`` for a local store, None
    (the server's own artifact store) for an http(s) tracking server."""
    if uri.startswith(("http://", "https://")):
        return None
    return (ws.root / ARTIFACTS_DIR).as_uri()


def experiment_name(settings: Settings) -> str:
    """``hilt-<use_case.name>``."""
    return f"hilt-{settings.use_case.name}"


def registered_model_name(settings: Settings) -> str:
    """``hilt-<use_case.name>``; characters other than letters, digits, '.', '_' and '-'
    become '-' ('/' and ':' are not allowed by MLflow, quotes would break search filters)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"hilt-{settings.use_case.name}")


def configure(
    ws: Workspace, uri: str | None = None, settings: Settings | None = None
) -> MlflowClient:
    """Point MLflow at the workspace's store and make sure the use case's experiment exists.

    Sets the tracking and the registry URI explicitly (process-wide, as MLflow's fluent API
    and model logging read them), creates the experiment ``hilt-<use_case>`` with its artifacts
    under the workspace if it does not exist yet, makes it the process's active experiment
    (``mlflow.set_experiment``; like the URI, inherited by child processes through
    ``MLFLOW_EXPERIMENT_ID``), and returns a client bound to that URI.
    Idempotent; safe when two processes create the experiment at once. ``settings`` defaults
    to the workspace's hilt.toml.
    """
    global _state
    settings = settings or ws.settings()
    chosen = tracking_uri(ws, uri)
    if chosen.startswith("sqlite:"):
        ws.root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(chosen)
    mlflow.set_registry_uri(chosen)
    client = MlflowClient(tracking_uri=chosen, registry_uri=chosen)
    name = experiment_name(settings)
    with _mlflow_errors(f"cannot open the experiment {name!r} at {chosen}"):
        exp = client.get_experiment_by_name(name)
        if exp is None:
            try:
                experiment_id = client.create_experiment(
                    name, artifact_location=artifact_location(ws, chosen)
                )
            except MlflowException:
                # Created meanwhile by another process? Then use it; else re-raise.
                exp = client.get_experiment_by_name(name)
                if exp is None:
                    raise
                experiment_id = exp.experiment_id
        else:
            experiment_id = exp.experiment_id
        # The process's active experiment: whatever MLflow creates without being told where
        # (a LoggedModel, a run of a data scientist's own) goes to the workspace's experiment,
        # not to MLflow's Default one (id 0), whose artifacts would land in ./mlruns.
        mlflow.set_experiment(experiment_id=experiment_id)
    _state = _Configured(
        uri=chosen, client=client, experiment_id=experiment_id, experiment_name=name
    )
    return client


def _configured() -> _Configured:
    if _state is None:
        raise TrackingError(
            "MLflow is not configured in this process: call "
            "hilt.pipelines.loop.tracking.configure(workspace) first"
        )
    # Someone may have pointed MLflow elsewhere since; model logging reads the global URI.
    if mlflow.get_tracking_uri() != _state.uri:
        mlflow.set_tracking_uri(_state.uri)
        mlflow.set_registry_uri(_state.uri)
    return _state


# ----------------------------------------------------------------------- provenance
def git_commit() -> tuple[str, bool | None]:
    """(commit, dirty) of the git checkout hilt runs from; ("unknown", None) when hilt is not
    running from a git checkout of its own (an installed wheel, no git)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
            check=True,
        ).stdout.split()
        # Only hilt's own checkout counts, not a repository that happens to contain a venv.
        if len(out) != 2 or Path(out[0]).resolve() != PROJECT_ROOT:
            return "unknown", None
        status = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return out[1], bool(status.strip())


def package_versions() -> dict[str, str]:
    """Versions of hilt, xgboost, polars, duckdb, mlflow, papermill and python."""
    versions: dict[str, str] = {}
    for key, dist in PACKAGES.items():
        try:
            versions[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = "not installed"
    versions["python"] = platform.python_version()
    return versions


def provenance_tags(author: str) -> dict[str, str]:
    """The tags every hilt run carries: author, git commit, package versions."""
    if not author.strip():
        raise InputError("a run needs an author (the hilt user it runs as)")
    commit, dirty = git_commit()
    tags = {
        TAG_AUTHOR: author,
        MLFLOW_USER: author,
        TAG_GIT_COMMIT: commit,
        TAG_GIT_DIRTY: "unknown" if dirty is None else str(dirty).lower(),
    }
    tags.update({TAG_VERSION_PREFIX + k: v for k, v in package_versions().items()})
    return tags


# ----------------------------------------------------------------------- runs
def create_run(
    ws: Workspace,
    settings: Settings,
    *,
    run_name: str,
    author: str,
    tags: Mapping[str, str] | None = None,
    uri: str | None = None,
) -> str:
    """Create a RUNNING run with the provenance tags and return its id, without making it
    the process's active run. For a runner that hands the id to a notebook (which resumes it
    with ``start_run(..., run_id=...)``) and can still ``mark_failed`` it if the kernel dies."""
    client = configure(ws, uri, settings)
    state = _configured()
    all_tags = {**provenance_tags(author), **dict(tags or {})}
    with _mlflow_errors("cannot create a run"):
        run = client.create_run(state.experiment_id, tags=all_tags, run_name=run_name)
    return str(run.info.run_id)


def start_run(
    ws: Workspace,
    settings: Settings,
    *,
    run_name: str,
    author: str,
    tags: Mapping[str, str] | None = None,
    uri: str | None = None,
    run_id: str | None = None,
) -> mlflow.ActiveRun:
    """Configure MLflow for the workspace and start (or, given ``run_id``, resume) the active
    run, tagged with ``hilt.author``, the git commit and the package versions.

    Use it as a context manager (the run ends FINISHED, or FAILED on an exception) or keep the
    returned run and end it with ``finish_run`` / ``mark_failed`` (a notebook's cells)."""
    configure(ws, uri, settings)
    state = _configured()
    all_tags = {**provenance_tags(author), **dict(tags or {})}
    with _mlflow_errors("cannot start the run"):
        if run_id is not None:
            return mlflow.start_run(run_id=run_id, tags=dict(tags or {}))
        return mlflow.start_run(experiment_id=state.experiment_id, run_name=run_name, tags=all_tags)


def _run_id(run: Run | str) -> str:
    return run if isinstance(run, str) else str(run.info.run_id)


def finish_run(run: Run | str) -> None:
    """End a run as FINISHED (and pop it if it is this process's active run)."""
    run_id = _run_id(run)
    state = _configured()
    active = mlflow.active_run()
    with _mlflow_errors(f"cannot finish run {run_id}"):
        if active is not None and active.info.run_id == run_id:
            mlflow.end_run("FINISHED")
        else:
            state.client.set_terminated(run_id, status="FINISHED")


def mark_failed(run_id: str) -> None:
    """Set a run's status to FAILED (a failed notebook, a crashed kernel)."""
    state = _configured()
    active = mlflow.active_run()
    with _mlflow_errors(f"cannot mark run {run_id} failed"):
        if active is not None and active.info.run_id == run_id:
            mlflow.end_run("FAILED")
        else:
            state.client.set_terminated(run_id, status="FAILED")


# ----------------------------------------------------------------------- the model
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


_COLSPEC_TYPES: Final = {
    "category": DataType.string,
    "bool": DataType.boolean,
    "numeric": DataType.double,
}


def model_signature(model: TrainedModel) -> ModelSignature:
    """Inputs: the model's features in order (category → string, bool → boolean, int/float →
    double), all optional because a missing value is a valid input; output: ``score``."""
    inputs = Schema(
        [ColSpec(_COLSPEC_TYPES[model.kinds[f]], f, required=False) for f in model.features]
    )
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(DataType.double, SCORE_COLUMN)]))


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


def _equals_a_row(model: TrainedModel, example: pl.DataFrame, rows: pl.DataFrame) -> bool:
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
    if avoid is None or not _equals_a_row(model, example, avoid):
        return example
    nudged = {
        f: (v + 0.37 if model.kinds[f] == "numeric" and v is not None else v)
        for f, v in row.items()
    }
    example = _example_frame(model, nudged)
    if not _equals_a_row(model, example, avoid):
        return example
    return _example_frame(model, dict.fromkeys(model.features))


def _model_requirements() -> list[str]:
    reqs = []
    for dist in MODEL_REQUIREMENTS:
        try:
            reqs.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            reqs.append(dist)
    return reqs


# ----------------------------------------------------------------------- training runs
def _friendly_for_schema(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast the dtypes MLflow maps only approximately (and warns about through the root
    logger) to their exact counterparts: Enum/Categorical → String, small unsigned → signed,
    Date → Datetime. Same column names, same row count."""
    return frame.with_columns(
        (cs.enum() | cs.categorical()).cast(pl.String),
        cs.by_dtype(pl.UInt8, pl.UInt16).cast(pl.Int32),
        cs.by_dtype(pl.UInt32).cast(pl.Int64),
        cs.date().cast(pl.Datetime("us")),
    )


_PROFILE_KEYS: Final = frozenset({"num_rows", "num_elements"})


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
    friendly = _friendly_for_schema(frame)
    digest = sha256[:DATASET_DIGEST_LENGTH]
    dataset = from_polars(friendly, source=src, name=name, digest=digest)
    if not set(dataset.profile) <= _PROFILE_KEYS:
        dataset = from_polars(friendly.clear(), source=src, name=name, digest=digest)
    return dataset


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


def _metric_value(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"metric {name!r} is not a number") from None
    return out


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
    docstring for everything that is logged.
    """
    import time

    started = time.perf_counter()
    run_id = _run_id(run)
    if not _SHA256.fullmatch(dataset_digest):
        raise InputError("dataset_digest must be the snapshot's sha256 (64 lowercase hex digits)")
    if isinstance(snapshot_seq, bool) or not isinstance(snapshot_seq, int) or snapshot_seq < 0:
        raise InputError("snapshot_seq must be a non-negative integer")
    reserved = sorted(k for k in params if k.startswith("hilt."))
    if reserved:
        raise InputError(f"params {reserved}: the prefix 'hilt.' is reserved")
    metric_values = {k: _metric_value(k, v) for k, v in metrics.items()}

    if model_input_example is None:
        example = synthetic_input_example(model, dataset_frame)
    else:
        missing = [f for f in model.features if f not in model_input_example.columns]
        if model_input_example.height == 0 or missing:
            raise InputError(
                f"the input example needs at least one row and the features {model.features}"
            )
        example = model_input_example.select(model.features).with_columns(
            (cs.enum() | cs.categorical()).cast(pl.String)
        )
        if _equals_a_row(model, example, dataset_frame):
            raise InputError(
                "the input example equals a row of the training data; pass a synthetic one "
                "(or none: a synthetic one is made)"
            )
    client = _configured().client
    sha = model.model_sha256()
    now = int(time.time() * 1000)
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
    dataset = training_dataset(
        dataset_frame,
        name=dataset_name,
        sha256=dataset_digest,
        source=dataset_source,
        snapshot_seq=snapshot_seq,
    )
    d = dataset.to_dict()
    entity = Dataset(
        name=d["name"],
        digest=d["digest"],
        source_type=d["source_type"],
        source=d["source"],
        schema=d["schema"],
        profile=d["profile"],
    )
    with _mlflow_errors(f"cannot log the training of run {run_id}"):
        client.log_batch(
            run_id,
            metrics=[MlflowMetric(k, v, now, 0) for k, v in metric_values.items()],
            params=[Param(k, v) for k, v in all_params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        client.log_inputs(
            run_id,
            datasets=[
                DatasetInput(
                    entity,
                    tags=[
                        InputTag(MLFLOW_DATASET_CONTEXT, "training"),
                        InputTag(INPUT_TAG_SHA256, dataset_digest),
                    ],
                )
            ],
        )
        with tempfile.TemporaryDirectory(prefix="hilt-mlflow-") as tmp:
            if subgroup_table is not None:
                csv = Path(tmp) / "subgroup_metrics.csv"
                subgroup_table.write_csv(csv)
                client.log_artifact(run_id, str(csv), artifact_path="evaluation")
            data = model.save(Path(tmp) / _DATA_DIR)
            # The LoggedModel is created here, in the run's own experiment: left to
            # Model.log, it goes to the process's active experiment, MLflow's Default (id 0,
            # artifacts in ./mlruns) unless something set one.
            logged_model = client.create_logged_model(
                experiment_id=client.get_run(run_id).info.experiment_id,
                name=MODEL_NAME,
                source_run_id=run_id,
                tags={TAG_MODEL_SHA256: sha},
                params=all_params,
            )
            info = mlflow.models.Model.log(
                artifact_path=None,
                name=MODEL_NAME,
                flavor=mlflow.pyfunc,
                run_id=run_id,
                model_id=logged_model.model_id,
                loader_module=__name__,
                data_path=str(data),
                signature=model_signature(model),
                input_example=example.to_pandas(),
                pip_requirements=_model_requirements(),
                metadata={"hilt_model_sha256": sha},
            )
    return LoggedTraining(
        run_id=run_id,
        model_id=str(info.model_id),
        model_uri=str(info.model_uri),
        model_sha256=sha,
        dataset_digest=dataset.digest,
        input_example=example,
        seconds=time.perf_counter() - started,
    )


# ----------------------------------------------------------------------- notebooks
def remote_resources(html: str) -> list[str]:
    """Snippets of ``html`` that would load something from another host when opened
    (see ``notebook_render.remote_resources``)."""
    return notebook_render.remote_resources(html)


def notebook_html(ipynb_path: str | Path) -> str:
    """The executed notebook as one self-contained HTML page (``notebook_render``);
    TrackingError if anything remote is left."""
    try:
        return notebook_render.notebook_html(ipynb_path)
    except notebook_render.RemoteContentError as e:
        raise TrackingError(str(e)) from None


def log_notebook(run_id: str, ipynb_path: str | Path) -> tuple[str, str]:
    """Log an executed notebook and its HTML rendering (``notebook_html``) to a run, under
    ``notebook/``; the run may be finished already. Returns the two artifact paths."""
    state = _configured()
    src = Path(ipynb_path)
    html = notebook_html(src)
    with tempfile.TemporaryDirectory(prefix="hilt-mlflow-") as tmp:
        page = Path(tmp) / f"{src.stem}.html"
        page.write_text(html, encoding="utf-8")
        with _mlflow_errors(f"cannot log the notebook of run {run_id}"):
            state.client.log_artifact(run_id, str(src), artifact_path="notebook")
            state.client.log_artifact(run_id, str(page), artifact_path="notebook")
    return f"notebook/{src.name}", f"notebook/{page.name}"


# ----------------------------------------------------------------------- run records
@dataclass(frozen=True)
class RunRecord:
    """A run as ``hilt runs list`` and ``hilt retrain --reproduce`` need it."""

    run_id: str
    run_name: str
    status: str
    start_time: datetime
    end_time: datetime | None
    author: str | None
    #: The params given to log_training (text, as MLflow keeps them), without hilt.*.
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    snapshot_seq: int | None
    snapshot_sha256: str | None
    model_sha256: str | None
    git_commit: str | None
    #: Registered versions made from this run, and the aliases on them.
    versions: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


def _when(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _record(
    run: Run, versions: list[Any], alias_map: Mapping[tuple[str, str], list[str]]
) -> RunRecord:
    params = dict(run.data.params)
    tags = dict(run.data.tags)
    seq = params.get(PARAM_SNAPSHOT_SEQ) or tags.get(TAG_SNAPSHOT_SEQ)
    mine = [v for v in versions if v.run_id == run.info.run_id]
    on_mine = sorted(a for v in mine for a in alias_map.get((v.name, str(v.version)), []))
    start = _when(run.info.start_time)
    return RunRecord(
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        status=run.info.status,
        start_time=start or datetime.fromtimestamp(0, tz=UTC),
        end_time=_when(run.info.end_time),
        author=tags.get(TAG_AUTHOR),
        params={k: v for k, v in params.items() if not k.startswith("hilt.")},
        metrics=dict(run.data.metrics),
        tags=tags,
        snapshot_seq=int(seq) if seq is not None and seq.isdigit() else None,
        snapshot_sha256=params.get(PARAM_SNAPSHOT_SHA256) or tags.get(TAG_SNAPSHOT_SHA256),
        model_sha256=tags.get(TAG_MODEL_SHA256),
        git_commit=tags.get(TAG_GIT_COMMIT),
        versions=tuple(str(v.version) for v in sorted(mine, key=lambda v: int(v.version))),
        aliases=tuple(on_mine),
    )


def _versions_of(
    client: MlflowClient, filter_string: str
) -> tuple[list[Any], dict[tuple[str, str], list[str]]]:
    """Model versions matching ``filter_string`` and {(name, version): aliases} of their
    registered models (search results do not carry aliases in every store)."""
    with _mlflow_errors("cannot search model versions"):
        versions = list(client.search_model_versions(filter_string))
        alias_map: dict[tuple[str, str], list[str]] = {}
        for name in sorted({str(v.name) for v in versions}):
            for alias, version in client.get_registered_model(name).aliases.items():
                alias_map.setdefault((name, str(version)), []).append(str(alias))
    return versions, alias_map


def run_info(run_id: str) -> RunRecord:
    """Params, metrics, tags, snapshot seq and sha256, model sha256, author, status, times and
    registered versions of one run."""
    state = _configured()
    with _mlflow_errors(f"cannot read run {run_id}"):
        run = state.client.get_run(run_id)
    return _record(run, *_versions_of(state.client, f"run_id = '{run_id}'"))


def list_runs(settings: Settings, max_results: int = 100) -> list[RunRecord]:
    """The use case's runs, newest first."""
    state = _configured()
    with _mlflow_errors("cannot list runs"):
        runs = state.client.search_runs(
            [state.experiment_id],
            order_by=["attributes.start_time DESC"],
            max_results=max_results,
        )
    versions, alias_map = _versions_of(state.client, f"name = '{registered_model_name(settings)}'")
    return [_record(r, versions, alias_map) for r in runs]


# ----------------------------------------------------------------------- registry
def _not_found(e: MlflowException) -> bool:
    return e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def aliases(settings: Settings) -> dict[str, str]:
    """{alias: version} of the use case's registered model ({} before the first version)."""
    state = _configured()
    name = registered_model_name(settings)
    try:
        rm = state.client.get_registered_model(name)
    except MlflowException as e:
        if _not_found(e):
            return {}
        raise TrackingError(f"MLflow: cannot read {name!r}: {e.message}") from e
    return {str(k): str(v) for k, v in rm.aliases.items()}


def champion_version(settings: Settings) -> str | None:
    """The version the ``champion`` alias points to, or None."""
    return aliases(settings).get(CHAMPION)


def challenger_version(settings: Settings) -> str | None:
    """The version the ``challenger`` alias points to, or None."""
    return aliases(settings).get(CHALLENGER)


def _logged_model_id(client: MlflowClient, run_id: str) -> str:
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs is not None else []
    ids = [o.model_id for o in sorted(outputs, key=lambda o: o.step)]
    named = [i for i in ids if client.get_logged_model(i).name == MODEL_NAME]
    if not named:
        raise TrackingError(f"run {run_id} has no logged model {MODEL_NAME!r}")
    return str(named[-1])


def register_challenger(settings: Settings, run_id: str) -> str:
    """Register the run's model as a new version of ``hilt-<use_case>`` (creating the
    registered model if needed) and point the ``challenger`` alias at it. Registering the same
    run again reuses its version. A FAILED or KILLED run is refused. Returns the version."""
    state = _configured()
    client = state.client
    name = registered_model_name(settings)
    with _mlflow_errors(f"cannot register run {run_id} as {name!r}"):
        run = client.get_run(run_id)
        if run.info.status in ("FAILED", "KILLED"):
            raise TrackingError(f"run {run_id} is {run.info.status}; it cannot be a challenger")
        sha = run.data.tags.get(TAG_MODEL_SHA256)
        if not sha:
            raise TrackingError(f"run {run_id} has no logged model (no {TAG_MODEL_SHA256} tag)")
        try:
            client.create_registered_model(
                name, description=f"hilt model of the use case {settings.use_case.name!r}"
            )
        except MlflowException as e:
            if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        existing = [v for v in client.search_model_versions(f"run_id = '{run_id}'")]
        existing = [v for v in existing if v.name == name]
        if existing:
            version = str(max(int(v.version) for v in existing))
        else:
            model_id = _logged_model_id(client, run_id)
            mv = client.create_model_version(
                name,
                source=f"models:/{model_id}",
                run_id=run_id,
                tags={TAG_MODEL_SHA256: sha, TAG_GATE: "pending"},
                model_id=model_id,
            )
            version = str(mv.version)
        client.set_registered_model_alias(name, CHALLENGER, version)
    return version


def promote_to_champion(settings: Settings, version: str | int) -> str | None:
    """Point ``champion`` at ``version`` (tagged ``hilt.gate=promoted``); drop ``challenger``
    if it pointed there. Returns the previous champion version (None if there was none). The
    gate and the approval are the caller's: this only moves the aliases."""
    state = _configured()
    client = state.client
    name = registered_model_name(settings)
    v = str(version)
    with _mlflow_errors(f"cannot promote version {v} of {name!r}"):
        client.get_model_version(name, v)  # exists?
        before = aliases(settings)
        client.set_registered_model_alias(name, CHAMPION, v)
        client.set_model_version_tag(name, v, TAG_GATE, "promoted")
        if before.get(CHALLENGER) == v:
            client.delete_registered_model_alias(name, CHALLENGER)
    return before.get(CHAMPION)


def reject_challenger(settings: Settings, version: str | int) -> None:
    """Tag ``version`` ``hilt.gate=rejected`` and drop the ``challenger`` alias if it points
    there; the champion alias is not touched. Rejecting the champion is a TrackingError."""
    state = _configured()
    client = state.client
    name = registered_model_name(settings)
    v = str(version)
    with _mlflow_errors(f"cannot reject version {v} of {name!r}"):
        client.get_model_version(name, v)
        current = aliases(settings)
        if current.get(CHAMPION) == v:
            raise TrackingError(f"version {v} of {name!r} is the champion; it cannot be rejected")
        client.set_model_version_tag(name, v, TAG_GATE, "rejected")
        if current.get(CHALLENGER) == v:
            client.delete_registered_model_alias(name, CHALLENGER)


def set_challenger(settings: Settings, version: str | int) -> None:
    """Point ``challenger`` back at an existing ``version`` (e.g. the pending challenger that
    a later, rejected run displaced); the champion alias is not touched."""
    state = _configured()
    name = registered_model_name(settings)
    v = str(version)
    with _mlflow_errors(f"cannot make version {v} of {name!r} the challenger"):
        state.client.get_model_version(name, v)
        if aliases(settings).get(CHAMPION) == v:
            raise TrackingError(f"version {v} of {name!r} is the champion")
        state.client.set_registered_model_alias(name, CHALLENGER, v)


def version_run_id(settings: Settings, version: str | int) -> str | None:
    """The run a registered version was made from (None if the version names no run)."""
    state = _configured()
    name = registered_model_name(settings)
    with _mlflow_errors(f"cannot read version {version} of {name!r}"):
        mv = state.client.get_model_version(name, str(version))
    return str(mv.run_id) if mv.run_id else None


def set_run_tags(run_id: str, tags: Mapping[str, str]) -> None:
    """Set tags on a run (e.g. ``hilt.gate``, ``hilt.kind``); the run may be finished."""
    state = _configured()
    with _mlflow_errors(f"cannot tag run {run_id}"):
        for key, value in tags.items():
            state.client.set_tag(run_id, key, str(value))


def log_run_values(
    run_id: str,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> None:
    """Log params and metrics of a run that has no training (a scoring run)."""
    import time

    state = _configured()
    now = int(time.time() * 1000)
    with _mlflow_errors(f"cannot log to run {run_id}"):
        state.client.log_batch(
            run_id,
            metrics=[
                MlflowMetric(k, _metric_value(k, v), now, 0) for k, v in (metrics or {}).items()
            ],
            params=[Param(str(k), str(v)) for k, v in (params or {}).items()],
        )


def log_run_dict(run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
    """Log a JSON document (e.g. the gate's verdict) as an artifact of a run."""
    state = _configured()
    with _mlflow_errors(f"cannot log {artifact_file} to run {run_id}"):
        state.client.log_dict(run_id, dict(data), artifact_file)


def load_model_version(settings: Settings, version: str | int) -> TrainedModel:
    """Download a registered version's model and load it (``TrainedModel.load`` checks the
    booster against its sidecar; the sha256 is also checked against the version's tag)."""
    state = _configured()
    name = registered_model_name(settings)
    v = str(version)
    with (
        _mlflow_errors(f"cannot load version {v} of {name!r}"),
        tempfile.TemporaryDirectory(prefix="hilt-mlflow-") as tmp,
    ):
        mv = state.client.get_model_version(name, v)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{v}",
            dst_path=tmp,
            tracking_uri=state.uri,
            registry_uri=state.uri,
        )
        model = TrainedModel.load(Path(local) / "data" / _DATA_DIR)
    expected = (mv.tags or {}).get(TAG_MODEL_SHA256)
    if expected and expected != model.model_sha256():
        raise TrackingError(f"version {v} of {name!r}: the model's sha256 does not match its tag")
    return model


def file_sha256(path: str | Path) -> str:
    """sha256 of a file (a snapshot), read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_run_artifact(run_id: str, artifact_path: str, dst_dir: str | Path) -> Path | None:
    """Download one artifact of a run (e.g. ``evaluation/subgroup_metrics.csv``) into
    ``dst_dir``; None if the run has no such artifact."""
    state = _configured()
    folder = artifact_path.rpartition("/")[0]
    with _mlflow_errors(f"cannot read the artifacts of run {run_id}"):
        listed = {a.path for a in state.client.list_artifacts(run_id, folder or None)}
        if artifact_path not in listed:
            return None
        local = state.client.download_artifacts(run_id, artifact_path, str(dst_dir))
    return Path(local)


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "HiltPyfuncModel",
    "LoggedTraining",
    "RunRecord",
    "TrackingError",
    "aliases",
    "challenger_version",
    "champion_version",
    "configure",
    "create_run",
    "download_run_artifact",
    "file_sha256",
    "finish_run",
    "list_runs",
    "load_model_version",
    "log_notebook",
    "log_run_dict",
    "log_run_values",
    "log_training",
    "mark_failed",
    "notebook_html",
    "promote_to_champion",
    "register_challenger",
    "registered_model_name",
    "remote_resources",
    "run_info",
    "set_challenger",
    "set_run_tags",
    "start_run",
    "synthetic_input_example",
    "tracking_uri",
    "version_run_id",
]


def set_version_gate(settings: Settings, version: str | int, value: str) -> None:
    """Set the ``hilt.gate`` tag of a registered version (e.g. to undo a rejection whose
    audit event could not be written)."""
    state = _configured()
    name = registered_model_name(settings)
    with _mlflow_errors(f"cannot tag version {version} of {name!r}"):
        state.client.set_model_version_tag(name, str(version), TAG_GATE, value)


def version_gate(settings: Settings, version: str | int) -> str | None:
    """The ``hilt.gate`` tag of a registered version."""
    state = _configured()
    name = registered_model_name(settings)
    with _mlflow_errors(f"cannot read version {version} of {name!r}"):
        mv = state.client.get_model_version(name, str(version))
    tag = mv.tags.get(TAG_GATE)
    return str(tag) if tag is not None else None


def run_artifact_text(run_id: str, artifact_path: str) -> str | None:
    """A run's text artifact (e.g. ``evaluation/gate.json``), or None when it has none."""
    state = _configured()
    with tempfile.TemporaryDirectory(prefix="hilt-mlflow-") as tmp:
        try:
            local = state.client.download_artifacts(run_id, artifact_path, tmp)
        except (MlflowException, OSError):
            return None
        return Path(local).read_text(encoding="utf-8")


def run_subgroups(run_id: str) -> pl.DataFrame | None:
    """The subgroup metrics table a retraining run logged (``evaluation/``), or None."""
    import io

    text = run_artifact_text(run_id, "evaluation/subgroup_metrics.csv")
    if text is None:
        return None
    return pl.read_csv(io.StringIO(text), infer_schema_length=None)
