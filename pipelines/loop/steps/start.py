"""The first cells of every run notebook (retrain.ipynb, score.ipynb): how tables are shown,
the workspace, the MLflow run, the parameters an auditor reads first.

Importing this module does not import mlflow; ``ensure_run`` imports it (on a thread, for
a run the runner made; not at all when the runner relays MLflow: ``tracking.relay``).
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import importlib
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.loop.tracking.tags import TAG_KIND
from hilt.pipelines.workspace import Workspace

#: What the cells of each run notebook import (its first cell, its figures), imported by
#: ``warm_up``; xgboost (``model.load_xgboost``) for every kind (training, scoring, the
#: champion's scores in monitoring). The retraining's figures are imported as its
#: training starts instead (``AFTER_TRAINING``).
WARM_UP: Final[Mapping[str, tuple[str, ...]]] = {
    "retrain": (
        "hilt.pipelines.loop.steps.engine",
        "hilt.pipelines.loop.steps.holdout",
        "hilt.pipelines.loop.steps.retrain",
        "hilt.pipelines.loop.steps.training",
        "hilt.pipelines.loop.steps.training_data",
        "hilt.pipelines.loop.runner",
    ),
    "score": ("hilt.pipelines.loop.steps.score", "hilt.pipelines.loop.runner"),
    "monitor": ("hilt.pipelines.loop.steps.monitor", "hilt.pipelines.loop.runner"),
}
#: What the retraining notebook imports only once its model is trained (the figures:
#: matplotlib, ~0.25 s of CPU): imported on a thread while the model trains
#: (``import_while_training``), where XGBoost's threads leave a core partly idle, rather
#: than while the kernel starts, which a run waits for.
AFTER_TRAINING: Final[tuple[str, ...]] = ("hilt.pipelines.loop.plots",)


def warm_up(kind: str) -> None:
    """Import what the ``kind`` run notebook's cells will import, ahead of them: a run's
    kernel calls this as it starts (``run_kernel``), while the runner makes the MLflow run.
    Imports only: nothing is read, written or bound in the notebook's namespace, and nothing
    is raised (a module that fails to import fails again, visibly, in the cell that imports
    it)."""
    with contextlib.suppress(Exception):
        from hilt.pipelines.loop.model import load_xgboost

        for module in WARM_UP.get(kind, ()):
            importlib.import_module(module)
        load_xgboost()


def import_while_training(modules: Sequence[str] = AFTER_TRAINING) -> threading.Thread | None:
    """Import ``modules`` on a daemon thread, started now (None: they are all imported).
    Imports only, as ``warm_up``: nothing raised (a module that fails to import fails
    again, visibly, where it is used), and whoever imports one before the thread is done
    waits for it (Python's import lock), then finds it imported."""
    missing = [m for m in modules if m not in sys.modules]
    if not missing:
        return None

    def run() -> None:
        with contextlib.suppress(Exception):
            for module in missing:
                importlib.import_module(module)

    thread = threading.Thread(target=run, name="hilt-import-while-training", daemon=True)
    thread.start()
    return thread


def configure_display() -> None:
    """Show tables in full in an executed notebook (every row, column and character of a
    hash): an auditor reads them there, without running anything."""
    pl.Config.set_tbl_rows(100)
    pl.Config.set_tbl_cols(20)
    pl.Config.set_fmt_str_lengths(100)
    pl.Config.set_tbl_width_chars(200)
    pl.Config.set_tbl_hide_dataframe_shape(True)


def open_workspace(workspace: str | Path | None) -> tuple[Workspace, Settings]:
    """The workspace (``workspace``, else $HILT_WORKSPACE) and its settings."""
    ws = Workspace.at(workspace or None)
    ws.require()
    return ws, ws.settings()


def ensure_run(ws: Workspace, settings: Settings, run_id: str, author: str, kind: str) -> str:
    """Configure MLflow for the workspace; the run ``run_id`` (made by ``hilt retrain`` or
    ``hilt score``), or, run by hand without one, a new run of ``kind`` authored by
    ``author`` (else the OS user).

    With ``run_id`` (the runner made the run): when the runner relays MLflow for this
    kernel (``tracking.relay``, a retraining run), nothing is set up here and mlflow is never
    imported; else MLflow is set up on a thread (``pending``): importing it overlaps the
    cells that need no MLflow, and the first that does waits."""
    if run_id:
        from hilt.pipelines.loop.tracking import pending
        from hilt.pipelines.loop.tracking.relay import RelayClient

        if RelayClient.from_environment() is not None:
            return run_id

        pending.start(functools.partial(_configure, ws, settings))
        return run_id
    from hilt.pipelines.loop.tracking.runs import create_run

    _configure(ws, settings)
    who = author or f"os:{getpass.getuser()}"
    return create_run(
        ws, settings, run_name=f"{kind}-interactive", author=who, tags={TAG_KIND: kind}
    )


def _configure(ws: Workspace, settings: Settings) -> None:
    from hilt.pipelines.loop.tracking.client import configure

    configure(ws, settings=settings)


def parameters_table(values: Mapping[str, Any]) -> pl.DataFrame:
    """The run's parameters, as text, for the first cell an auditor reads."""
    return pl.DataFrame(
        [(k, str(v)) for k, v in values.items()], schema=["parameter", "value"], orient="row"
    )
