"""MLflow for this process: ``configure(ws)`` points it at the workspace's store and makes
sure the use case's experiment exists; every other tracking function then uses the client
and the experiment it set up (``configured()``).

Call ``configure(ws)`` (or ``runs.create_run`` / ``runs.start_run``, which call it) once per
process. It switches MLflow's telemetry and progress bars off first
(``environment.quiet_mlflow``): hilt makes no network calls of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import HiltError
from hilt.pipelines.loop.tracking import pending
from hilt.pipelines.loop.tracking.environment import (
    DB_FILE,
    artifact_location,
    experiment_name,
    quiet_mlflow,
    require_reachable,
    tracking_choice,
)
from hilt.pipelines.workspace import Workspace


class TrackingError(HiltError):
    """MLflow refused or failed an operation (the message is MLflow's, which names runs,
    versions and keys, never data values), or hilt was asked for something the registry does
    not allow (rejecting the champion, registering a failed run)."""

    status_code = 500
    kind = "tracking"


@contextlib.contextmanager
def mlflow_errors(action: str) -> Iterator[None]:
    """MLflow's exceptions as TrackingError ("MLflow: <action>: <MLflow's message>")."""
    try:
        yield
    except MlflowException as e:
        raise TrackingError(f"MLflow: {action}: {e.message}") from e


#: What MLflow's ``set_tracking_uri``, ``set_registry_uri`` and ``set_experiment`` write into
#: ``os.environ`` "so that subprocess can inherit it". hilt tells its child processes the URI
#: itself (``runner._kernel_environment``), and a variable left behind would outlive the
#: command that set it: a later command in the same process (an in-process `hilt`, a
#: notebook kernel opening another workspace) would read a dead server's URL as the user's
#: choice (``environment.tracking_choice``).
MLFLOW_SETS: tuple[str, ...] = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_ID",
)


@contextlib.contextmanager
def environment_kept(names: tuple[str, ...] = MLFLOW_SETS) -> Iterator[None]:
    """``os.environ[name]`` for each of ``names`` as it was before the block, whatever the
    block (MLflow) set or removed."""
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def is_not_found(e: MlflowException) -> bool:
    """Whether MLflow said that what was asked for does not exist."""
    return e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


@dataclass(frozen=True)
class Configured:
    """What ``configure`` set up: the URI, a client bound to it, the experiment."""

    uri: str
    client: MlflowClient
    experiment_id: str
    experiment_name: str


_state: Configured | None = None


def configure(
    ws: Workspace, uri: str | None = None, settings: Settings | None = None
) -> MlflowClient:
    """Point MLflow at the workspace's store (or its server: ``environment.tracking_choice``;
    a server that does not answer is TrackingUnavailable at once, not after MLflow's
    retries) and make sure the use case's experiment exists.

    Switches MLflow's telemetry and progress bars off, sets the tracking and the registry URI
    explicitly (process-wide, as MLflow's fluent API and model logging read them; in MLflow's
    module state only: the environment variables MLflow would set for child processes are
    left as they were, ``MLFLOW_SETS``), creates the experiment ``hilt-<use_case>`` with its
    artifacts under the workspace if it does not exist yet, makes it the process's active
    experiment (``mlflow.set_experiment``), and returns a client bound to that URI.
    Idempotent; safe when two processes create the experiment at once. ``settings`` defaults
    to the workspace's hilt.toml.
    """
    global _state
    pending.wait()
    quiet_mlflow()
    settings = settings or ws.settings()
    choice = tracking_choice(ws, uri, settings)
    require_reachable(choice)
    chosen = choice.uri
    if chosen.startswith("sqlite:"):
        ws.root.mkdir(parents=True, exist_ok=True)
        own = ws.root / DB_FILE
        if chosen == f"sqlite:///{own.as_posix()}" and not own.exists():
            copy_new(tracking_store_template(), own)
    with environment_kept():
        mlflow.set_tracking_uri(chosen)
        mlflow.set_registry_uri(chosen)
    client = MlflowClient(tracking_uri=chosen, registry_uri=chosen)
    name = experiment_name(settings)
    with mlflow_errors(f"cannot open the experiment {name!r} at {chosen}"):
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
        with environment_kept():
            mlflow.set_experiment(experiment_id=experiment_id)
    _state = Configured(
        uri=chosen, client=client, experiment_id=experiment_id, experiment_name=name
    )
    return client


def configured() -> Configured:
    """What ``configure`` set up in this process (waiting for a ``configure`` started on a
    thread: ``pending``); TrackingError before it was called."""
    pending.wait()
    if _state is None:
        raise TrackingError(
            "MLflow is not configured in this process: call "
            "hilt.pipelines.loop.tracking.client.configure(workspace) first"
        )
    # Someone may have pointed MLflow elsewhere since; model logging reads the global URI.
    if mlflow.get_tracking_uri() != _state.uri:
        with environment_kept():
            mlflow.set_tracking_uri(_state.uri)
            mlflow.set_registry_uri(_state.uri)
    return _state


def empty_tracking_store(path: Path) -> Path:
    """Create at ``path`` an MLflow sqlite store holding MLflow's tables (tracking and
    registry) and nothing else: MLflow's migrations take seconds; copying the file into a
    new workspace (as its ``mlflow.db``) takes milliseconds. The workspace's experiment is
    not in it: ``configure`` creates it, with its artifacts under the workspace."""
    uri = f"sqlite:///{path.as_posix()}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    with mlflow_errors("create an empty tracking store"):
        client.search_experiments()
        client.search_registered_models()
    return path


def template_folder() -> Path:
    """Where ``tracking_store_template`` keeps its file: ``$XDG_CACHE_HOME/hilt``, else
    ``~/.cache/hilt``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hilt"


def tracking_store_template() -> Path | None:
    """MLflow's empty tables for the installed MLflow, made once per user and MLflow version
    (``empty_tracking_store`` in ``template_folder()``; written under another name, then
    renamed: a reader never sees half a file), so that a new workspace's ``mlflow.db`` is a
    copy (milliseconds), not MLflow's migrations again (1.3-2.5 s of CPU on the 2-core
    machine, at every `hilt init`, `hilt demo` and `hilt simulate`). None when the folder
    cannot be written: MLflow then creates the tables itself, as it would without this."""
    path = template_folder() / f"mlflow-{mlflow.__version__}-empty.db"
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".making-") as tmp:
            os.replace(empty_tracking_store(Path(tmp) / DB_FILE), path)
    except OSError:
        return None
    return path


def copy_new(template: Path | None, target: Path) -> None:
    """``target`` as a copy of ``template`` unless it exists already (another process made
    it meanwhile: theirs is kept, never replaced under them), in one step (a link of a
    finished copy: never half a file). Nothing when there is no template, or the copy or
    the link cannot be made there (a read-only folder, a file system without hard links):
    MLflow then creates the tables itself, or says why it cannot."""
    if template is None:
        return
    # (FileExistsError among the OSErrors: made meanwhile.)
    with (
        contextlib.suppress(OSError),
        tempfile.TemporaryDirectory(dir=target.parent, prefix=".mlflow-") as tmp,
    ):
        copy = Path(tmp) / target.name
        shutil.copyfile(template, copy)
        os.link(copy, target)
