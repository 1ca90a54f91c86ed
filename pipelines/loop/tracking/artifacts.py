"""Reading a run's artifacts back: one file downloaded, a text artifact, the subgroup table
of a retraining run."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import polars as pl
from mlflow.exceptions import MlflowException

from hilt.pipelines.loop.tracking.client import configured, mlflow_errors
from hilt.pipelines.loop.tracking.tags import SUBGROUP_ARTIFACT


def download_run_artifact(run_id: str, artifact_path: str, dst_dir: str | Path) -> Path | None:
    """Download one artifact of a run (e.g. ``evaluation/subgroup_metrics.csv``) into
    ``dst_dir``; None if the run has no such artifact."""
    state = configured()
    folder = artifact_path.rpartition("/")[0]
    with mlflow_errors(f"cannot read the artifacts of run {run_id}"):
        listed = {a.path for a in state.client.list_artifacts(run_id, folder or None)}
        if artifact_path not in listed:
            return None
        local = state.client.download_artifacts(run_id, artifact_path, str(dst_dir))
    return Path(local)


def run_artifact_text(run_id: str, artifact_path: str) -> str | None:
    """A run's text artifact (e.g. ``evaluation/gate.json``), or None when it has none."""
    state = configured()
    with tempfile.TemporaryDirectory(prefix="hilt-mlflow-") as tmp:
        try:
            local = state.client.download_artifacts(run_id, artifact_path, tmp)
        except (MlflowException, OSError):
            return None
        return Path(local).read_text(encoding="utf-8")


def run_subgroups(run_id: str) -> pl.DataFrame | None:
    """The subgroup metrics table a retraining run logged (``evaluation/``), or None."""
    text = run_artifact_text(run_id, SUBGROUP_ARTIFACT)
    if text is None:
        return None
    return pl.read_csv(io.StringIO(text), infer_schema_length=None)
