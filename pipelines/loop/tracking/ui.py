"""`hilt tracking ui`: the MLflow UI on the workspace's tracking store, on loopback.

When the workspace's runs go to a tracking server (the config's ``[tracking] uri``, or
``$HILT_MLFLOW_TRACKING_URI`` / ``$MLFLOW_TRACKING_URI``: ``environment.tracking_choice``),
that server already has the UI: its URL is what the command gives, nothing is started.
Otherwise ``mlflow server`` runs on the workspace's sqlite store (``<workspace>/mlflow.db``;
the runs' artifacts are under ``<workspace>/mlartifacts``, where each experiment's artifact
location points) with one worker, listening on 127.0.0.1 only.

Importing this module does not import mlflow (the server is a child process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError, StoreError
from hilt.pipelines.loop.tracking.environment import (
    ARTIFACTS_DIR,
    child_environment,
    has_tracking_store,
    tracking_choice,
    tracking_uri,
)
from hilt.pipelines.ports import require_free_port
from hilt.pipelines.workspace import Workspace

HOST = "127.0.0.1"
#: What ``mlflow server`` is started with besides the runs' settings: no job execution.
#: MLflow would otherwise start a job runner with seven huey consumer processes (its GenAI
#: judges and trace roll-ups, which hilt does not use): ~9 s of CPU on the 2-core machine
#: before the UI answers, and processes that keep polling while it is open.
SERVER_ENVIRONMENT = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def server_url(ws: Workspace, settings: Settings) -> str | None:
    """The tracking server's URL when the workspace's runs go to one (its UI is there),
    else None (a local store): the runs' own choice (``environment.tracking_choice``)."""
    chosen = tracking_choice(ws, settings=settings)
    return chosen.uri if chosen.is_server else None


def ui_command(ws: Workspace, port: int) -> list[str]:
    uri = tracking_uri(ws)
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--registry-store-uri",
        uri,
        "--default-artifact-root",
        (ws.root / ARTIFACTS_DIR).as_uri(),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


@dataclass
class TrackingUI:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        """Stop the server and its workers (its own process group: ``mlflow server`` runs
        uvicorn as a child, which a signal to the parent alone would not reach)."""
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait_s)


def start_ui(
    ws: Workspace, *, port: int = 5000, quiet: bool = True, timeout_s: float = 90
) -> TrackingUI:
    """Start the MLflow UI on the workspace's local store; return once it answers.
    InputError (nothing started) when the workspace has no tracking store yet (looking
    would create one) or the port is in use."""
    ws.require()
    if not has_tracking_store(ws):
        raise InputError(f"{ws.root} has no MLflow tracking store yet (`hilt init` creates it)")
    require_free_port(HOST, port)
    out = subprocess.DEVNULL if quiet else None
    env = {**os.environ, **child_environment(), **SERVER_ENVIRONMENT}
    process = subprocess.Popen(
        ui_command(ws, port), env=env, stdout=out, stderr=out, start_new_session=True
    )
    ui = TrackingUI(process, f"http://{HOST}:{port}")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if process.poll() is not None:
                raise StoreError(f"the MLflow UI exited during start-up ({process.returncode})")
            try:
                if httpx.get(ui.url + "/health", timeout=1.0).status_code == 200:
                    return ui
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise StoreError(f"the MLflow UI did not answer at {ui.url} in {timeout_s:.0f} s")
            time.sleep(0.2)
    except BaseException:
        ui.stop()
        raise
