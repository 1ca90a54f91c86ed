"""`hilt lab`: the data scientist's door, JupyterLab on a workspace.

JupyterLab is started on the workspace folder, on loopback, with a fresh random token, the
project's kernel (the venv's ``python3`` kernelspec, the one the papermill runs use) and the
environment the runs set (``HILT_WORKSPACE``, MLflow quiet and its tracking URI when one is
configured; see ``runner._kernel_environment``), so that a notebook opened there reads the
same store and the same tracking store as ``hilt retrain``. The starting notebook,
``notebooks/explore.ipynb``, is copied into ``<workspace>/notebooks/`` unless a copy is there
already (the data scientist's edits are kept). Nothing is fetched from the internet: no
news feed, no update check, no browser opened unless asked.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hilt.pipelines.dashboards.server import JUPYTER_MAIN, stop_processes, wait_http
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.runner import KERNEL_NAME
from hilt.pipelines.loop.tracking.environment import child_environment
from hilt.pipelines.paths import NOTEBOOKS_DIR
from hilt.pipelines.ports import require_free_port
from hilt.pipelines.workspace import Workspace

#: The starting notebooks copied into the workspace (``<workspace>/notebooks/``).
LAB_NOTEBOOKS = ("explore.ipynb",)
#: Where they land, relative to the workspace.
LAB_FOLDER = "notebooks"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def lab_environment(environ: Mapping[str, str], workspace: Workspace) -> dict[str, str]:
    """The environment of JupyterLab and so of its kernels: the data scientist's own (their
    token for a store service among it), the workspace, MLflow quiet and its tracking URI,
    unbuffered output; no forced plotting backend (figures show inline)."""
    env = {k: v for k, v in environ.items() if k != "MPLBACKEND"}
    env.update(child_environment())
    env.update(HILT_WORKSPACE=str(workspace.root), PYTHONUNBUFFERED="1")
    return env


def copy_starting_notebooks(workspace: Workspace, source: Path = NOTEBOOKS_DIR) -> list[Path]:
    """Copy the starting notebooks into ``<workspace>/notebooks/`` where missing; returns
    their paths (copied or already there)."""
    folder = workspace.root / LAB_FOLDER
    folder.mkdir(exist_ok=True)
    paths = []
    for name in LAB_NOTEBOOKS:
        target = folder / name
        if not target.exists():
            shutil.copyfile(source / name, target)
        paths.append(target)
    return paths


def lab_command(workspace: Workspace, host: str, port: int, token: str) -> list[str]:
    """JupyterLab's command line: no browser, loopback, this port only, the workspace as its
    root, the token, the runs' kernel; no news feed, update check or extension manager that
    asks PyPI. Run as root (a container), JupyterLab needs to be told that is meant."""
    as_root = (
        ["--ServerApp.allow_root=True"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    )
    return [
        sys.executable,
        "-m",
        JUPYTER_MAIN,
        "jupyterlab",
        "--no-browser",
        f"--ServerApp.ip={host}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={workspace.root}",
        f"--IdentityProvider.token={token}",
        f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        *as_root,
    ]


@dataclass
class LabServer:
    """A running JupyterLab: its process, where it listens, its token."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    token: str
    notebook: str

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The starting notebook's URL, with the token (the page signs in with it)."""
        return f"{self.base_url}/lab/tree/{self.notebook}?token={self.token}"

    def stop(self) -> None:
        stop_processes(self.process)


def start_lab(
    workspace: Workspace,
    *,
    host: str = "127.0.0.1",
    port: int = 8888,
    quiet: bool = True,
    timeout_s: float = 90,
) -> LabServer:
    """Start JupyterLab on the workspace; return once it answers. InputError (nothing
    started) for a missing workspace, a host that is not loopback or a port in use."""
    workspace.require()
    if host not in LOOPBACK:
        raise InputError(f"hilt lab listens on loopback only (127.0.0.1), not {host}")
    require_free_port(host, port)
    copy_starting_notebooks(workspace)
    token = secrets.token_urlsafe(24)
    out = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(
        lab_command(workspace, host, port, token),
        env=lab_environment(os.environ, workspace),
        cwd=workspace.root,
        stdout=out,
        stderr=out,
    )
    server = LabServer(process, host, port, token, f"{LAB_FOLDER}/{LAB_NOTEBOOKS[0]}")
    try:
        wait_http(f"{server.base_url}/api/status?token={token}", process, "JupyterLab", timeout_s)
    except BaseException:
        server.stop()
        raise
    return server
