"""`hilt audit verify` on a workspace's file starts without what it does not need.

The walk of the file is what a scheduled job runs and what issue 13 times end to end on a
million events (target 1.5 s, interpreter start-up included): importing the store's
operations table, polars and pandas cost more than a second of that (pandas came in
through pyarrow's ``to_numpy`` and ``pa.array`` from Python lists), MLflow seconds more.
This runs the real command in a fresh interpreter and lists which of them it loaded.

From a signed checkpoint after which no batch of cases or predictions came (the audit
dashboard's default, `--from latest`), nothing is left to digest: numpy and pyarrow (a
fifth of a second of CPU at start-up) are not imported either.
"""

from __future__ import annotations

import json
import subprocess
import sys

from hilt.pipelines.workspace import Workspace
from tests.conftest import operator

#: Modules the walk of the file must not import (each was imported by it before).
HEAVY = ("polars", "pandas", "mlflow", "hilt.pipelines.store.operations", "httpx")
#: ... and from a checkpoint with no batch after it (the batch digests need them).
HEAVY_FROM_CHECKPOINT = (*HEAVY, "numpy", "pyarrow")

_RUN = """
import json, sys
sys.argv = ["hilt", "audit", "verify", "--workspace", {root!r}, *{extra!r}]
from hilt.pipelines.cli import app
try:
    app()
    code = 0
except SystemExit as e:
    code = e.code
print(json.dumps({{"code": code, "heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def _verify(ws: Workspace, heavy: tuple[str, ...], *extra: str) -> tuple[str, dict[str, object]]:
    """The command's first line of output, and its exit code and the heavy modules loaded."""
    out = subprocess.run(
        [sys.executable, "-c", _RUN.format(root=str(ws.root), heavy=heavy, extra=list(extra))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    return lines[0], json.loads(lines[-1])


def test_verify_of_the_file_imports_no_heavy_library(loaded_workspace: Workspace) -> None:
    first, result = _verify(loaded_workspace, HEAVY)
    assert first.startswith("OK "), first  # it did verify, all checks ran
    assert result == {"code": 0, "heavy": []}, result
    # From a checkpoint signed after the batches: no digest to recompute, no numpy / pyarrow.
    seq = operator(loaded_workspace).checkpoint().seq
    first, result = _verify(loaded_workspace, HEAVY_FROM_CHECKPOINT, "--from", "latest")
    assert first.startswith(f"OK 1 events after checkpoint seq {seq} "), first
    assert result == {"code": 0, "heavy": []}, result
