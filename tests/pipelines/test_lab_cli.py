"""`hilt lab`, `hilt tracking ui` and `hilt simulate --strategy` refuse what they cannot do
with one line and exit 2, starting and writing nothing; `hilt tracking ui` gives a tracking
server's URL instead of starting a UI. (JupyterLab itself: tests/browser/test_lab.py.)"""

from __future__ import annotations

import socket
from pathlib import Path
from subprocess import CompletedProcess

import httpx
import pytest

from hilt.pipelines.dashboards.lab import lab_command, lab_environment
from hilt.pipelines.loop.tracking.ui import ui_command
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, CSV, free_port
from tests.loop_helpers import hilt_forked, loop_workspace
from tests.prewarmed import output_folder


def _one_line_refusal(stderr: str, words: str) -> None:
    assert stderr.startswith("error: ") and words in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def hilt(*args: str | Path, env: dict[str, str] | None = None) -> CompletedProcess[str]:
    """`hilt ARGS` in a process of its own, forked from one that imported hilt once
    (``hilt_forked``: no seconds of imports per refusal), its output kept in a temporary
    folder."""
    return hilt_forked(*args, folder=output_folder(), env=env)


def test_tracking_ui_names_the_tracking_server_when_runs_go_to_one(workspace: Workspace) -> None:
    url = "http://127.0.0.1:5999"
    result = hilt(
        "tracking", "ui", "--workspace", workspace.root, env={"HILT_MLFLOW_TRACKING_URI": url}
    )
    assert result.returncode == 0, result.stderr
    assert url in result.stdout
    assert not (workspace.root / "mlflow.db").exists()


def test_tracking_ui_refuses_a_workspace_without_a_tracking_store(workspace: Workspace) -> None:
    result = hilt("tracking", "ui", "--workspace", workspace.root)
    assert result.returncode == 2
    _one_line_refusal(result.stderr, "no MLflow tracking store")
    assert not (workspace.root / "mlflow.db").exists()  # looking did not create one


def test_lab_refuses_a_port_in_use_and_copies_nothing(workspace: Workspace) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hilt("lab", "--workspace", workspace.root, "--port", str(port))
    assert result.returncode == 2
    _one_line_refusal(result.stderr, "in use")
    assert not (workspace.root / "notebooks").exists()


def test_lab_and_ui_listen_on_loopback_with_the_runs_environment(workspace: Workspace) -> None:
    lab = lab_command(workspace, "127.0.0.1", 8899, "t0ken")
    assert "--ServerApp.ip=127.0.0.1" in lab and "--no-browser" in lab
    assert f"--ServerApp.root_dir={workspace.root}" in lab
    assert "--MappingKernelManager.default_kernel_name=python3" in lab
    assert "--LabApp.news_url=None" in lab  # nothing fetched from the internet
    env = lab_environment({"MPLBACKEND": "Agg", "HOME": "/h"}, workspace)
    assert env["HILT_WORKSPACE"] == str(workspace.root) and "MPLBACKEND" not in env
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    ui = ui_command(workspace, 5001)
    assert ui[ui.index("--host") + 1] == "127.0.0.1"
    assert ui[ui.index("--backend-store-uri") + 1].endswith(f"{workspace.root}/mlflow.db")


def test_simulate_refuses_an_unknown_strategy_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "sims"
    result = hilt(
        "simulate",
        "--workspace",
        root,
        "--config",
        CONFIG,
        "--data",
        CSV,
        "--seeds",
        "2",
        "--strategy",
        "uncertainty,bogus",
    )
    assert result.returncode == 2
    _one_line_refusal(result.stderr, "unknown strategy 'bogus'")
    assert not root.exists()


def process_group(leader: int) -> list[str]:
    """The command lines of the live processes in ``leader``'s process group (/proc)."""
    lines = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == leader and fields[0] != "Z":
                lines.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError):
            continue  # ended meanwhile
    return lines


def test_tracking_ui_serves_the_workspace_s_runs_on_loopback(tmp_path: Path) -> None:
    from hilt.pipelines.loop.tracking.client import configure
    from hilt.pipelines.loop.tracking.environment import experiment_name
    from hilt.pipelines.loop.tracking.ui import start_ui

    ws = loop_workspace(tmp_path, labelled=10)
    configure(ws, settings=ws.settings())  # the use case's experiment, as `hilt init` makes it
    ui = start_ui(ws, port=free_port())
    try:
        assert ui.url.startswith("http://127.0.0.1:")
        found = httpx.get(
            f"{ui.url}/ajax-api/2.0/mlflow/experiments/search", params={"max_results": 10}
        ).json()
        names = {e["name"]: e["artifact_location"] for e in found["experiments"]}
        assert names[experiment_name(ws.settings())] == (ws.root / "mlartifacts").as_uri()
        # `mlflow server` and its uvicorn only: no job runner with its huey consumers.
        group = process_group(ui.process.pid)
        assert any("uvicorn" in c for c in group), group
        assert not any("huey" in c or "_job_runner" in c for c in group), group
    finally:
        ui.stop()
    assert ui.process.poll() is not None
    with pytest.raises(httpx.HTTPError):
        httpx.get(ui.url + "/health", timeout=2)
