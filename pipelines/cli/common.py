"""What every `hilt` command shares: the exit codes, the guard that turns an error into one
line and an exit code (never a stack trace), the ``--workspace`` and ``--as`` options, the
``-p NAME VALUE`` parser, and the quieting of MLflow's log lines.

Importing this module imports neither the store nor MLflow.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from hilt.pipelines.errors import HiltError, PermissionDeniedError, StoreError, SystemHalted

if TYPE_CHECKING:
    pass

T = TypeVar("T")

#: The audit log does not verify, a run failed (its partial notebook is kept), or a
#: reproduction gave another model.
EXIT_FAILED = 1
#: A user error or a refusal (bad input or parameters, bad config, unknown user or role,
#: store busy, promotion refused); nothing was written.
EXIT_USER_ERROR = 2
#: An internal error of the store (or a DuckDB error that no hilt code wrapped).
EXIT_STORE_ERROR = 3
#: Refused because a lead halted the system, or a run stopped by a halt while it ran.
EXIT_HALTED = 4
#: `hilt check go-live`: something going live needs is missing (each missing item printed).
EXIT_NOT_READY = 6

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder (default: $HILT_WORKSPACE, else ./workspace).",
        show_default=False,
    ),
]

#: ``--as`` of the commands that run a notebook or act like one (retrain, score, gold add).
AsUserOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="The hilt user the run acts as (default: the token's owner when a store service "
        "owns the workspace, else the operating-system user with the admin role).",
        show_default=False,
    ),
]


def port_option(help: str) -> Any:
    """A ``--port`` option: a TCP port a server listens on, 1-65535 (typer refuses any
    other number as a usage error, exit 2, before anything starts)."""
    return typer.Option(help=help, min=1, max=65535)


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: <message>`` on standard error and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def guard(fn: Callable[[], T]) -> T:
    """Run a command body; user errors become one line and exit 2, never a trace; store
    errors (the store wraps every DuckDB error in its own) one line and exit 3, the trace
    only with HILT_DEBUG=1."""
    try:
        return fn()
    except SystemHalted as e:
        fail(str(e), EXIT_HALTED)
    except StoreError as e:
        if os.environ.get("HILT_DEBUG"):
            raise
        if e.kind == "busy":
            fail(str(e), EXIT_USER_ERROR)
        fail(f"{e}; set HILT_DEBUG=1 to see the trace", EXIT_STORE_ERROR)
    except HiltError as e:
        fail(str(e), EXIT_USER_ERROR)


#: A run stopped by the store's refusal of what it did (e.g. predictions of a model whose
#: sha256 is not the registered one) exits like any refusal.
_REFUSED_RUN_ERRORS = frozenset({PermissionDeniedError.__name__})


#: Whether the command has nothing left open when it returns (``run_guard``), so that
#: ``exit_at_once`` may end the process.
_nothing_left_open = False


def run_guard(fn: Callable[[], T]) -> T:
    """Like ``guard``; a run that failed (its notebook raised, its kernel died) exits 1, or 4
    when a halt stopped it, or 2 when the store refused what it did. The runner closes
    whatever it opened (store, kernel, relay, MLflow's files) before it returns or raises,
    so the process may end at once afterwards (``exit_at_once``)."""
    from hilt.pipelines.loop.runner import RunFailed

    global _nothing_left_open
    _nothing_left_open = True

    def body() -> T:
        try:
            return fn()
        except RunFailed as e:
            if e.error == SystemHalted.__name__:
                fail(str(e), EXIT_HALTED)
            fail(str(e), EXIT_USER_ERROR if e.error in _REFUSED_RUN_ERRORS else EXIT_FAILED)

    return guard(body)


def exit_at_once(code: object) -> None:
    """End the process with ``code`` without tearing its interpreter down, after a command
    that left nothing open (``run_guard``) exited with a number: the exit handlers run
    (logging's flush among them) and the standard streams are flushed, then ``os._exit``.
    Python's own teardown of a process that loaded mlflow, pandas, xgboost and nbconvert
    (every module and object freed one by one) took 1-5 s after the last line of `hilt
    retrain`, and frees nothing the operating system does not free anyway. Returns (and
    Python exits as usual) for any other command, for a message as code, or while a
    non-daemon thread still runs."""
    import atexit
    import sys
    import threading

    if not _nothing_left_open or not (code is None or isinstance(code, int)):
        return
    main = threading.main_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


def quiet_mlflow() -> None:
    """MLflow's INFO lines (creating its tables, validating examples) are not for schedulers."""
    import logging

    # Read by mlflow when it is imported (here and in the kernels papermill starts).
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def name_value_pairs(args: list[str]) -> dict[str, str]:
    """``-p NAME VALUE`` / ``--param NAME VALUE`` pairs (papermill's form), nothing else."""
    given: dict[str, str] = {}
    i = 0
    while i < len(args):
        if args[i] not in ("-p", "--param"):
            fail(f"unexpected argument {args[i]!r} (parameters: -p NAME VALUE)", EXIT_USER_ERROR)
        if i + 2 >= len(args):
            fail(f"{args[i]} needs a NAME and a VALUE", EXIT_USER_ERROR)
        name, value = args[i + 1], args[i + 2]
        if name in given:
            fail(f"parameter {name} is given twice", EXIT_USER_ERROR)
        given[name] = value
        i += 3
    return given
