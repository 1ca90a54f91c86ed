"""`hilt` in a process of its own, without paying for its imports every time.

A `hilt` process spends most of its start importing (typer, FastAPI, uvicorn, DuckDB,
polars, MLflow): 1.5-3 s on the 2-core machine, every time a test starts `hilt store serve`
or runs `hilt score`. Here the imports are paid once per test process: a fork server
(``multiprocessing``'s forkserver, a clean single-threaded process) imports them, and each
`hilt ARGS` is a child forked from it that runs the real ``hilt`` entry point
(``hilt.pipelines.cli.main``) with ``ARGS``, the caller's environment and working folder,
its stdout and stderr in files. It is the same program as the ``hilt`` script, in a
separate process with its own pid: it owns the store's lock, serves HTTP, is stopped with
SIGTERM and exits with `hilt`'s own exit codes.
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import pkgutil
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from hilt.pipelines.dashboards.server import stop_processes, store_serve_command
from hilt.pipelines.store import ops
from hilt.pipelines.store.modes.client import tls_context
from hilt.pipelines.workspace import Workspace

#: What the fork server imports once: the CLI with its command groups, the store service
#: (`hilt store serve`) and every operation's module (the table imports each row's function
#: on first use, and the service resolves them all as it builds its routes), what `hilt
#: score` / `promote` / `reject` import before refusing; and the main module (pytest's
#: script), which a child would otherwise run again. Last, ``tests.forkserver_ready``
#: builds `hilt`'s command tree once and freezes what they made (a child's garbage
#: collections then leave it alone).
PRELOAD = (
    "__main__",
    "hilt.pipelines.cli",
    "hilt.pipelines.store.modes.service_http",
    *(f"{ops.__name__}.{m.name}" for m in pkgutil.iter_modules(ops.__path__)),
    "uvicorn",
    "hilt.pipelines.loop.runner",
    "hilt.pipelines.loop.steps.score",
    "hilt.pipelines.loop.promotion",
    "hilt.pipelines.loop.tracking.client",
    "papermill",
    # A run's warm-ups (nbconvert's exporter, the relay's MLflow model logging, xgboost),
    # which every forked `hilt retrain` / `hilt score` paid again (~3 s of CPU each).
    "tests.prewarmed_runs",
    "tests.forkserver_ready",
)

#: The name under which a child finds what to run (``start``).
CHILD_ARGS = "HILT_CHILD_ARGS"

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(list(PRELOAD))


def _run_hilt(
    args: list[str], env: dict[str, str], cwd: str, out: str, err: str, script: str | None
) -> None:
    """In the child: the caller's environment, folder and output files, then `hilt ARGS`
    (or ``python SCRIPT ARGS``)."""
    # Daemonic to its parent (stopped with it), but in its own eyes a program like `hilt`,
    # which may start processes of its own (verify hashes the log in a pool of them).
    multiprocessing.current_process().daemon = False
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(handle, fd)
        os.close(handle)
    if script is not None:
        sys.argv = [script, *args]
        sys.path.insert(0, str(Path(script).parent))  # as the interpreter runs a script
        runpy.run_path(script, run_name="__main__")
        return
    sys.argv = ["hilt", *args]
    from hilt.pipelines.cli import main

    main()


class Hilt:
    """A running `hilt ARGS` child; the parts of ``subprocess.Popen`` the tests use."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once it has ended (a negative signal number if a signal ended it)."""
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(["hilt"], timeout or 0.0)
        return self._process.exitcode

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()


def start(
    args: Sequence[str | Path],
    *,
    stdout: Path,
    stderr: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    script: Path | None = None,
) -> Hilt:
    """`hilt ARGS` started as a child of the fork server, with ``env`` (default: this
    process's environment now), in ``cwd`` (default: this process's working folder),
    appending its stdout to ``stdout`` and its stderr to ``stderr`` (default: the same
    file). With ``script``: ``python SCRIPT ARGS`` instead (a test's own worker process,
    which finds hilt and its dependencies imported)."""
    child_args = {
        "script": None if script is None else str(script),
        "args": [str(a) for a in args],
        "env": dict(os.environ if env is None else env),
        "cwd": str(cwd or os.getcwd()),
        "out": str(stdout),
        "err": str(stderr or stdout),
    }
    # The child runs this file as its main module (see its end): pytest imports the tests
    # by path, so a child could not import them by name.
    child = _CONTEXT.Process(
        target=runpy.run_path,
        args=(__file__,),
        kwargs={"init_globals": {CHILD_ARGS: child_args}, "run_name": "__main__"},
        daemon=True,  # stopped with this process if a test forgot to
    )
    child.start()
    return Hilt(child)


@functools.cache
def output_folder() -> Path:
    """Where children write their output when the caller names no folder: a folder of this
    process, outside every workspace, removed when it exits."""
    folder = Path(tempfile.mkdtemp(prefix="hilt-tests-prewarmed-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def run(
    *args: str | Path,
    folder: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 240,
    cwd: Path | None = None,
    script: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`hilt ARGS` (or `python SCRIPT ARGS`, see ``start``) to its end, as
    ``subprocess.run(..., capture_output=True, text=True)`` returns it; its output files are
    kept in ``folder`` (default: ``output_folder()``)."""
    folder = folder or output_folder()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.monotonic_ns()}"
    out, err = folder / f"hilt-{stamp}.out", folder / f"hilt-{stamp}.err"
    child = start(args, stdout=out, stderr=err, env=env, cwd=cwd, script=script)
    try:
        code = child.wait(timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(5)
        raise
    return subprocess.CompletedProcess(
        ["hilt", *map(str, args)],
        code,
        out.read_text(encoding="utf-8") if out.exists() else "",
        err.read_text(encoding="utf-8") if err.exists() else "",
    )


@dataclass
class PrewarmedService:
    """`hilt store serve` started by ``prewarmed_service``: its URL and process."""

    url: str
    process: Hilt
    workspace: Workspace
    port: int

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not stopped within 15 s (as ``RunningService``)."""
        stop_processes(self.process)


def prewarmed_service(ws: Workspace, log_path: Path, port: int) -> PrewarmedService:
    """`hilt store serve --workspace WS --port PORT` (``start``), its stdout and stderr
    appended to ``log_path``; returned once /health answers 200 (within 30 s)."""
    args = store_serve_command(ws, port)[3:]  # the one way, after `python -m hilt.pipelines.cli`
    process = start(args, stdout=log_path)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    # One client for the polls (a new one per poll loaded the CA bundle each time: 25 ms).
    with httpx.Client(timeout=1, verify=tls_context()) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log = log_path.read_text(encoding="utf-8")
                raise RuntimeError(f"store service exited early ({process.poll()}): {log}")
            try:
                if http.get(url + "/health").status_code == 200:
                    return PrewarmedService(url, process, ws, port)
            except httpx.HTTPError:
                time.sleep(0.05)
    process.kill()
    process.wait(5)
    raise RuntimeError("store service did not come up in 30 s")


if __name__ == "__main__" and CHILD_ARGS in globals():  # a child forked by ``start``
    _run_hilt(**globals()[CHILD_ARGS])
