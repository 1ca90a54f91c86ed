"""Where the workspace's MLflow lives and how MLflow is kept quiet, without importing mlflow.

- The tracking (and registry) URI: ``sqlite:///<workspace>/mlflow.db`` with artifacts under
  ``<workspace>/mlartifacts`` (MLflow 3 would otherwise create ``./mlflow.db`` in whatever the
  current directory is), or a server URL (``$HILT_MLFLOW_TRACKING_URI``), whose artifact store
  the server decides. ``$MLFLOW_TRACKING_URI`` is deliberately not read: a URI left over from
  another project must not receive this workspace's runs.
- One experiment and one registered model per use case, both named ``hilt-<use_case.name>``.
- Quiet: MLflow's usage telemetry (a thread that fetches a config over HTTPS) is switched off
  (``MLFLOW_DISABLE_TELEMETRY``, ``DO_NOT_TRACK``) and so are its tqdm bars, which would fill
  executed notebooks and scheduler logs. Importing hilt changes no environment variable:
  ``quiet_mlflow()`` does, and ``client.configure`` calls it before MLflow is used; a child
  process (a papermill kernel) gets the same settings from ``child_environment()``, so its
  own ``import mlflow`` never starts the telemetry client.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Final

from hilt.pipelines.config import Settings
from hilt.pipelines.workspace import Workspace

#: Environment variable naming a tracking URI (a server URL) for every hilt process.
URI_ENV: Final = "HILT_MLFLOW_TRACKING_URI"
#: Workspace-relative names of the default store and artifact root.
DB_FILE: Final = "mlflow.db"
ARTIFACTS_DIR: Final = "mlartifacts"
#: Set before MLflow is used: no usage telemetry (mlflow/__init__ starts its client unless
#: one of these is set).
TELEMETRY_OFF: Final = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
#: No tqdm bars on stderr, unless the user asked for them.
PROGRESS_BAR_ENV: Final = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
#: MLflow's own log level in a child process (its INFO lines would land in a notebook).
LOGGING_LEVEL_ENV: Final = "MLFLOW_LOGGING_LEVEL"


def tracking_uri(ws: Workspace, override: str | None = None) -> str:
    """The tracking (and registry) URI: ``override``, else ``$HILT_MLFLOW_TRACKING_URI``,
    else the workspace's sqlite file ``sqlite:///<ws.root>/mlflow.db``."""
    chosen = override or os.environ.get(URI_ENV)
    if chosen:
        return chosen
    return f"sqlite:///{(ws.root / DB_FILE).as_posix()}"


def has_tracking_store(ws: Workspace) -> bool:
    """Whether the workspace's MLflow store exists (a tracking server is assumed to):
    reading one that does not would create it, which a look must not."""
    uri = tracking_uri(ws)
    return not uri.startswith("sqlite:") or (ws.root / DB_FILE).exists()


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


def quiet_mlflow() -> None:
    """Switch MLflow's telemetry and progress bars off for this process (and the processes
    it starts); if mlflow was imported already, drop the telemetry client it may have made
    (it has sent nothing yet: it fetches its config when the first event is recorded)."""
    os.environ.update(TELEMETRY_OFF)
    os.environ.setdefault(PROGRESS_BAR_ENV, "false")
    if "mlflow" in sys.modules:
        from mlflow.telemetry.client import set_telemetry_client

        set_telemetry_client()  # type: ignore[no-untyped-call]  # (unannotated in mlflow)


def child_environment() -> dict[str, str]:
    """The MLflow settings a child process (a papermill kernel) needs, whatever the parent's
    environment holds: telemetry and progress bars off, MLflow's log level (default WARNING),
    and the tracking URI when ``$HILT_MLFLOW_TRACKING_URI`` names one."""
    env = {
        **TELEMETRY_OFF,
        PROGRESS_BAR_ENV: os.environ.get(PROGRESS_BAR_ENV, "false"),
        LOGGING_LEVEL_ENV: os.environ.get(LOGGING_LEVEL_ENV, "WARNING"),
    }
    uri = os.environ.get(URI_ENV)
    if uri:
        env[URI_ENV] = uri
    return env
