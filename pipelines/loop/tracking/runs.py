"""MLflow runs: create, start (or resume), finish or fail one; tag it and log values to it;
read one back, or list the use case's runs, as ``RunRecord``s.

Every run is created with the provenance tags (``provenance.provenance_tags``): its author,
the git commit and the package versions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, Run

from hilt.pipelines.config import Settings
from hilt.pipelines.loop.tracking.client import Configured, configure, configured, mlflow_errors
from hilt.pipelines.loop.tracking.environment import registered_model_name
from hilt.pipelines.loop.tracking.provenance import provenance_tags
from hilt.pipelines.loop.tracking.registry import versions_and_aliases
from hilt.pipelines.loop.tracking.tags import (
    PARAM_SNAPSHOT_SEQ,
    PARAM_SNAPSHOT_SHA256,
    RESERVED_PREFIX,
    TAG_AUTHOR,
    TAG_GIT_COMMIT,
    TAG_MODEL_SHA256,
    TAG_SNAPSHOT_SEQ,
    TAG_SNAPSHOT_SHA256,
)
from hilt.pipelines.loop.tracking.training_log import metric_value
from hilt.pipelines.workspace import Workspace


# ---------------------------------------------------------------------------- one run
def _configured_with_tags(
    ws: Workspace,
    settings: Settings,
    uri: str | None,
    author: str,
    tags: Mapping[str, str] | None,
) -> tuple[Configured, dict[str, str]]:
    """MLflow configured for the workspace, and a new run's tags: provenance, then ``tags``."""
    configure(ws, uri, settings)
    return configured(), {**provenance_tags(author), **dict(tags or {})}


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
    state, all_tags = _configured_with_tags(ws, settings, uri, author, tags)
    with mlflow_errors("cannot create a run"):
        run = state.client.create_run(state.experiment_id, tags=all_tags, run_name=run_name)
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
    state, all_tags = _configured_with_tags(ws, settings, uri, author, tags)
    with mlflow_errors("cannot start the run"):
        if run_id is not None:
            return mlflow.start_run(run_id=run_id, tags=dict(tags or {}))
        return mlflow.start_run(experiment_id=state.experiment_id, run_name=run_name, tags=all_tags)


def run_id_of(run: Run | str) -> str:
    """The id of a run given as a Run (or ActiveRun) or as its id."""
    return run if isinstance(run, str) else str(run.info.run_id)


def _end(run_id: str, status: str, action: str) -> None:
    """End a run with ``status`` (and pop it if it is this process's active run)."""
    state = configured()
    active = mlflow.active_run()
    with mlflow_errors(f"cannot {action} run {run_id}"):
        if active is not None and active.info.run_id == run_id:
            mlflow.end_run(status)
        else:
            state.client.set_terminated(run_id, status=status)


def finish_run(run: Run | str) -> None:
    """End a run as FINISHED (and pop it if it is this process's active run)."""
    run_id = run_id_of(run)
    _end(run_id, "FINISHED", "finish")


def mark_failed(run_id: str) -> None:
    """Set a run's status to FAILED (a failed notebook, a crashed kernel)."""
    _end(run_id, "FAILED", "mark failed")


# ---------------------------------------------------------------------------- logging
def set_run_tags(run_id: str, tags: Mapping[str, str]) -> None:
    """Set tags on a run (e.g. ``hilt.gate``, ``hilt.kind``); the run may be finished."""
    state = configured()
    with mlflow_errors(f"cannot tag run {run_id}"):
        for key, value in tags.items():
            state.client.set_tag(run_id, key, str(value))


def log_run_values(
    run_id: str,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> None:
    """Log params and metrics of a run that has no training (a scoring run)."""
    state = configured()
    now = int(time.time() * 1000)
    with mlflow_errors(f"cannot log to run {run_id}"):
        state.client.log_batch(
            run_id,
            metrics=[Metric(k, metric_value(k, v), now, 0) for k, v in (metrics or {}).items()],
            params=[Param(str(k), str(v)) for k, v in (params or {}).items()],
        )


def log_run_dict(run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
    """Log a JSON document (e.g. the gate's verdict) as an artifact of a run."""
    state = configured()
    with mlflow_errors(f"cannot log {artifact_file} to run {run_id}"):
        state.client.log_dict(run_id, dict(data), artifact_file)


# ---------------------------------------------------------------------------- run records
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
        params={k: v for k, v in params.items() if not k.startswith(RESERVED_PREFIX)},
        metrics=dict(run.data.metrics),
        tags=tags,
        snapshot_seq=int(seq) if seq is not None and seq.isdigit() else None,
        snapshot_sha256=params.get(PARAM_SNAPSHOT_SHA256) or tags.get(TAG_SNAPSHOT_SHA256),
        model_sha256=tags.get(TAG_MODEL_SHA256),
        git_commit=tags.get(TAG_GIT_COMMIT),
        versions=tuple(str(v.version) for v in sorted(mine, key=lambda v: int(v.version))),
        aliases=tuple(on_mine),
    )


def run_info(run_id: str) -> RunRecord:
    """Params, metrics, tags, snapshot seq and sha256, model sha256, author, status, times and
    registered versions of one run."""
    state = configured()
    with mlflow_errors(f"cannot read run {run_id}"):
        run = state.client.get_run(run_id)
    return _record(run, *versions_and_aliases(state.client, f"run_id = '{run_id}'"))


def list_runs(settings: Settings, max_results: int = 100) -> list[RunRecord]:
    """The use case's runs, newest first."""
    state = configured()
    with mlflow_errors("cannot list runs"):
        runs = state.client.search_runs(
            [state.experiment_id],
            order_by=["attributes.start_time DESC"],
            max_results=max_results,
        )
    versions, alias_map = versions_and_aliases(
        state.client, f"name = '{registered_model_name(settings)}'"
    )
    return [_record(r, versions, alias_map) for r in runs]
