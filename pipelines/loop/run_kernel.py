"""A run's kernel, started as soon as the run may go ahead, before papermill needs it.

A kernel takes ~1.3 s to start and the first cells of a run notebook ~1.5 s to import hilt's
steps, polars, duckdb, xgboost and matplotlib, all in the kernel's own process; meanwhile the
runner imports mlflow and makes the MLflow run (~2 s) in its own. Done one after the other,
as papermill does when it starts the kernel itself, a user waits for both; here the runner
starts the kernel first (``started``), with its environment and working folder, and the
kernel imports what the notebook's cells will import (``steps.start.warm_up``: imports
only, no name in the notebook's namespace, nothing read or written) while the runner
works. Papermill then executes the notebook on that kernel (``km``), and the kernel is
stopped when the block ends, as papermill would stop it ("immediate": every cell's output
is saved as it finishes).

Importing this module imports no jupyter_client.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from jupyter_client.manager import AsyncKernelManager

#: The kernel every run executes on: the project venv's ``python3`` kernelspec.
KERNEL_NAME: Final = "python3"


def kernel_arguments(kind: str) -> list[str]:
    """The kernel's command-line settings: its own log lines off (e.g. its note on local
    TCP transport would only clutter a scheduler's log; cell errors are in the notebook),
    and, as it starts, ``steps.start.warm_up(kind)`` (a function call whose value is None:
    nothing is bound in the notebook's namespace, no execution count is used)."""
    call = f'__import__("hilt.pipelines.loop.steps.start", fromlist=["warm_up"]).warm_up({kind!r})'
    return ["--IPKernelApp.log_level=CRITICAL", f"--IPKernelApp.exec_lines={call}"]


@contextmanager
def started(kind: str, environment: Mapping[str, str], cwd: Path) -> Iterator[AsyncKernelManager]:
    """The ``python3`` kernel, started now in ``cwd`` with ``environment`` (the whole of
    it), warming up for a ``kind`` run; stopped at once when the block ends, whatever
    happened (its ZeroMQ sockets closed with it)."""
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    from hilt.pipelines.kernels.forked import use_forked

    manager = AsyncKernelManager(kernel_name=KERNEL_NAME)
    use_forked(manager)  # forked from the zygote an ancestor named, if any (kernels/source.py)
    run_sync(manager.start_kernel)(
        extra_arguments=kernel_arguments(kind), env=dict(environment), cwd=str(cwd)
    )
    try:
        yield manager
    finally:
        run_sync(manager.shutdown_kernel)(now=True)
