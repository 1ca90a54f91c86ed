"""Where kernels come from: the zygote a kernel-launching process starts or inherits
(pipelines/kernels/zygote.py), named to it by ``HILT_KERNEL_ZYGOTE``; the switch that turns
forked kernels off. Importing this module imports no jupyter_client (the provisioner that
asks the zygote is pipelines/kernels/forked.py).

- A run's kernel (pipelines/loop/run_kernel.py) is forked from the zygote an ancestor named
  (``kernel_source`` starts one for a process that launches kernels; the test suite starts
  one per worker). Voila's and JupyterLab's kernels are launched the usual way: a Voila
  kernel forked from a zygote hung in CI (its shell-channel thread blocked in ZeroMQ's send
  of a log line, on a comm message from the page), and a dashboard kernel's
  ``/proc/PID/environ`` would show the zygote's start block, not what the kernel was given,
  which the security tests of the dashboards' environment read.
- A descendant reuses the zygote its ancestor named (the test suite starts one per worker).
- The zygote runs with a minimal environment (``zygote.startup_environment``: the
  interpreter's settings and what its imports read; no key, token or identity).
- ``HILT_FORKED_KERNELS=0`` (or ``off``, ``false``, ``no``) turns it off: no zygote is
  started and every kernel starts the usual way.
"""

from __future__ import annotations

import atexit
import functools
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hilt.pipelines.kernels.zygote import startup_environment

#: Names the zygote's socket to the processes that launch kernels (and their descendants).
ZYGOTE_ENV: Final = "HILT_KERNEL_ZYGOTE"
#: ``0`` / ``off`` / ``false`` / ``no``: kernels are never forked (no zygote is started).
SWITCH_ENV: Final = "HILT_FORKED_KERNELS"
#: The provisioner's entry point name (pyproject: ``jupyter_client.kernel_provisioners``).
PROVISIONER_NAME: Final = "hilt-forked"
PROVISIONER_GROUP: Final = "jupyter_client.kernel_provisioners"
ZYGOTE_MODULE: Final = "hilt.pipelines.kernels.zygote"


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(SWITCH_ENV, "1").strip().lower() not in {"0", "off", "false", "no"}


@dataclass
class RunningZygote:
    """A zygote this process started: its socket, process and 0700 folder."""

    socket_path: Path
    process: subprocess.Popen[bytes]
    folder: Path

    def stop(self) -> None:
        """Its stdin closed (it exits), SIGKILL if it has not within 5 s; folder removed.
        Kernels it forked end as their parent does (ipykernel's parent poller)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_zygote(environ: Mapping[str, str] = os.environ) -> RunningZygote | None:
    """A zygote for this process's kernels, started now (it binds its socket at once and
    imports while the caller goes on), with only the interpreter's settings of ``environ``;
    None when forked kernels are off. It ends when this process does (its stdin closes)."""
    if not enabled(environ):
        return None
    folder = Path(tempfile.mkdtemp(prefix="hilt-zygote-"))  # 0700
    path = folder / "zygote.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", ZYGOTE_MODULE, str(path)],
        env=startup_environment(environ),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        cwd="/",
        start_new_session=True,  # a terminal's Ctrl-C is for the server, not the zygote
    )
    # Ready when the socket exists (bound before the imports): launches queue there.
    deadline = 50
    while not path.exists() and process.poll() is None and deadline:
        deadline -= 1
        select.select([], [], [], 0.02)
    zygote = RunningZygote(path, process, folder)
    atexit.register(zygote.stop)
    return zygote


def zygote_environment(zygote: RunningZygote | None) -> dict[str, str]:
    """What a launching process's environment gets so that its kernels fork from
    ``zygote`` (nothing when there is none)."""
    return {} if zygote is None else {ZYGOTE_ENV: str(zygote.socket_path)}


@dataclass(frozen=True)
class KernelSource:
    """Where a server's kernels come from: what its environment gets (``environment``),
    and the zygote started for it, if one was (stopped with the server)."""

    environment: dict[str, str]
    started: RunningZygote | None

    def stop(self) -> None:
        if self.started is not None:
            self.started.stop()


def kernel_source(environ: Mapping[str, str] = os.environ) -> KernelSource:
    """For a process about to launch kernels: the zygote an ancestor named in ``environ``,
    else one started now; none when forked kernels are off."""
    if not enabled(environ):
        return KernelSource({}, None)
    named = environ.get(ZYGOTE_ENV)
    if named and Path(named).exists():
        return KernelSource({ZYGOTE_ENV: named}, None)
    zygote = start_zygote(environ)
    return KernelSource(zygote_environment(zygote), zygote)


@functools.cache
def provisioner_installed() -> bool:
    """The ``hilt-forked`` entry point is installed (`make install` registers it)."""
    from importlib.metadata import entry_points

    return bool(entry_points(group=PROVISIONER_GROUP, name=PROVISIONER_NAME))
