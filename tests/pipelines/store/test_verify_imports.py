"""`hilt audit verify` on a workspace's file starts without what it does not need.

The walk of the file is what a scheduled job runs and what issue 13 times end to end on a
million events (target 1.5 s, interpreter start-up included): importing the store's
operations table, polars and pandas cost more than a second of that (pandas came in
through pyarrow's ``to_numpy`` and ``pa.array`` from Python lists), MLflow seconds more.
This runs the real command in a fresh interpreter and lists which of them it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

from hilt.pipelines.workspace import Workspace

#: Modules the walk of the file must not import (each was imported by it before).
HEAVY = ("polars", "pandas", "mlflow", "hilt.pipelines.store.operations", "httpx")

_RUN = """
import json, sys
sys.argv = ["hilt", "audit", "verify", "--workspace", {root!r}]
from hilt.pipelines.cli import app
try:
    app()
    code = 0
except SystemExit as e:
    code = e.code
print(json.dumps({{"code": code, "heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def test_verify_of_the_file_imports_no_heavy_library(loaded_workspace: Workspace) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _RUN.format(root=str(loaded_workspace.root), heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("OK "), out.stdout  # it did verify, all checks ran
    assert json.loads(lines[-1]) == {"code": 0, "heavy": []}, out.stdout
