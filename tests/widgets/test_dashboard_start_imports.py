"""Opening a dashboard imports neither mlflow nor xgboost.

Each dashboard notebook's code cells run as its kernel runs them, in a fresh interpreter,
on a workspace with cases and a champion (review as lena, the demo's local user; oversight
as lena, a lead; audit as otto, named by the sign-in header Voila passes). What the cells
built is printed with what was imported: a dashboard, not a refusal (the control), and no
heavy library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
import pytest

from hilt.pipelines.paths import NOTEBOOKS_DIR
from hilt.pipelines.workspace import Workspace

pytestmark = pytest.mark.slow

#: What a dashboard must not import when it opens (MLflow only on the auditor's
#: "Cross-check", xgboost and dask never: predictions come from the store).
HEAVY = ("mlflow", "xgboost", "dask", "distributed")

EXPECTED = {
    "review": ("lena", "ReviewSession"),
    "oversight": ("lena", "OversightDashboard"),
    "audit": ("otto", "AuditDashboard"),
}


def code_of(name: str) -> str:
    """The notebook's code cells; the last one (the panel, displayed by the kernel) is
    kept in a variable here."""
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    return "\n".join([*cells[:-1], f"_h4_panel = {cells[-1].strip()}"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_opening_a_dashboard_imports_no_heavy_library(
    loaded_workspace: Workspace, name: str
) -> None:
    user, panel_class = EXPECTED[name]
    report = (
        "import json, sys\n"
        "print(json.dumps({'built': type(_h4_panel).__name__, "
        f"'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules)}}))\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HILT_", "HTTP_"))},
        "HILT_WORKSPACE": str(loaded_workspace.root),
        "HTTP_X_FORWARDED_USER": user,
        "MPLBACKEND": "Agg",
    }
    out = subprocess.run(
        [sys.executable, "-c", code_of(name) + "\n" + report],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"built": panel_class, "heavy": []}, got
