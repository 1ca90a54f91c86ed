"""Where a retraining run trains: on this machine (``local``) or on a Dask cluster (``dask``).

hilt.toml ``[training] engine`` and ``scheduler``, overridden per run by the notebook's
parameters (``hilt retrain -p engine dask -p scheduler tcp://HOST:PORT``). The runner
resolves them (``resolve_engine``) and reads the cluster's shape before anything is written
(``model_dask.probe``); the notebook opens the engine (``open_engine``), which checks the
shape again, and trains with it (``training.train``).

Importing this module imports neither dask nor xgboost: ``engine = "local"`` never loads dask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import polars as pl

from hilt.pipelines.config import SCHEDULER_ADDRESS, Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.model import TrainedModel, TrainParams, default_nthread, fit
from hilt.pipelines.loop.tracking.tags import (
    TAG_DASK_PARTITIONS,
    TAG_DASK_THREADS_PER_WORKER,
    TAG_DASK_WORKERS,
    TAG_ENGINE,
)

if TYPE_CHECKING:
    from hilt.pipelines.loop.model_dask import ClusterShape, DaskClient

EngineName = Literal["local", "dask"]
ENGINES: tuple[EngineName, ...] = ("local", "dask")
_SCHEDULER = re.compile(SCHEDULER_ADDRESS)


@dataclass(frozen=True)
class EngineChoice:
    """The engine a run trains on, and the scheduler's address (``dask`` only)."""

    name: EngineName
    scheduler: str = ""

    @property
    def local(self) -> bool:
        return self.name == "local"


def resolve_engine(settings: Settings, engine: str = "", scheduler: str = "") -> EngineChoice:
    """The run's engine: the parameters given, else hilt.toml's ``[training]``. InputError
    (one line) for an unknown engine, or Dask without a well-formed scheduler address."""
    name = engine or settings.training.engine
    if name not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)} (got {name!r})")
    if name == "local":
        if scheduler:
            raise InputError("scheduler is for engine dask; this run trains locally")
        return EngineChoice("local")
    address = scheduler or settings.training.scheduler or ""
    if not address:
        raise InputError(
            "engine dask needs a scheduler: -p scheduler tcp://HOST:PORT or hilt.toml "
            "[training] scheduler"
        )
    if not _SCHEDULER.match(address):
        raise InputError("scheduler must be a Dask scheduler address tcp://HOST:PORT")
    return EngineChoice(cast(EngineName, name), address)


@dataclass(eq=False)
class TrainingEngine:
    """An opened engine: for Dask, the notebook kernel's client of the cluster."""

    choice: EngineChoice
    settings: Settings = field(repr=False)
    client: DaskClient | None = field(default=None, repr=False)
    shape: ClusterShape | None = None
    #: Partitions the snapshot was read in (set by ``fit``; Dask only).
    partitions: int | None = None

    def __post_init__(self) -> None:
        if self.choice.local != (self.client is None):
            raise InputError("a Dask engine needs its client; a local one has none")

    @property
    def local(self) -> bool:
        return self.choice.local

    def fit(
        self, snapshot: Path, X: pl.DataFrame, y: pl.Series, params: TrainParams
    ) -> TrainedModel:
        """Train: locally on ``X`` / ``y``; on Dask on the snapshot file's training rows
        (then the client is closed)."""
        if self.client is None:
            return fit(X, y, params)
        from hilt.pipelines.loop.model_dask import fit_dask

        try:
            training = fit_dask(self.client, snapshot, self.settings, params)
        finally:
            self.close()  # one training per engine; the model is in this process
        self.partitions = training.partitions
        return training.model

    def tags(self) -> dict[str, str]:
        """The MLflow tags that say where the run trained."""
        out: dict[str, str] = {TAG_ENGINE: self.choice.name}
        if self.shape is not None:
            out[TAG_DASK_WORKERS] = str(self.shape.workers)
            out[TAG_DASK_THREADS_PER_WORKER] = str(self.shape.threads_per_worker)
        if self.partitions is not None:
            out[TAG_DASK_PARTITIONS] = str(self.partitions)
        return out

    def table(self) -> pl.DataFrame:
        facts: list[tuple[str, str]] = [("engine", self.choice.name)]
        if self.shape is not None:
            facts += [
                ("Dask workers", str(self.shape.workers)),
                ("threads per worker (nthread)", str(self.shape.threads_per_worker)),
            ]
        if self.partitions is not None:
            facts.append(("partitions of the snapshot", str(self.partitions)))
        return pl.DataFrame(facts, schema=["item", "value"], orient="row")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def open_engine(
    settings: Settings,
    engine: str = "",
    scheduler: str = "",
    workers: int = 0,
    nthread: int = 0,
) -> TrainingEngine:
    """Open the run's engine; for Dask, connect and check the cluster has ``workers``
    workers (0: any) of ``nthread`` threads each (0: any). ClusterError otherwise."""
    choice = resolve_engine(settings, engine, scheduler)
    if choice.local:
        if workers:
            raise InputError("workers is for engine dask; this run trains locally")
        return TrainingEngine(choice, settings)
    from hilt.pipelines.loop.model_dask import connect, require_shape, shape_of

    client = connect(choice.scheduler)
    try:
        shape = shape_of(client)
        require_shape(shape, workers, nthread)
    except BaseException:
        client.close()
        raise
    return TrainingEngine(choice, settings, client, shape)


def settle_run_parameters(settings: Settings, typed: dict[str, Any]) -> None:
    """Fix a retraining run's engine, threads and (Dask) workers in its parameters
    (``runner.execute``, before anything is written), so that the notebook, MLflow and
    run.started record them: the model's bytes depend on them. Local: ``nthread`` 0 or not
    given is every core. Dask: the cluster at the scheduler is asked for its shape;
    ``workers`` / ``nthread`` given (a reproduction) must match it (ClusterError, exit 2,
    otherwise); an unreachable scheduler is refused too."""
    choice = resolve_engine(
        settings, str(typed.get("engine") or ""), str(typed.get("scheduler") or "")
    )
    typed["engine"] = choice.name
    if choice.local:
        if typed.get("workers"):
            raise InputError("workers is for engine dask; this run trains locally")
        typed.pop("scheduler", None)
        typed["nthread"] = int(typed.get("nthread") or default_nthread())
        return
    typed["scheduler"] = choice.scheduler
    from hilt.pipelines.loop.model_dask import probe, require_shape

    shape = probe(choice.scheduler)
    require_shape(shape, int(typed.get("workers") or 0), int(typed.get("nthread") or 0))
    typed["workers"] = shape.workers
    typed["nthread"] = shape.threads_per_worker
