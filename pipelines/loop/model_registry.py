"""The store's model registry as the loop reads it, and MLflow's mirror of it kept up to date.

The store is the authority on models (``Store.models()``: version, sha256, run, author, the
store's own gate verdict, state): scoring uses its champion, promotion decides there, and
MLflow's aliases and tags only follow (``tracking.registry.mirror``), written after the
store decided. A mirror that fails leaves the store's decision standing; the disagreement is
then reported (``hilt audit verify``, ``hilt docs model``) until the next mirror.

Importing this module imports no mlflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import HiltError, InputError
from hilt.pipelines.store import Store
from hilt.pipelines.store.registry_records import ModelRecord
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.loop.tracking.mirror import MirrorFact


def champion(store: Store) -> ModelRecord | None:
    """The store's champion (the one version that scores into the review queue), or None."""
    return next((m for m in store.models() if m.state == "champion"), None)


def find_model(store: Store, model: str) -> ModelRecord | None:
    """The store's record of ``model`` ("<registered name>/v<version>"), or None."""
    return next((m for m in store.models() if m.model == model), None)


def model_of_run(store: Store, run_id: str) -> ModelRecord:
    """The version the training run ``run_id`` registered in the store (InputError if
    none: the run registered nothing here, or is not a run of this workspace)."""
    found = [m for m in store.models() if m.run_id == run_id]
    if not found:
        raise InputError(f"run {run_id} registered no model in this store")
    return found[-1]


def mirror_to_mlflow(store: Store, settings: Settings) -> str | None:
    """Make MLflow's aliases and version tags say what the store's registry says now
    (MLflow configured first: ``tracking.client.configure``). Returns None, or why MLflow
    could not be brought up to date (the store's decision stands either way)."""
    from hilt.pipelines.loop.tracking.registry import mirror

    try:
        mirror(settings, store.models())
    except HiltError as e:
        return str(e)
    return None


def mlflow_disagreements(ws: Workspace, store: Store) -> list[MirrorFact] | None:
    """Where the workspace's MLflow registry disagrees with the store's (``mirror.facts``),
    or None when the workspace has no MLflow store (nothing mirrors the registry there;
    none is created by looking)."""
    from hilt.pipelines.loop.tracking.environment import has_tracking_store

    if not has_tracking_store(ws):
        return None  # decided before mlflow is imported (seconds of `hilt audit verify`)
    from hilt.pipelines.loop.tracking.client import configure
    from hilt.pipelines.loop.tracking.registry import registry_disagreements

    settings = ws.settings()
    configure(ws, settings=settings)
    return registry_disagreements(settings, store.models())
