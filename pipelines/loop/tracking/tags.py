"""The names hilt gives things in MLflow, each defined once: the tag keys of runs and model
versions, the param keys hilt adds to a run, and the paths of the artifacts it logs.

Importing this module imports nothing else (no mlflow): the runner, the notebook steps, the
dashboards and the compliance documents read these names without paying for MLflow.
"""

from __future__ import annotations

from typing import Final

#: Every key hilt itself writes starts with this; a caller's params may not.
RESERVED_PREFIX: Final = "hilt."

# ---------------------------------------------------------------------------- run tags
#: The hilt user a run acts as (also written as MLflow's own ``mlflow.user``).
TAG_AUTHOR: Final = "hilt.author"
#: The git commit hilt ran from, and whether the checkout had uncommitted changes.
TAG_GIT_COMMIT: Final = "hilt.git_commit"
TAG_GIT_DIRTY: Final = "hilt.git_dirty"
#: ``hilt.version.<package>``: the version of hilt, xgboost, polars, ... a run used.
TAG_VERSION_PREFIX: Final = "hilt.version."
#: The kind of run: ``retrain`` or ``score``.
TAG_KIND: Final = "hilt.kind"
#: The sha256 of the papermill template, and the executed notebook's file name.
TAG_TEMPLATE_SHA256: Final = "hilt.template_sha256"
TAG_NOTEBOOK: Final = "hilt.notebook"
#: The run a reproduction reproduces (``hilt retrain --reproduce``).
TAG_REPRODUCES: Final = "hilt.reproduces"
#: The snapshot a run trained on: the audit seq it is as of, and its sha256.
TAG_SNAPSHOT_SEQ: Final = "hilt.snapshot_seq"
TAG_SNAPSHOT_SHA256: Final = "hilt.snapshot_sha256"
#: The snapshot was regenerated without erased or expired subjects: its old file name, and
#: the new file's sha256 (``none`` when no rows were left).
TAG_SNAPSHOT_REMOVED: Final = "hilt.snapshot_removed"
TAG_SNAPSHOT_REGENERATED: Final = "hilt.snapshot_regenerated_sha256"
#: The registered version a retraining run's model became.
TAG_REGISTERED_VERSION: Final = "hilt.registered_version"

#: Where a retraining run trained (``local`` or ``dask``) and, on Dask, the cluster's
#: shape and the partitions the snapshot was read in (the model's bytes depend on them).
TAG_ENGINE: Final = "hilt.engine"
TAG_DASK_WORKERS: Final = "hilt.dask.workers"
TAG_DASK_THREADS_PER_WORKER: Final = "hilt.dask.threads_per_worker"
TAG_DASK_PARTITIONS: Final = "hilt.dask.partitions"

# ------------------------------------------------------------ run and model-version tags
#: The sha256 of the model's bytes (on the run and on its registered version).
TAG_MODEL_SHA256: Final = "hilt.model_sha256"
#: Mirrors of the store's registry (``mirror.GATE_TAG``): on a run, the store's gate verdict
#: ``passed`` / ``rejected`` (the gate as the store would apply it, for a run that registered
#: nothing); on a registered version, its state there: ``pending`` (challenger), ``promoted``
#: (champion), ``rejected``, ``superseded`` or ``retired``.
TAG_GATE: Final = "hilt.gate"

# ---------------------------------------------------------------------------- params
#: The snapshot of a training run, as params (the same keys as its tags).
PARAM_SNAPSHOT_SEQ: Final = "hilt.snapshot_seq"
PARAM_SNAPSHOT_SHA256: Final = "hilt.snapshot_sha256"
#: The name of the training dataset (the snapshot file's name).
PARAM_DATASET_NAME: Final = "hilt.dataset_name"
#: Params a retraining run logs next to the training parameters.
PARAM_LABEL_NOISE: Final = "label_noise"
PARAM_AS_OF_SEQ: Final = "as_of_seq"
#: The engine and (Dask) the worker count of a retraining run, as params a reproduction
#: reads back (the threads per worker are ``nthread``).
PARAM_ENGINE: Final = "engine"
PARAM_WORKERS: Final = "workers"

# ---------------------------------------------------------------------------- dataset input
#: The full sha256 of the training snapshot (MLflow caps a dataset digest at 36 characters).
INPUT_TAG_SHA256: Final = "hilt.sha256"

# ---------------------------------------------------------------------------- artifacts
#: Where a retraining run logs its evaluation.
EVALUATION_DIR: Final = "evaluation"
#: The subgroup metrics table and the gate's verdict of a retraining run.
SUBGROUP_ARTIFACT: Final = f"{EVALUATION_DIR}/subgroup_metrics.csv"
GATE_ARTIFACT: Final = f"{EVALUATION_DIR}/gate.json"
#: Where a run's executed notebook and its HTML rendering are logged.
NOTEBOOK_DIR: Final = "notebook"
