"""XGBoost on a Dask cluster: the training frame read in partitions by the workers, never
collected on the client (the notebook's kernel).

The other module that imports xgboost (next to ``hilt.pipelines.loop.model``), and the only
one that imports dask and distributed, each inside the functions that need them: importing
this module costs nothing, so ``engine = "local"`` and the dashboards never load dask.

A training on Dask gives the same ``TrainedModel`` as ``model.fit`` (the booster, the feature
spec of hilt.toml, the training ranges, the counts), so evaluation, MLflow, the gate and the
store's registry are those of a local training. What the workers need: the hilt package
(the same version), and the snapshot file at the same path (the workspace's snapshots folder
on a shared file system; a ``LocalCluster`` sees it).

Reproducibility: the model's bytes depend on the cluster's shape (workers, threads per
worker: ``nthread``), the partitioning of the snapshot file (its row groups) and the seed;
``ClusterShape`` is recorded with the run and a reproduction refuses another shape. It is
not the local model's bytes (XGBoost's histograms are built per worker and summed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.features import (
    FeatureKind,
    TrainingRange,
    feature_spec,
    training_frame,
)
from hilt.pipelines.loop.model import TrainedModel, TrainParams, load_xgboost

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

    #: The Dask client, for modules that may not import distributed themselves.
    DaskClient: TypeAlias = Client

#: Seconds to wait for the scheduler before a run is refused.
CONNECT_TIMEOUT = 10.0
#: The label column of the encoded partitions (not a feature name hilt.toml may use).
_LABEL = "__hilt_label__"
#: XGBoost's feature type per kind, as ``model.fit`` on a polars matrix records them.
_XGB_TYPES: dict[FeatureKind, str] = {"category": "c", "numeric": "float", "bool": "int"}


class ClusterError(InputError):
    """The Dask cluster cannot be reached, or has another shape than the run asks for."""


@dataclass(frozen=True)
class ClusterShape:
    """What decides a Dask training's bytes besides the data and the parameters."""

    workers: int
    threads_per_worker: int

    def describe(self) -> str:
        return f"{self.workers} workers x {self.threads_per_worker} threads"


def connect(address: str) -> Client:
    """A client of the scheduler at ``address``; ClusterError (one line) when unreachable."""
    import socket

    from distributed import Client

    host, _, port = address.removeprefix("tcp://").rpartition(":")
    try:
        # A closed port is refused at once; distributed would retry until its timeout.
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise ClusterError(
            f"no Dask scheduler at {address} ({type(e).__name__}); start one or fix "
            "[training] scheduler / -p scheduler"
        ) from None


def shape_of(client: Client) -> ClusterShape:
    """The cluster's workers and threads per worker; ClusterError when it has no worker
    or its workers have different thread counts (one ``nthread`` must fit them all)."""
    workers: dict[str, Any] = client.scheduler_info(n_workers=-1)["workers"]
    threads = {int(w["nthreads"]) for w in workers.values()}
    if not workers:
        raise ClusterError("the Dask cluster has no workers")
    if len(threads) != 1:
        raise ClusterError(
            f"the Dask cluster's workers have different thread counts {sorted(threads)}; "
            "a training needs one nthread for every worker"
        )
    return ClusterShape(workers=len(workers), threads_per_worker=threads.pop())


def probe(address: str) -> ClusterShape:
    """Connect, read the cluster's shape, disconnect (the runner, before anything is
    written)."""
    client = connect(address)
    try:
        return shape_of(client)
    finally:
        client.close()


def require_shape(shape: ClusterShape, workers: int, nthread: int) -> None:
    """ClusterError unless the cluster has ``workers`` workers (0: any) of ``nthread``
    threads (0: any)."""
    if (workers and workers != shape.workers) or (nthread and nthread != shape.threads_per_worker):
        want = f"{workers or 'any'} workers x {nthread or 'any'} threads"
        raise ClusterError(
            f"the Dask cluster has {shape.describe()}; this run needs {want} (a Dask model's "
            "bytes depend on the cluster's shape): nothing ran"
        )


# ---------------------------------------------------------------------------- training
def _encode_partition(part: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """One partition of the snapshot → its training rows as the model takes them (the
    same ``training_frame`` as a local training), with the label as a column. Bool
    features are float64 here (a partition with a null would make Int8 float64 anyway);
    XGBoost is told they are ``int``, as locally."""
    frame = pl.from_pandas(part).filter(pl.col("split") == "train")
    X, y = training_frame(frame, settings, label_column="label")
    bools = [name for name, dtype in X.schema.items() if dtype == pl.Int8]
    out = X.with_columns(pl.col(bools).cast(pl.Float64)).to_pandas()
    out[_LABEL] = y.to_numpy()
    return out


def _summarise_partition(
    part: pd.DataFrame, numeric: list[str], categories: list[str]
) -> pd.DataFrame:
    """One row: the partition's rows, positives, per numeric / bool feature its min and max
    (NaN: none), per category feature the levels seen (a JSON list)."""
    import pandas as pd

    row: dict[str, Any] = {
        "rows": len(part),
        "positives": float(part[_LABEL].sum()) if len(part) else 0.0,
    }
    for name in numeric:
        values = part[name].astype("float64")
        row[f"min:{name}"] = float(values.min()) if values.notna().any() else math.nan
        row[f"max:{name}"] = float(values.max()) if values.notna().any() else math.nan
    for name in categories:
        row[f"levels:{name}"] = json.dumps(sorted(str(v) for v in part[name].dropna().unique()))
    return pd.DataFrame([row]).astype({"rows": "int64", "positives": "float64"})


@dataclass(frozen=True)
class DaskTraining:
    """A model trained on the cluster, and how the work was split."""

    model: TrainedModel
    shape: ClusterShape
    partitions: int


def fit_dask(
    client: Client, snapshot: Path, settings: Settings, params: TrainParams
) -> DaskTraining:
    """Train on the training rows of the snapshot file at ``snapshot`` (read by the
    workers, one partition per row group) with ``xgboost.dask``. Only reductions come back
    to the client: rows, positives, per-feature ranges and levels seen, and the booster.
    ``params.nthread`` must be the workers' thread count (ClusterError otherwise)."""
    import dask.dataframe as dd

    load_xgboost()
    import xgboost as xgb
    from xgboost import dask as dxgb

    shape = shape_of(client)
    require_shape(shape, 0, params.nthread)
    features, kinds, levels = feature_spec(settings)
    columns = [*dict.fromkeys([*features, "label", "split"])]
    raw = dd.read_parquet(str(snapshot), columns=columns, split_row_groups=True)
    empty = raw._meta
    meta = _encode_partition(empty, settings)
    encoded = raw.map_partitions(_encode_partition, settings, meta=meta)
    numeric = [f for f in features if kinds[f] != "category"]
    categories = [f for f in features if kinds[f] == "category"]
    # One small row per partition comes back (counts, ranges, levels seen), never a row of
    # data; the rows are read again for the matrix (reading costs little next to training).
    summary_meta = _summarise_partition(meta, numeric, categories)
    parts = encoded.map_partitions(_summarise_partition, numeric, categories, meta=summary_meta)
    with client.as_current():
        summary = parts.compute()
    X = encoded[features]
    y = encoded[_LABEL]
    rows, positives = int(summary["rows"].sum()), int(summary["positives"].sum())
    if rows == 0:
        raise InputError("no labelled rows to train on")
    if positives in (0, rows):
        raise InputError("the training rows hold only one class; both are needed")
    ranges: dict[str, TrainingRange] = {}
    for name in numeric:
        low, high = float(summary[f"min:{name}"].min()), float(summary[f"max:{name}"].max())
        ranges[name] = (
            TrainingRange(low=low, high=high)
            if math.isfinite(low) and math.isfinite(high)
            else TrainingRange()
        )
    for name in categories:
        present = {v for text in summary[f"levels:{name}"] for v in json.loads(text)}
        ranges[name] = TrainingRange(levels=tuple(v for v in levels[name] if v in present))
    with client.as_current():  # xgboost.dask looks for a current client too
        dtrain = dxgb.DaskQuantileDMatrix(
            client,
            X,
            y,
            enable_categorical=True,
            max_bin=params.max_bin,
            feature_types=[_XGB_TYPES[kinds[f]] for f in features],
        )
        out = dxgb.train(
            client, params.xgb_params(), dtrain, num_boost_round=params.num_boost_round
        )
    booster: xgb.Booster = out["booster"]
    partitions = int(encoded.npartitions)
    model = TrainedModel(
        booster=booster,
        features=tuple(features),
        kinds=kinds,
        levels={k: tuple(v) for k, v in levels.items()},
        training_ranges={f: ranges[f] for f in features},
        params=params,
        train_rows=rows,
        train_positives=positives,
    )
    return DaskTraining(model=model, shape=shape, partitions=partitions)
