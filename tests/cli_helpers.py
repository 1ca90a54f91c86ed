"""`hilt` run in the test's own process (typer's test runner), answering as a process does:
exit code, standard output, standard error. For the tests of what a command does; a process
costs seconds of interpreter start-up and imports on every call. Each command group keeps
tests through a real `hilt` process too (``tests.loop_helpers.hilt_cli``): the exit codes
and the one-line errors as a scheduler sees them."""

from __future__ import annotations

import subprocess
import traceback
from pathlib import Path

from typer.testing import CliRunner

from hilt.pipelines.cli import app

#: A developer's or a scheduler's environment must not reach the tests' commands.
UNSET: dict[str, str | None] = {"HILT_WORKSPACE": None, "HILT_TOKEN": None}


def hilt_here(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`hilt ARGS` in this process, with ``env`` and without $HILT_WORKSPACE / $HILT_TOKEN.

    An exception that escapes the command, which a process would die of with a stack trace,
    is written to the standard error as that trace (exit code 1), so that the tests' checks
    for "one line, no Traceback" hold in process as they do for a process."""
    argv = [str(a) for a in args]
    result = CliRunner().invoke(app, argv, env={**UNSET, **(env or {})})
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (in process):\n" + "".join(
            traceback.format_exception(result.exception)
        )
    return subprocess.CompletedProcess(["hilt", *argv], result.exit_code, result.stdout, stderr)
