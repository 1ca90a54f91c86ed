"""`hilt serve`: the store service and Voila, serving the dashboards of one workspace.

Voila listens on 127.0.0.1 by default, with sources stripped, idle kernels culled, and the
kernel websocket restricted to widget traffic (a dashboard cannot be turned into a code
console: an ``execute_request`` from the browser is dropped). Each dashboard kernel gets
the store URL and a gateway token through its environment and acts on behalf of the person
the dashboard identified; Voila hands it the sign-in proxy's ``X-Forwarded-User`` and
``X-Hilt-Proxy-Secret`` headers, which it forwards to the store service, the one that
decides (see pipelines/dashboards/access.py). The kernels get nothing else that names or
proves anyone, and no key: ``kernel_environment``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol

import httpx

from hilt.pipelines.config import Access
from hilt.pipelines.errors import InputError, NotFoundError, StoreError
from hilt.pipelines.paths import NOTEBOOKS_DIR
from hilt.pipelines.ports import require_free_port
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.store.modes.client import tls_context
from hilt.pipelines.workspace import Workspace

GATEWAY_USER = "voila-gateway"
#: The store service's log in the workspace (appended to at each start): refused tokens and
#: refused gateway requests are recorded there, never a case id or a personal value.
STORE_LOG = "store-service.log"
KERNEL_MANAGER = "hilt.pipelines.dashboards.kernels.WidgetOnlyKernelManager"
#: How Voila and JupyterLab are started: their own entry points, without building
#: jsonschema's IRI grammar at start (pipelines/dashboards/jupyter_main.py).
JUPYTER_MAIN = "hilt.pipelines.dashboards.jupyter_main"
#: The pages Voila serves; ``signin`` is the demo's sign-in page (single-person mode only:
#: behind a sign-in proxy the store refuses it, pipelines/dashboards/sign_in.py).
SIGN_IN = "signin"
DASHBOARDS = ("review", "oversight", "audit", SIGN_IN)
#: The request headers Voila hands each dashboard kernel (as ``HTTP_X_…``): who the sign-in
#: proxy says is looking, and the proxy's proof, both forwarded to the store service.
HEADER_ENVS = ("X-Forwarded-User", "X-Hilt-Proxy-Secret")
#: Of the operator's ``HILT_*`` environment, what the kernels keep (the audit dashboard's
#: MLflow cross-check reads the tracking store); every other one (HILT_MASTER_KEY,
#: HILT_MASTER_KEY_FILE, HILT_TOKEN, HILT_AUDIT_SIGNING_KEY, ...) stays out.
KERNEL_KEEPS = frozenset({"HILT_MLFLOW_TRACKING_URI"})


def kernel_environment(
    environ: Mapping[str, str], store_url: str, gateway_token: str, workspace: Workspace | None
) -> dict[str, str]:
    """The environment of Voila and so of every dashboard kernel: the operator's, without
    keys, admin credentials or anything that names or proves a person (only a request may
    say who is looking: Voila adds its headers per kernel), plus what a kernel needs: the
    store's URL, the gateway token, the workspace (none for dashboards on another host than
    the store's: they read the config in force from the store, pipelines/dashboards/remote.py)."""
    names_a_person = {"JUPYTERHUB_USER", *(_header_env(h) for h in HEADER_ENVS)}
    env = {
        k: v
        for k, v in environ.items()
        if k not in names_a_person and (not k.startswith("HILT_") or k in KERNEL_KEEPS)
    }
    jupyter_path = os.pathsep.join(p for p in (str(THEME_DIR), env.get("JUPYTER_PATH")) if p)
    env.update(
        JUPYTER_PATH=jupyter_path,
        HILT_STORE_URL=store_url,
        HILT_GATEWAY_TOKEN=gateway_token,
        MPLBACKEND="Agg",
    )
    if workspace is not None:
        env["HILT_WORKSPACE"] = str(workspace.root)
    return env


def _header_env(header: str) -> str:
    """The environment name Voila gives a request header (RFC 3875 4.1.18)."""
    return "HTTP_" + header.upper().replace("-", "_")


#: Holds voila/templates/hilt: Voila's lab template without its CDN links.
THEME_DIR = Path(__file__).resolve().parent / "theme"


def default_notebooks_dir() -> Path:
    return NOTEBOOKS_DIR


def served_notebooks(workspace: Workspace, source: Path) -> Path:
    """The folder Voila serves: copies of the dashboards only, made afresh at each start.

    Voila serves every notebook of its folder; the papermill templates (retrain, score)
    next to the dashboards in notebooks/ must not become pages anyone can open. The sign-in
    page only in single-person mode (no sign-in proxy; the store refuses it behind one too).
    """
    served = workspace.root / "dashboards"
    if served.exists():
        shutil.rmtree(served)
    return copy_dashboards(source, served, workspace.settings().access)


def copy_dashboards(source: Path, served: Path, access: Access) -> Path:
    """Copy the dashboards (only) of ``source`` into the new folder ``served``; the sign-in
    page only in single-person mode (``access``: the config in force)."""
    if not (source / "review.ipynb").exists():
        raise InputError(f"{source}: no dashboard notebooks found")
    served.mkdir(parents=True)
    single_person = access.proxy_secret_sha256 is None and access.local_user is not None
    for name in DASHBOARDS:
        if name == SIGN_IN and not single_person:
            continue  # behind a sign-in proxy the proxy says who is looking (the store too)
        notebook = source / f"{name}.ipynb"
        if notebook.exists():
            shutil.copyfile(notebook, served / notebook.name)
    return served


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    # One client for the polls: a new one loads the CA bundle again (~25 ms of CPU a poll).
    with httpx.Client(timeout=1.0, verify=tls_context()) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StoreError(f"the {what} exited during start-up (exit code {proc.returncode})")
            try:
                http.get(url)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
    raise StoreError(f"the {what} did not answer at {url} within {timeout_s:.0f} s")


def voila_command(notebooks: Path, host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        JUPYTER_MAIN,
        "voila",
        str(notebooks),
        "--no-browser",
        f"--port={port}",
        f"--Voila.ip={host}",
        "--strip_sources=True",
        "--template=hilt",
        "--VoilaConfiguration.show_tracebacks=False",
        *(f"--VoilaConfiguration.http_header_envs={h}" for h in HEADER_ENVS),
        f"--VoilaConfiguration.multi_kernel_manager_class={KERNEL_MANAGER}",
        "--MappingKernelManager.cull_idle_timeout=900",
        "--MappingKernelManager.cull_interval=60",
        "--MappingKernelManager.cull_connected=False",
    ]


class VoilaPages:
    """Where a Voila serves the dashboards (``host``, ``port`` set by the subclass)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def dashboard_url(self, name: str) -> str:
        return f"{self.url}/voila/render/{name}.ipynb"


@dataclass
class DashboardServer(VoilaPages):
    """The two processes of `hilt serve`, started and stopped together."""

    workspace: Workspace
    host: str
    port: int
    store_port: int
    store: subprocess.Popen[bytes]
    voila: subprocess.Popen[bytes]
    #: Where the store service's log goes (refusals of tokens and of the gateway among it).
    store_log: Path | None = None

    def processes(self) -> tuple[subprocess.Popen[bytes], ...]:
        return (self.voila, self.store)

    def stop(self) -> None:
        stop_processes(self.voila, self.store)


def store_serve_command(workspace: Workspace, port: int, host: str = "127.0.0.1") -> list[str]:
    """`hilt store serve` on ``workspace`` at ``host:port``, run by this interpreter: the one
    way a store service process is started (dashboards, tests, benchmarks)."""
    return [
        sys.executable,
        "-m",
        "hilt.pipelines.cli",
        "store",
        "serve",
        "--workspace",
        str(workspace.root),
        "--port",
        str(port),
        "--host",
        host,
    ]


class Stoppable(Protocol):
    """What ``stop_processes`` needs of a process: ``subprocess.Popen``'s way to stop one."""

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def stop_processes(*processes: Stoppable, grace_s: float = 15) -> None:
    """SIGTERM to each process still running, then wait ``grace_s`` for each; SIGKILL to
    one that has not stopped by then. The one way the servers hilt starts are stopped."""
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()
    for proc in processes:
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_dashboards(
    workspace: Workspace,
    *,
    host: str = "127.0.0.1",
    port: int = 8866,
    store_port: int = 8765,
    notebooks: Path | None = None,
    quiet: bool = True,
) -> DashboardServer:
    """Start the store service and Voila; return once both answer."""
    workspace.require()
    source = notebooks or default_notebooks_dir()
    if not (source / "review.ipynb").exists():
        raise InputError(f"{source}: no dashboard notebooks found")
    nb_dir = served_notebooks(workspace, source)
    for p in (port, store_port):
        require_free_port(host, p)
    operator = open_store_as(workspace, Identity(operator=True))
    # A fresh gateway credential per start; the previous ones stop working.
    with suppress(NotFoundError):  # the first start: no gateway yet
        operator.revoke_tokens(GATEWAY_USER)
    gateway = operator.add_user(GATEWAY_USER, "gateway").token
    out = subprocess.DEVNULL if quiet else None
    store_log = workspace.root / STORE_LOG if quiet else None
    # The child keeps its own descriptor of the log; the parent closes its copy at once.
    log = store_log.open("ab") if store_log else None
    store = subprocess.Popen(
        store_serve_command(workspace, store_port, host),
        stdout=log or out,
        stderr=log or out,
    )
    if log is not None:
        log.close()
    store_url = f"http://{host}:{store_port}"
    # Voila starts beside the store service, not after it: its kernels reach the store only
    # once a page is asked for, and this returns only when both answer. The two starts
    # (imports, mostly) then share the cores instead of following each other.
    try:
        env = kernel_environment(os.environ, store_url, gateway, workspace)
        voila = subprocess.Popen(
            voila_command(nb_dir, host, port), env=env, stdout=out, stderr=out, cwd=nb_dir
        )
    except BaseException:
        stop_processes(store)
        raise
    server = DashboardServer(workspace, host, port, store_port, store, voila, store_log)
    try:
        wait_http(store_url + "/health", store, "store service", 30)
        wait_http(server.url + "/", voila, "Voila server", 60)
    except BaseException:
        server.stop()
        raise
    return server


class Served(Protocol):
    """What `hilt serve` started: its processes, stopped together."""

    def processes(self) -> tuple[subprocess.Popen[bytes], ...]: ...

    def stop(self) -> None: ...


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM (a service manager stopping `hilt serve`) as Ctrl-C: what was started is
    stopped, also when it comes while the servers are still starting."""
    signal.signal(signal.SIGTERM, _interrupt)


def serve_until_stopped(server: Served) -> None:
    """Block until Ctrl-C or SIGTERM, or until one of the processes dies."""
    stop_on_sigterm()
    try:
        while all(p.poll() is None for p in server.processes()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        # A second SIGTERM while stopping must not cut the stop short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        server.stop()
