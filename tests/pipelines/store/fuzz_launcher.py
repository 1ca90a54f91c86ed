"""The contract test's `st run` processes (``test_openapi_contract.py``), forked from one
process that imported schemathesis, Hypothesis and what the hooks import once.

Each `st` process spent about 1.2 s of CPU importing them (``PRELOAD`` and what it imports),
six times a run. This process imports them once, freezes them out of its children's garbage
collections, then reads batches of runs from its standard input, one JSON list a line
(each run: ``argv`` after `st`, ``env``, ``cwd``, ``log``); forks one child per run, which
takes the run's environment, folder and log as its own and runs schemathesis's own command
line (``schemathesis.cli.schemathesis``, what the `st` script calls) with ``argv``; waits for
them all and answers with one JSON list of their exit codes a line. It ends at the end of
its input. The hooks module itself is imported by each child, as `st` imports it (from
``SCHEMATHESIS_HOOKS``), so its state starts fresh in each run.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
import traceback
from contextlib import suppress
from typing import Any

#: What a run imports (by the `st` command, as it loads the document, fuzzes, checks and
#: reports, and by the hooks), imported here once.
PRELOAD = (
    "httpx",
    "httpcore",
    "h11",
    "requests",
    "polars",
    "hypothesis",
    "hypothesis.stateful",
    "schemathesis",
    "schemathesis.cli",
    "schemathesis.cli.executor",
    "schemathesis.cli.loaders",
    "schemathesis.engine.core",
    "schemathesis.engine.fuzz",
    "schemathesis.engine.run.unit",
    "schemathesis.reporting.har",
    "schemathesis.reporting.junitxml",
    "schemathesis.specs.openapi",
    "schemathesis.specs.openapi._hypothesis",
    "schemathesis.specs.openapi.analysis",
    "schemathesis.transport.requests",
    "hilt.pipelines.tables",
    "hilt.pipelines.store.modes.wire",
    "hilt.pipelines.store.operations",
    "hilt.pipelines.store.ops.events",
    "hilt.widgets.contracts.notice",
)


def _run(job: dict[str, Any]) -> None:
    """In the child: the run's environment, folder and log, then `st ARGV`; never returns."""
    code = 1
    try:
        os.environ.clear()
        os.environ.update(job["env"])
        os.chdir(job["cwd"])
        # Hypothesis takes its storage folder from the folder it was imported in (here, this
        # process's): the run's own, as for an `st` started in it (its example database and
        # the Unicode tables the test put there).
        from hypothesis.configuration import set_hypothesis_home_dir

        set_hypothesis_home_dir(
            os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY")
            or os.path.join(os.getcwd(), ".hypothesis")
        )
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        for fd in (1, 2):
            os.dup2(log, fd)
        os.close(log)
        sys.argv = ["st", *job["argv"]]
        from schemathesis.cli import schemathesis

        schemathesis()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):  # (a closed stream: the code still counts)
                stream.flush()
        os._exit(code)


def main() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    gc.freeze()
    for line in sys.stdin:
        jobs: list[dict[str, Any]] = json.loads(line)
        children = []
        for job in jobs:
            pid = os.fork()
            if pid == 0:
                _run(job)
            children.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        print(json.dumps(codes), flush=True)


if __name__ == "__main__":
    main()
